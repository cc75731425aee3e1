//! Finding a twin's resources in the cloud by name prefix and tag, so that a lost state file or a
//! device removed from the config orphans nothing.
//!
//! Resources with fixed names (roles, shared functions, table, buckets, rule, API, schedules)
//! are always in the config's own specs, which destroy deletes by name; discovery looks for what
//! the config cannot name: per-device resources of devices no longer configured, and
//! certificates whose local files are gone.

use crate::context::resource_id;
use crate::errors::cloud;
use crate::l1::{certificate, iot_policy, thing};
use crate::{lambda_fn, logs, LayerContext};
use serde_json::json;
use std::collections::HashSet;
use twin_config::{names, Layer, ProviderName};
use twin_engine::{CloudError, ResourceSpec};

/// The twin's AWS resources of `layer` found in the cloud.
pub async fn discover(
    ctx: &LayerContext<'_>,
    layer: Layer,
) -> Result<Vec<ResourceSpec>, CloudError> {
    match layer {
        Layer::L1 => discover_l1(ctx).await,
        Layer::L2 => discover_l2(ctx).await,
        _ => Ok(Vec::new()),
    }
}

fn found(ctx: &LayerContext<'_>, layer: Layer, kind: &str, key: &str, name: &str) -> ResourceSpec {
    ResourceSpec::new(
        resource_id(layer, kind, &format!("discovered/{key}")),
        layer,
        ProviderName::Aws,
        kind,
        name,
    )
    .desired(json!({}))
    .inputs(json!({ crate::context::TAGS_KEY: { twin_config::names::TAG_KEY: ctx.name() } }))
}

async fn discover_l1(ctx: &LayerContext<'_>) -> Result<Vec<ResourceSpec>, CloudError> {
    let iot = &ctx.clients.iot;
    let twin = ctx.name();
    let mut specs = Vec::new();
    // Certificates the config's specs find through their local files.
    let known_certs: HashSet<String> = ctx
        .twin
        .devices
        .iter()
        .filter_map(|d| {
            let p =
                certificate::device_dir(&ctx.twin.dir, &d.id).join(certificate::CERTIFICATE_FILE);
            std::fs::read_to_string(p).ok()
        })
        .flat_map(|pem| certificate::candidate_ids(&pem, ctx.clients.endpoint_override))
        .collect();
    let mut token: Option<String> = None;
    loop {
        let page = iot
            .list_things()
            .attribute_name(names::TAG_KEY)
            .attribute_value(twin)
            .set_next_token(token.clone())
            .send()
            .await
            .map_err(cloud)?;
        for t in page.things() {
            let Some(name) = t.thing_name() else { continue };
            let thing_spec = found(ctx, Layer::L1, thing::KIND, name, name);
            let principals = iot
                .list_thing_principals()
                .thing_name(name)
                .send()
                .await
                .map_err(cloud)?;
            for arn in principals.principals() {
                let Some(id) = arn.rsplit('/').next().filter(|_| arn.contains(":cert/")) else {
                    continue;
                };
                if known_certs.contains(id) {
                    continue;
                }
                let mut c = found(ctx, Layer::L1, certificate::KIND, id, id);
                c.inputs["certificate_id"] = json!(id);
                specs.push(c);
            }
            specs.push(thing_spec);
        }
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    // Device policies: `<twin>--<device>-policy`, confirmed by the topic they allow.
    let configured: HashSet<String> = ctx
        .twin
        .devices
        .iter()
        .map(|d| names::iot_policy_name(twin, &d.id))
        .collect();
    let prefix = names::per_device_prefix(twin);
    let mut marker: Option<String> = None;
    loop {
        let page = iot
            .list_policies()
            .set_marker(marker.clone())
            .send()
            .await
            .map_err(cloud)?;
        for p in page.policies() {
            let Some(name) = p.policy_name() else {
                continue;
            };
            if !name.starts_with(&prefix) || !name.ends_with("-policy") || configured.contains(name)
            {
                continue;
            }
            // The document names the twin's own topic (`.../topic/<twin>/iot-data/...`), which
            // tells this twin's policies from those of a twin whose name merely shares the prefix.
            let doc = iot
                .get_policy()
                .policy_name(name)
                .send()
                .await
                .map_err(cloud)?;
            let marker = format!(":topic/{twin}/iot-data/");
            let text = doc
                .policy_document()
                .map(crate::iam::parse_policy_document)
                .unwrap_or_default();
            if text.to_string().contains(&marker) {
                specs.push(found(ctx, Layer::L1, iot_policy::KIND, name, name));
            }
        }
        marker = page.next_marker().map(str::to_string);
        if marker.is_none() {
            break;
        }
    }
    Ok(specs)
}

async fn discover_l2(ctx: &LayerContext<'_>) -> Result<Vec<ResourceSpec>, CloudError> {
    let twin = ctx.name();
    // The processors the config still names: the devices' own, and the shared one while some
    // device uses it. A device that moved to the shared processor leaves its own behind, and the
    // shared one is left behind when every device gets its own (`aws.processor_per_device`).
    let configured: HashSet<String> = ctx
        .twin
        .devices
        .iter()
        .filter(|d| ctx.twin.has_own_processor(d))
        .map(|d| names::processor_function_name(twin, &d.id))
        .collect();
    let shared = names::shared_processor_function_name(twin);
    let shared_configured = ctx
        .twin
        .devices
        .iter()
        .any(|d| !ctx.twin.has_own_processor(d));
    let prefix = names::per_device_prefix(twin);
    let is_candidate = |n: &str| {
        (n.starts_with(&prefix) && n.ends_with("-processor") && !configured.contains(n))
            || (n == shared && !shared_configured)
    };
    let mut specs = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let page = ctx
            .clients
            .lambda
            .list_functions()
            .set_marker(marker.clone())
            .send()
            .await
            .map_err(cloud)?;
        for f in page.functions() {
            let (Some(name), Some(arn)) = (f.function_name(), f.function_arn()) else {
                continue;
            };
            if !is_candidate(name) {
                continue;
            }
            let tags = ctx
                .clients
                .lambda
                .list_tags()
                .resource(arn)
                .send()
                .await
                .map_err(cloud)?;
            if tags
                .tags()
                .and_then(|t| t.get(names::TAG_KEY))
                .map(String::as_str)
                != Some(twin)
            {
                continue;
            }
            specs.push(found(ctx, Layer::L2, lambda_fn::KIND, name, name));
        }
        marker = page.next_marker().map(str::to_string);
        if marker.is_none() {
            break;
        }
    }
    // Log groups outlive their functions (a function deleted by hand), so they are listed on
    // their own, confirmed by their twin tag.
    let mut group_prefixes = vec![logs::log_group_name(&prefix)];
    if !shared_configured {
        group_prefixes.push(logs::log_group_name(&shared));
    }
    for group_prefix in &group_prefixes {
        discover_log_groups(ctx, group_prefix, &is_candidate, &mut specs).await?;
    }
    Ok(specs)
}

