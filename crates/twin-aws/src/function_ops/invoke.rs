//! `lambda_invoke`: a synchronous invocation returns the function's answer and the tail of its
//! log for that call; an asynchronous one only that Lambda queued the event (202).

use super::TwinFunction;
use crate::errors::cloud;
use crate::AwsClients;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{InvocationType, LogType};
use base64::Engine;
use twin_engine::{CloudError, Invocation};

/// Invokes the function with `payload` (JSON text).
pub async fn invoke(
    clients: &AwsClients,
    f: &TwinFunction,
    payload: &str,
    asynchronous: bool,
) -> Result<Invocation, CloudError> {
    let mut req = clients
        .lambda
        .invoke()
        .function_name(&f.cloud)
        .payload(Blob::new(payload.as_bytes().to_vec()));
    req = if asynchronous {
        req.invocation_type(InvocationType::Event)
    } else {
        req.invocation_type(InvocationType::RequestResponse)
            .log_type(LogType::Tail)
    };
    let out = req.send().await.map_err(|e| {
        let err = cloud(e);
        if err.code == "InvalidRequestContentException" {
            err.with_hint("the payload must be valid JSON, e.g. '{\"iotDeviceId\":\"sensor-1\"}'")
        } else {
            err
        }
    })?;
    let payload = out
        .payload()
        .map(|b| String::from_utf8_lossy(b.as_ref()).into_owned())
        .filter(|p| !p.is_empty());
    Ok(Invocation {
        status_code: out.status_code(),
        payload,
        function_error: out.function_error().map(str::to_string),
        log_tail: out.log_result().map(decode_log_tail),
    })
}

/// Lambda returns the last 4 KB of the invocation's log base64-encoded; text that is not valid
/// base64 is shown as it came.
pub fn decode_log_tail(encoded: &str) -> String {
    base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_else(|_| encoded.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_tails_are_decoded() {
        let enc = base64::engine::general_purpose::STANDARD.encode("START RequestId: 1\nhello\n");
        assert_eq!(decode_log_tail(&enc), "START RequestId: 1\nhello\n");
        assert_eq!(decode_log_tail("not base64!"), "not base64!");
    }
}
