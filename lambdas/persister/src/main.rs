//! Lambda adapter of the persister (logic: `twin_functions::persister` and the event evaluator;
//! wiring: `twin_functions_aws::persister_main`).

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    twin_functions_aws::run_persister().await
}
