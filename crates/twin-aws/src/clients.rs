//! Every AWS SDK client the provider uses, built from one `aws_config` load.

use crate::errors::classify;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use twin_config::AwsSettings;
use twin_engine::{CloudError, ErrorClass, RetryPolicy};

/// The SDK clients of one account and region, shared by every driver.
#[derive(Clone, Debug)]
pub struct AwsClients {
    /// IAM (roles and their inline policies).
    pub iam: aws_sdk_iam::Client,
    /// Lambda functions and their permissions.
    pub lambda: aws_sdk_lambda::Client,
    /// IoT Core control plane (things, certificates, policies, topic rules).
    pub iot: aws_sdk_iot::Client,
    /// DynamoDB (the hot table).
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// S3 (cold, archive, artifacts and TwinMaker buckets).
    pub s3: aws_sdk_s3::Client,
    /// API Gateway v2 (the hot reader's HTTP API).
    pub apigw: aws_sdk_apigatewayv2::Client,
    /// EventBridge (the movers' schedules).
    pub events: aws_sdk_eventbridge::Client,
    /// IoT TwinMaker (L4).
    pub twinmaker: aws_sdk_iottwinmaker::Client,
    /// Amazon Managed Grafana (L5).
    pub grafana: aws_sdk_grafana::Client,
    /// CloudWatch Logs (the functions' log groups).
    pub logs: aws_sdk_cloudwatchlogs::Client,
    /// STS (the account id).
    pub sts: aws_sdk_sts::Client,
    /// SQS (the layers' dead-letter queues).
    pub sqs: aws_sdk_sqs::Client,
    /// SNS (the event rules' notification topic).
    pub sns: aws_sdk_sns::Client,
    /// Secrets Manager (the cross-cloud boundaries' secrets).
    pub secrets: aws_sdk_secretsmanager::Client,
    /// The region every client talks to.
    pub region: String,
    /// The account the credentials belong to.
    pub account_id: String,
    /// The ARN partition (`aws`, `aws-cn`, `aws-us-gov`).
    pub partition: String,
    /// Whether an endpoint override (an emulator) is in use.
    pub endpoint_override: bool,
    /// The credentials the clients sign with, for requests made outside an SDK client (the
    /// hot-reader API is called with a SigV4 signature by `verify`).
    pub credentials: Option<aws_credential_types::provider::SharedCredentialsProvider>,
}

impl AwsClients {
    /// Loads the standard credential chain and config (env, profile, SSO, IMDS); the region is
    /// the one in `config_providers.json` if set, else the environment's. Asks STS who we are.
    pub async fn load(settings: Option<&AwsSettings>) -> Result<AwsClients, CloudError> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            // The engine retries every call by its classified error; SDK retries on top would
            // multiply attempts and hide throttling from the engine's backoff.
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .operation_attempt_timeout(Duration::from_secs(120))
                    .build(),
            );
        if let Some(region) = settings.and_then(|s| s.region.clone()) {
            loader = loader.region(Region::new(region));
        }
        let config = loader.load().await;
        let region = config.region().map(|r| r.to_string()).ok_or_else(|| {
            CloudError::fatal("NoRegion", "no AWS region is configured").with_hint(
                "set \"aws\": {\"region\": \"...\"} in config_providers.json or AWS_REGION",
            )
        })?;
        let sts = aws_sdk_sts::Client::new(&config);
        // The account look-up is retried like every other call: a dropped connection or a
        // throttled STS must not read as bad credentials.
        let identity = RetryPolicy::default()
            .run_quiet(&CancellationToken::new(), |_| async {
                sts.get_caller_identity().send().await.map_err(|e| {
                    let mut err = classify(&e);
                    if err.class == ErrorClass::Fatal && err.hint.is_none() {
                        err = err.with_hint(
                            "check your AWS credentials (AWS_PROFILE, `aws sso login`, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)",
                        );
                    }
                    err
                })
            })
            .await
            .map_err(|e| {
                e.unwrap_or_else(|| CloudError::fatal("Cancelled", "the account look-up was interrupted"))
            })?;
        let account_id = identity
            .account()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| {
                CloudError::fatal("NoAccount", "STS GetCallerIdentity returned no account id")
                    .with_hint("check that AWS_ENDPOINT_URL points at AWS or a working emulator")
            })?
            .to_string();
        let partition = identity
            .arn()
            .and_then(|a| a.split(':').nth(1))
            .filter(|p| !p.is_empty())
            .ok_or_else(|| {
                CloudError::fatal(
                    "NoPartition",
                    "STS GetCallerIdentity returned no caller ARN",
                )
                .with_hint("check that AWS_ENDPOINT_URL points at AWS or a working emulator")
            })?
            .to_string();
        Ok(Self::from_sdk_config(
            &config, account_id, region, partition,
        ))
    }

    /// Builds every client from one config (tests pass a mocked one).
    pub fn from_sdk_config(
        config: &SdkConfig,
        account_id: String,
        region: String,
        partition: String,
    ) -> AwsClients {
        let endpoint_override = config.endpoint_url().is_some();
        // With an endpoint override (an emulator on localhost) virtual-host addressing would
        // resolve `bucket.localhost`, so S3 uses path style there.
        let s3_conf = aws_sdk_s3::config::Builder::from(config)
            .force_path_style(endpoint_override)
            .build();
        AwsClients {
            iam: aws_sdk_iam::Client::new(config),
            lambda: aws_sdk_lambda::Client::new(config),
            iot: aws_sdk_iot::Client::new(config),
            dynamodb: aws_sdk_dynamodb::Client::new(config),
            s3: aws_sdk_s3::Client::from_conf(s3_conf),
            apigw: aws_sdk_apigatewayv2::Client::new(config),
            events: aws_sdk_eventbridge::Client::new(config),
            twinmaker: aws_sdk_iottwinmaker::Client::new(config),
            grafana: aws_sdk_grafana::Client::new(config),
            logs: aws_sdk_cloudwatchlogs::Client::new(config),
            sts: aws_sdk_sts::Client::new(config),
            sqs: aws_sdk_sqs::Client::new(config),
            sns: aws_sdk_sns::Client::new(config),
            secrets: aws_sdk_secretsmanager::Client::new(config),
            region,
            account_id,
            partition,
            endpoint_override,
            credentials: config.credentials_provider(),
        }
    }

    /// An ARN in this account and region: `arn:<partition>:<service>:<region>:<account>:<resource>`.
    pub fn arn(&self, service: &str, resource: &str) -> String {
        format!(
            "arn:{}:{service}:{}:{}:{resource}",
            self.partition, self.region, self.account_id
        )
    }

    /// An ARN of a global service (IAM): no region.
    pub fn global_arn(&self, service: &str, resource: &str) -> String {
        format!(
            "arn:{}:{service}::{}:{resource}",
            self.partition, self.account_id
        )
    }
}
