//! The Azure Functions custom handler of the twin's Function App (the server and every
//! function: `twin_functions_azure::handler`). The host starts it from `host.json` and talks to
//! it on `127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT`.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    match twin_functions_azure::handler::run_from_environment().await {
        Ok(()) => ExitCode::SUCCESS,
        // Already logged as JSON by `run_from_environment`.
        Err(_) => ExitCode::FAILURE,
    }
}