/// The twin's log groups under `group_prefix` whose function `is_candidate`, each before its
/// function (if that still exists) in `specs`.
async fn discover_log_groups(
    ctx: &LayerContext<'_>,
    group_prefix: &str,
    is_candidate: &(dyn Fn(&str) -> bool + Sync),
    specs: &mut Vec<ResourceSpec>,
) -> Result<(), CloudError> {
    let twin = ctx.name();
    let mut token: Option<String> = None;
    loop {
        let page = ctx
            .clients
            .logs
            .describe_log_groups()
            .log_group_name_prefix(group_prefix)
            .set_next_token(token.clone())
            .send()
            .await
            .map_err(cloud)?;
        for g in page.log_groups() {
            let Some(group) = g.log_group_name() else {
                continue;
            };
            let function = group.trim_start_matches("/aws/lambda/");
            if !is_candidate(function) {
                continue;
            }
            let arn = g.arn().unwrap_or_default().trim_end_matches(":*");
            let tags = ctx
                .clients
                .logs
                .list_tags_for_resource()
                .resource_arn(arn)
                .send()
                .await
                .map_err(cloud)?;
            if tags
                .tags()
                .and_then(|t| t.get(names::TAG_KEY))
                .map(String::as_str)
                != Some(twin)
            {
                continue;
            }
            let log_group = found(ctx, Layer::L2, logs::KIND, group, group);
            // The function (if it still exists) goes first.
            if let Some(f) = specs.iter_mut().find(|s| s.name == function) {
                f.depends_on.push(log_group.id.clone());
            }
            specs.push(log_group);
        }
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    Ok(())
}
