//! The TwinMaker resource bucket's CORS rule against moto (PutBucketCors/GetBucketCors work
//! there): created as the scene viewer needs it, read back without drift, a rule changed by hand
//! is found as drift and put back, and delete removes it.

mod aws_support;

use aws_sdk_s3::types::{CorsConfiguration, CorsRule as S3CorsRule};
use aws_support::{clients, setup};
use twin_aws::l4_twinmaker::bucket_cors::{
    grafana_origins, scene_viewer_rule, BucketCorsDriver, CorsSettings,
};
use twin_aws::l4_twinmaker::BUCKET_CORS_KIND;
use twin_config::{Layer, ProviderName};
use twin_engine::{Outputs, ResourceDriver, ResourceId, ResourceSpec};

fn spec(bucket: &str) -> ResourceSpec {
    let origins = grafana_origins(ProviderName::Aws, "us-east-1").expect("an AWS Grafana origin");
    let settings = CorsSettings {
        bucket: bucket.to_string(),
        rules: vec![scene_viewer_rule(origins)],
    };
    ResourceSpec::new(
        ResourceId(format!("l4/{BUCKET_CORS_KIND}/twinmaker")),
        Layer::L4,
        ProviderName::Aws,
        BUCKET_CORS_KIND,
        bucket,
    )
    .desired(settings.to_desired())
}

#[tokio::test]
async fn bucket_cors_is_put_read_back_drift_fixed_and_deleted() {
    let moto = setup();
    let c = clients(&moto.endpoint).await;
    let bucket = "cors-twin-twinmaker-test";
    c.s3.create_bucket()
        .bucket(bucket)
        .send()
        .await
        .expect("create bucket");
    let driver = BucketCorsDriver::new(c.clone());
    let spec = spec(bucket);
    let none = Outputs::default();

    // A bucket without CORS reads as absent: the engine creates the rule.
    assert!(driver.read(&spec, &none).await.expect("read").is_none());
    let created = driver.create(&spec, &none).await.expect("create");
    assert_eq!(created.drift(&spec.desired), Vec::<String>::new());

    // What S3 now holds is the documented rule.
    let got =
        c.s3.get_bucket_cors()
            .bucket(bucket)
            .send()
            .await
            .expect("get cors");
    let rule = &got.cors_rules()[0];
    assert_eq!(
        rule.allowed_origins(),
        ["https://*.grafana-workspace.us-east-1.amazonaws.com"]
    );
    let mut methods = rule.allowed_methods().to_vec();
    methods.sort();
    assert_eq!(methods, ["DELETE", "GET", "HEAD", "POST", "PUT"]);
    assert_eq!(rule.allowed_headers(), ["*"]);
    assert_eq!(rule.expose_headers(), ["ETag"]);

    // A re-deploy reads the same settings back: nothing to change.
    let again = driver
        .read(&spec, &none)
        .await
        .expect("read")
        .expect("present");
    assert_eq!(again.drift(&spec.desired), Vec::<String>::new());

    // Someone narrows the rule by hand: drift on `rules`, and update puts the rule back.
    let narrowed = S3CorsRule::builder()
        .allowed_origins("https://example.com")
        .allowed_methods("GET")
        .build()
        .expect("rule");
    c.s3.put_bucket_cors()
        .bucket(bucket)
        .cors_configuration(
            CorsConfiguration::builder()
                .cors_rules(narrowed)
                .build()
                .expect("config"),
        )
        .send()
        .await
        .expect("tamper");
    let drifted = driver
        .read(&spec, &none)
        .await
        .expect("read")
        .expect("present");
    assert_eq!(drifted.drift(&spec.desired), ["rules"]);
    let fixed = driver.update(&spec, &drifted, &none).await.expect("update");
    assert_eq!(fixed.drift(&spec.desired), Vec::<String>::new());
    assert_eq!(fixed.attr("bucket"), Some(bucket));

    // Delete removes the configuration; deleting again is fine.
    driver.delete(&spec, &fixed).await.expect("delete");
    assert!(driver.read(&spec, &none).await.expect("read").is_none());
    driver.delete(&spec, &fixed).await.expect("delete again");
    c.s3.delete_bucket()
        .bucket(bucket)
        .send()
        .await
        .expect("delete bucket");
}
