//! Waiting on a condition in the cloud (an asynchronous create or delete) with backoff and a
//! deadline, instead of a fixed sleep.

use crate::error::{CloudError, ErrorClass};
use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `check` until it returns `Some`, backing off from `first` up to `max_interval`; fails
/// with a `Transient` "WaitTimeout" error naming `what` after `deadline`. Retryable errors from
/// `check` count as "not yet"; others end the wait.
pub async fn poll_until<T, F, Fut>(
    what: &str,
    first: Duration,
    max_interval: Duration,
    deadline: Duration,
    mut check: F,
) -> Result<T, CloudError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, CloudError>>,
{
    let start = Instant::now();
    let mut interval = first;
    let mut last = String::from("not ready");
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) if e.class.is_retryable() => last = e.to_string(),
            Err(e) => return Err(e),
        }
        if start.elapsed() + interval > deadline {
            return Err(CloudError::new(
                ErrorClass::Transient,
                "WaitTimeout",
                format!(
                    "{what} not ready after {}s (last: {last})",
                    deadline.as_secs()
                ),
            ));
        }
        tokio::time::sleep(interval).await; // poll interval with backoff
        interval = (interval * 2).min(max_interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn returns_when_ready() {
        let n = AtomicU32::new(0);
        let v = poll_until(
            "thing",
            Duration::from_millis(1),
            Duration::from_millis(2),
            Duration::from_secs(5),
            || async {
                let c = n.fetch_add(1, Ordering::SeqCst);
                Ok((c >= 3).then_some(c))
            },
        )
        .await;
        assert_eq!(v, Ok(3));
    }

    #[tokio::test]
    async fn times_out_with_the_name_of_what_it_waited_for() {
        let r: Result<(), _> = poll_until(
            "workspace ws-1 ACTIVE",
            Duration::from_millis(1),
            Duration::from_millis(2),
            Duration::from_millis(20),
            || async { Ok(None) },
        )
        .await;
        let e = r.unwrap_err();
        assert_eq!(e.code, "WaitTimeout");
        assert!(e.message.contains("workspace ws-1 ACTIVE"));
    }
}
