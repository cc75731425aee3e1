//! The crate's binary: the Lambda function on AWS, the custom handler's child on Azure.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    twin_functions_aws::run_processor(fahrenheit_processor::FahrenheitToCelsius).await
}
