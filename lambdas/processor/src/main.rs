//! Lambda adapter of the default processor (logic: `twin_functions::processor`; the Lambda loop:
//! `twin_functions_aws::processor_main`).

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    twin_functions_aws::run_default_processor().await
}
