//! The TwinMaker component directory against a mocked TwinMaker client (no emulator has
//! TwinMaker): every page of ListEntities is read, each entity's components of the type are
//! returned with their device, and a component without a device is an error naming it.

use aws_sdk_iottwinmaker::operation::get_entity::GetEntityOutput;
use aws_sdk_iottwinmaker::operation::list_entities::ListEntitiesOutput;
use aws_sdk_iottwinmaker::primitives::DateTime;
use aws_sdk_iottwinmaker::types::{
    ComponentResponse, DataValue, EntitySummary, ListEntitiesFilter, PropertyResponse, State,
    Status,
};
use aws_sdk_iottwinmaker::Client;
use aws_smithy_mocks::{mock, mock_client, RuleMode};
use twin_functions::twin_connector::{ComponentDirectory, ComponentRef};
use twin_functions_aws::TwinMakerDirectory;

fn summary(id: &str) -> EntitySummary {
    EntitySummary::builder()
        .entity_id(id)
        .entity_name(id)
        .arn(format!(
            "arn:aws:iottwinmaker:us-east-1:1:workspace/w/entity/{id}"
        ))
        .status(Status::builder().state(State::Active).build())
        .creation_date_time(DateTime::from_secs(0))
        .update_date_time(DateTime::from_secs(0))
        .build()
        .expect("summary")
}

fn component(type_id: &str, device: Option<&str>) -> ComponentResponse {
    let mut c = ComponentResponse::builder().component_type_id(type_id);
    if let Some(d) = device {
        c = c.properties(
            "iotDeviceId",
            PropertyResponse::builder()
                .value(DataValue::builder().string_value(d).build())
                .build(),
        );
    }
    c.build()
}

fn entity(id: &str, components: Vec<(&str, ComponentResponse)>) -> GetEntityOutput {
    let mut b = GetEntityOutput::builder()
        .entity_id(id)
        .entity_name(id)
        .arn(format!(
            "arn:aws:iottwinmaker:us-east-1:1:workspace/w/entity/{id}"
        ))
        .workspace_id("w")
        .parent_entity_id("$ROOT")
        .has_child_entities(false)
        .status(Status::builder().state(State::Active).build())
        .creation_date_time(DateTime::from_secs(0))
        .update_date_time(DateTime::from_secs(0));
    for (name, c) in components {
        b = b.components(name, c);
    }
    b.build().expect("entity")
}

#[tokio::test]
async fn fake_twinmaker_directory_reads_every_page_and_each_entity_s_components() {
    let first = mock!(Client::list_entities)
        .match_requests(|r| {
            r.workspace_id() == Some("w")
                && r.next_token().is_none()
                && r.filters() == [ListEntitiesFilter::ComponentTypeId("dt-s-1".to_string())]
        })
        .then_output(|| {
            ListEntitiesOutput::builder()
                .entity_summaries(summary("room-1"))
                .next_token("page-2")
                .build()
        });
    let second = mock!(Client::list_entities)
        .match_requests(|r| r.next_token() == Some("page-2"))
        .then_output(|| {
            ListEntitiesOutput::builder()
                .entity_summaries(summary("room-2"))
                .build()
        });
    let room1 = mock!(Client::get_entity)
        .match_requests(|r| r.entity_id() == Some("room-1"))
        .then_output(|| {
            entity(
                "room-1",
                vec![
                    ("temp", component("dt-s-1", Some("s-1"))),
                    ("other", component("dt-s-2", Some("s-2"))),
                ],
            )
        });
    let room2 = mock!(Client::get_entity)
        .match_requests(|r| r.entity_id() == Some("room-2"))
        .then_output(|| entity("room-2", vec![("t", component("dt-s-1", Some("s-1")))]));
    let client = mock_client!(
        aws_sdk_iottwinmaker,
        RuleMode::Sequential,
        [&first, &second, &room1, &room2]
    );
    let dir = TwinMakerDirectory::new(client);
    let mut got = dir
        .components_of_type("w", "dt-s-1")
        .await
        .expect("components");
    got.sort();
    assert_eq!(
        got,
        [
            ComponentRef {
                entity_id: "room-1".into(),
                component_name: "temp".into(),
                device_id: "s-1".into()
            },
            ComponentRef {
                entity_id: "room-2".into(),
                component_name: "t".into(),
                device_id: "s-1".into()
            },
        ]
    );
}

#[tokio::test]
async fn fake_twinmaker_directory_names_a_component_without_device() {
    let list = mock!(Client::list_entities).then_output(|| {
        ListEntitiesOutput::builder()
            .entity_summaries(summary("room-1"))
            .build()
    });
    let get = mock!(Client::get_entity)
        .then_output(|| entity("room-1", vec![("temp", component("dt-s-1", None))]));
    let client = mock_client!(aws_sdk_iottwinmaker, RuleMode::Sequential, [&list, &get]);
    let err = TwinMakerDirectory::new(client)
        .components_of_type("w", "dt-s-1")
        .await
        .expect_err("no device");
    let text = err.to_string();
    assert!(
        text.contains("entity room-1")
            && text.contains("component temp")
            && text.contains("iotDeviceId"),
        "{text}"
    );
    assert!(!err.is_retryable());
}
