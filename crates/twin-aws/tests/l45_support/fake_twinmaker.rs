//! A TwinMaker that does not exist as an emulator, built from `aws-smithy-mocks` rules: it keeps
//! what was created, answers reads with it (so drift is checked on a real round trip), settles
//! entities and component types asynchronously (CREATING / DELETING for a number of polls), can
//! fail chosen calls once, and logs every call it answered.

use super::{meta, Calls};
use aws_sdk_iottwinmaker::operation::create_component_type::{
    CreateComponentTypeInput, CreateComponentTypeOutput,
};
use aws_sdk_iottwinmaker::operation::create_entity::{CreateEntityInput, CreateEntityOutput};
use aws_sdk_iottwinmaker::operation::create_workspace::{
    CreateWorkspaceError, CreateWorkspaceOutput,
};
use aws_sdk_iottwinmaker::operation::delete_component_type::DeleteComponentTypeOutput;
use aws_sdk_iottwinmaker::operation::delete_entity::DeleteEntityOutput;
use aws_sdk_iottwinmaker::operation::delete_workspace::DeleteWorkspaceOutput;
use aws_sdk_iottwinmaker::operation::get_component_type::{
    GetComponentTypeError, GetComponentTypeOutput,
};
use aws_sdk_iottwinmaker::operation::get_entity::{GetEntityError, GetEntityOutput};
use aws_sdk_iottwinmaker::operation::get_workspace::{GetWorkspaceError, GetWorkspaceOutput};
use aws_sdk_iottwinmaker::operation::list_component_types::ListComponentTypesOutput;
use aws_sdk_iottwinmaker::operation::list_entities::ListEntitiesOutput;
use aws_sdk_iottwinmaker::types::error::{ResourceNotFoundException, ValidationException};
use aws_sdk_iottwinmaker::types::{
    ComponentResponse, ComponentTypeSummary, EntitySummary, FunctionResponse,
    PropertyDefinitionResponse, PropertyResponse, State, Status,
};
use aws_sdk_iottwinmaker::Client;
use aws_smithy_mocks::{mock, MockResponse, Rule};
use aws_smithy_types::DateTime;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// One entity or component type and how many more polls it stays in its transitional state.
#[derive(Clone)]
struct Settling<T> {
    input: T,
    state: State,
    polls_left: u32,
}

#[derive(Default)]
struct Cloud {
    workspaces: BTreeMap<String, (String, String)>,
    deleted_workspaces: HashMap<String, u32>,
    types: BTreeMap<String, Settling<CreateComponentTypeInput>>,
    entities: BTreeMap<String, Settling<CreateEntityInput>>,
    /// Operation name → message of a ValidationException to answer once.
    fail_once: HashMap<&'static str, String>,
    /// Entity id → the error message it settles into instead of ACTIVE.
    error_entities: HashMap<String, String>,
    /// Built-in component types every workspace lists.
    built_ins: Vec<String>,
}

/// The fake's state and call log; `client()` gives an SDK client backed by it.
#[derive(Clone)]
pub struct FakeTwinMaker {
    cloud: Arc<Mutex<Cloud>>,
    /// Every call answered, in order.
    pub calls: Calls,
    /// Polls an entity or component type stays CREATING / DELETING.
    settle_polls: u32,
}

fn now() -> DateTime {
    DateTime::from_secs(1_700_000_000)
}

fn status(state: State, message: Option<&str>) -> Status {
    let mut b = Status::builder().state(state);
    if let Some(m) = message {
        b = b.error(
            aws_sdk_iottwinmaker::types::ErrorDetails::builder()
                .message(m)
                .build(),
        );
    }
    b.build()
}

impl FakeTwinMaker {
    /// An empty TwinMaker whose resources settle after `settle_polls` status polls.
    pub fn new(settle_polls: u32) -> Self {
        let cloud = Cloud {
            built_ins: vec!["com.amazon.iottwinmaker.alarm.basic".to_string()],
            ..Cloud::default()
        };
        FakeTwinMaker {
            cloud: Arc::new(Mutex::new(cloud)),
            calls: Calls::default(),
            settle_polls,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cloud> {
        self.cloud.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next call of `op` fails with a ValidationException carrying `message`.
    pub fn fail_once(&self, op: &'static str, message: &str) {
        self.lock().fail_once.insert(op, message.to_string());
    }

    /// The entity settles into ERROR with `message` instead of ACTIVE.
    pub fn entity_errors(&self, id: &str, message: &str) {
        self.lock().error_entities.insert(id.into(), message.into());
    }

    /// Puts a component type and an entity in the workspace that no spec knows about.
    pub fn add_orphans(&self, workspace: &str, type_id: &str, entity_id: &str) {
        let mut c = self.lock();
        c.types.insert(
            type_id.into(),
            Settling {
                input: CreateComponentTypeInput::builder()
                    .workspace_id(workspace)
                    .component_type_id(type_id)
                    .build()
                    .unwrap_or_else(|e| panic!("{e}")),
                state: State::Active,
                polls_left: 0,
            },
        );
        c.entities.insert(
            entity_id.into(),
            Settling {
                input: CreateEntityInput::builder()
                    .workspace_id(workspace)
                    .entity_id(entity_id)
                    .entity_name(entity_id)
                    .build()
                    .unwrap_or_else(|e| panic!("{e}")),
                state: State::Active,
                polls_left: 0,
            },
        );
    }

    /// Ids of the entities and component types that exist.
    pub fn contents(&self) -> (Vec<String>, Vec<String>, Vec<String>) {
        let c = self.lock();
        (
            c.workspaces.keys().cloned().collect(),
            c.types.keys().cloned().collect(),
            c.entities.keys().cloned().collect(),
        )
    }

    /// An SDK client answered by this fake.
    pub fn client(&self) -> Client {
        let rules = self.rules();
        aws_smithy_mocks::mock_client!(
            aws_sdk_iottwinmaker,
            aws_smithy_mocks::RuleMode::MatchAny,
            rules.iter(),
            |c| c.retry_config(aws_smithy_types::retry::RetryConfig::disabled())
        )
    }

    fn rules(&self) -> Vec<Rule> {
        vec![
            self.get_workspace(),
            self.create_workspace(),
            self.delete_workspace(),
            self.list_entities(),
            self.list_component_types(),
            self.create_component_type(),
            self.get_component_type(),
            self.delete_component_type(),
            self.create_entity(),
            self.get_entity(),
            self.delete_entity(),
        ]
    }

    fn get_workspace(&self) -> Rule {
        let me = self.clone();
        mock!(Client::get_workspace).then_compute_response(move |req| {
            let id = req.workspace_id().unwrap_or_default().to_string();
            let mut c = me.lock();
            // A deleted workspace stays visible for a poll, as TwinMaker's does.
            if let Some(n) = c.deleted_workspaces.get_mut(&id) {
                if *n > 0 {
                    *n -= 1;
                    me.calls.push(format!("GetWorkspace {id} -> deleting"));
                    return MockResponse::Output(
                        GetWorkspaceOutput::builder()
                            .workspace_id(&id)
                            .arn(format!(
                                "arn:aws:iottwinmaker:us-east-1:123456789012:workspace/{id}"
                            ))
                            .creation_date_time(now())
                            .update_date_time(now())
                            .build()
                            .unwrap_or_else(|e| panic!("{e}")),
                    );
                }
            }
            match c.workspaces.get(&id) {
                Some((role, s3)) => {
                    me.calls.push(format!("GetWorkspace {id} -> found"));
                    MockResponse::Output(
                        GetWorkspaceOutput::builder()
                            .workspace_id(&id)
                            .arn(format!(
                                "arn:aws:iottwinmaker:us-east-1:123456789012:workspace/{id}"
                            ))
                            .role(role)
                            .s3_location(s3)
                            .creation_date_time(now())
                            .update_date_time(now())
                            .build()
                            .unwrap_or_else(|e| panic!("{e}")),
                    )
                }
                None => {
                    me.calls.push(format!("GetWorkspace {id} -> not found"));
                    MockResponse::Error(GetWorkspaceError::ResourceNotFoundException(
                        ResourceNotFoundException::builder()
                            .message("workspace not found")
                            .meta(meta("ResourceNotFoundException", "workspace not found"))
                            .build(),
                    ))
                }
            }
        })
    }

    fn create_workspace(&self) -> Rule {
        let me = self.clone();
        mock!(Client::create_workspace).then_compute_response(move |req| {
            let id = req.workspace_id().unwrap_or_default().to_string();
            let role = req.role().unwrap_or_default().to_string();
            let s3 = req.s3_location().unwrap_or_default().to_string();
            let mut c = me.lock();
            if let Some(m) = c.fail_once.remove("CreateWorkspace") {
                me.calls
                    .push(format!("CreateWorkspace {id} -> ValidationException"));
                return MockResponse::Error(CreateWorkspaceError::ValidationException(
                    ValidationException::builder()
                        .message(&m)
                        .meta(meta("ValidationException", &m))
                        .build(),
                ));
            }
            me.calls
                .push(format!("CreateWorkspace {id} role={role} s3={s3}"));
            c.workspaces.insert(id.clone(), (role, s3));
            MockResponse::Output(
                CreateWorkspaceOutput::builder()
                    .arn(format!(
                        "arn:aws:iottwinmaker:us-east-1:123456789012:workspace/{id}"
                    ))
                    .creation_date_time(now())
                    .build()
                    .unwrap_or_else(|e| panic!("{e}")),
            )
        })
    }

    fn delete_workspace(&self) -> Rule {
        let me = self.clone();
        mock!(Client::delete_workspace).then_compute_output(move |req| {
            let id = req.workspace_id().unwrap_or_default().to_string();
            let mut c = me.lock();
            assert!(
                c.entities.is_empty() && c.types.is_empty(),
                "TwinMaker refuses to delete a workspace that is not empty"
            );
            me.calls.push(format!("DeleteWorkspace {id}"));
            c.workspaces.remove(&id);
            c.deleted_workspaces.insert(id, 1);
            DeleteWorkspaceOutput::builder().build()
        })
    }

    fn list_entities(&self) -> Rule {
        let me = self.clone();
        mock!(Client::list_entities).then_compute_output(move |req| {
            let c = me.lock();
            let ids: Vec<&String> = c.entities.keys().collect();
            me.calls.push(format!(
                "ListEntities {} -> {ids:?}",
                req.workspace_id().unwrap_or_default()
            ));
            let mut b = ListEntitiesOutput::builder();
            for (id, e) in &c.entities {
                b = b.entity_summaries(
                    EntitySummary::builder()
                        .entity_id(id)
                        .entity_name(id)
                        .arn(format!("arn:entity/{id}"))
                        .parent_entity_id(e.input.parent_entity_id().unwrap_or("$ROOT"))
                        .status(status(e.state.clone(), None))
                        .creation_date_time(now())
                        .update_date_time(now())
                        .build()
                        .unwrap_or_else(|e| panic!("{e}")),
                );
            }
            b.build()
        })
    }

    fn list_component_types(&self) -> Rule {
        let me = self.clone();
        mock!(Client::list_component_types).then_compute_output(move |req| {
            let c = me.lock();
            let mut ids: Vec<String> = c.built_ins.clone();
            ids.extend(c.types.keys().cloned());
            me.calls.push(format!(
                "ListComponentTypes {} -> {ids:?}",
                req.workspace_id().unwrap_or_default()
            ));
            let mut b = ListComponentTypesOutput::builder()
                .workspace_id(req.workspace_id().unwrap_or_default());
            for id in ids {
                b = b.component_type_summaries(
                    ComponentTypeSummary::builder()
                        .arn(format!("arn:component-type/{id}"))
                        .component_type_id(id)
                        .creation_date_time(now())
                        .update_date_time(now())
                        .build()
                        .unwrap_or_else(|e| panic!("{e}")),
                );
            }
            b.build().unwrap_or_else(|e| panic!("{e}"))
        })
    }

    fn create_component_type(&self) -> Rule {
        let me = self.clone();
        mock!(Client::create_component_type).then_compute_output(move |req| {
            let id = req.component_type_id().unwrap_or_default().to_string();
            let props: Vec<String> = req
                .property_definitions()
                .map(|p| {
                    let mut v: Vec<String> = p
                        .iter()
                        .map(|(k, d)| {
                            format!(
                                "{k}:{}{}{}",
                                d.data_type().map(|t| t.r#type().as_str()).unwrap_or("?"),
                                if d.is_time_series() == Some(true) {
                                    ":ts"
                                } else {
                                    ""
                                },
                                if d.is_external_id() == Some(true) {
                                    ":extid"
                                } else {
                                    ""
                                },
                            )
                        })
                        .collect();
                    v.sort();
                    v
                })
                .unwrap_or_default();
            let reader = req
                .functions()
                .and_then(|f| f.get("dataReader"))
                .and_then(|f| f.implemented_by())
                .and_then(|i| i.lambda())
                .map(|l| l.arn().to_string())
                .unwrap_or_default();
            me.calls.push(format!(
                "CreateComponentType {id} props={props:?} dataReader={reader}"
            ));
            me.lock().types.insert(
                id,
                Settling {
                    input: req.clone(),
                    state: State::Creating,
                    polls_left: me.settle_polls,
                },
            );
            CreateComponentTypeOutput::builder()
                .arn("arn:x")
                .creation_date_time(now())
                .state(State::Creating)
                .build()
                .unwrap_or_else(|e| panic!("{e}"))
        })
    }

    fn get_component_type(&self) -> Rule {
        let me = self.clone();
        mock!(Client::get_component_type).then_compute_response(move |req| {
            let id = req.component_type_id().unwrap_or_default().to_string();
            let mut c = me.lock();
            let Some(t) = c.types.get_mut(&id) else {
                me.calls.push(format!("GetComponentType {id} -> not found"));
                return MockResponse::Error(GetComponentTypeError::ResourceNotFoundException(
                    ResourceNotFoundException::builder()
                        .meta(meta("ResourceNotFoundException", "no such component type"))
                        .build(),
                ));
            };
            let state = settle(&mut t.state, &mut t.polls_left, None);
            if state.is_none() {
                c.types.remove(&id);
                me.calls.push(format!("GetComponentType {id} -> not found"));
                return MockResponse::Error(GetComponentTypeError::ResourceNotFoundException(
                    ResourceNotFoundException::builder()
                        .meta(meta("ResourceNotFoundException", "no such component type"))
                        .build(),
                ));
            }
            let state = state.unwrap_or(State::Active);
            me.calls
                .push(format!("GetComponentType {id} -> {}", state.as_str()));
            let input = t.input.clone();
            let mut b = GetComponentTypeOutput::builder()
                .workspace_id(input.workspace_id().unwrap_or_default())
                .component_type_id(&id)
                .arn(format!(
                    "arn:aws:iottwinmaker:us-east-1:123456789012:workspace/ws/component-type/{id}"
                ))
                .creation_date_time(now())
                .update_date_time(now())
                .status(status(state, None));
            for (name, d) in input.property_definitions().into_iter().flatten() {
                b = b.property_definitions(
                    name,
                    PropertyDefinitionResponse::builder()
                        .set_data_type(d.data_type().cloned())
                        .is_time_series(d.is_time_series().unwrap_or(false))
                        .is_required_in_entity(d.is_required_in_entity().unwrap_or(false))
                        .is_external_id(d.is_external_id().unwrap_or(false))
                        .is_stored_externally(d.is_stored_externally().unwrap_or(false))
                        .is_imported(false)
                        .is_final(false)
                        .is_inherited(false)
                        .set_default_value(d.default_value().cloned())
                        .build()
                        .unwrap_or_else(|e| panic!("{e}")),
                );
            }
            for (name, f) in input.functions().into_iter().flatten() {
                b = b.functions(
                    name,
                    FunctionResponse::builder()
                        .set_implemented_by(f.implemented_by().cloned())
                        .build(),
                );
            }
            MockResponse::Output(b.build().unwrap_or_else(|e| panic!("{e}")))
        })
    }

    fn delete_component_type(&self) -> Rule {
        let me = self.clone();
        mock!(Client::delete_component_type).then_compute_output(move |req| {
            let id = req.component_type_id().unwrap_or_default().to_string();
            me.calls.push(format!("DeleteComponentType {id}"));
            let mut c = me.lock();
            assert!(
                !c.entities
                    .values()
                    .any(|e| e.input.components().is_some_and(|m| m
                        .values()
                        .any(|x| x.component_type_id() == Some(id.as_str())))),
                "TwinMaker refuses to delete component type {id} while entities use it"
            );
            if let Some(t) = c.types.get_mut(&id) {
                t.state = State::Deleting;
                t.polls_left = me.settle_polls;
            }
            DeleteComponentTypeOutput::builder()
                .state(State::Deleting)
                .build()
                .unwrap_or_else(|e| panic!("{e}"))
        })
    }

    fn create_entity(&self) -> Rule {
        let me = self.clone();
        mock!(Client::create_entity).then_compute_output(move |req| {
            let id = req.entity_id().unwrap_or_default().to_string();
            let mut comps: Vec<String> = req
                .components()
                .into_iter()
                .flatten()
                .map(|(n, c)| {
                    let device = c
                        .properties()
                        .and_then(|p| p.get("iotDeviceId"))
                        .and_then(|p| p.value())
                        .and_then(|v| v.string_value())
                        .unwrap_or_default();
                    format!("{n}:{}:{device}", c.component_type_id().unwrap_or_default())
                })
                .collect();
            comps.sort();
            let mut c = me.lock();
            if let Some(p) = req.parent_entity_id() {
                assert!(
                    c.entities.contains_key(p),
                    "parent {p} of {id} must exist first"
                );
            }
            me.calls.push(format!(
                "CreateEntity {id} parent={} components={comps:?}",
                req.parent_entity_id().unwrap_or("-")
            ));
            c.entities.insert(
                id.clone(),
                Settling {
                    input: req.clone(),
                    state: State::Creating,
                    polls_left: me.settle_polls,
                },
            );
            CreateEntityOutput::builder()
                .entity_id(id)
                .arn("arn:x")
                .creation_date_time(now())
                .state(State::Creating)
                .build()
                .unwrap_or_else(|e| panic!("{e}"))
        })
    }

    fn get_entity(&self) -> Rule {
        let me = self.clone();
        mock!(Client::get_entity).then_compute_response(move |req| {
            let id = req.entity_id().unwrap_or_default().to_string();
            let mut c = me.lock();
            let error = c.error_entities.get(&id).cloned();
            let not_found = || {
                MockResponse::Error(GetEntityError::ResourceNotFoundException(
                    ResourceNotFoundException::builder()
                        .meta(meta("ResourceNotFoundException", "no such entity"))
                        .build(),
                ))
            };
            let Some(e) = c.entities.get_mut(&id) else {
                me.calls.push(format!("GetEntity {id} -> not found"));
                return not_found();
            };
            let Some(state) = settle(&mut e.state, &mut e.polls_left, error.as_deref()) else {
                c.entities.remove(&id);
                me.calls.push(format!("GetEntity {id} -> not found"));
                return not_found();
            };
            me.calls
                .push(format!("GetEntity {id} -> {}", state.as_str()));
            let input = e.input.clone();
            let mut b = GetEntityOutput::builder()
                .entity_id(&id)
                .entity_name(&id)
                .arn(format!(
                    "arn:aws:iottwinmaker:us-east-1:123456789012:workspace/ws/entity/{id}"
                ))
                .workspace_id(input.workspace_id().unwrap_or_default())
                .parent_entity_id(input.parent_entity_id().unwrap_or("$ROOT"))
                .has_child_entities(false)
                .creation_date_time(now())
                .update_date_time(now())
                .status(status(state, error.as_deref()));
            for (name, comp) in input.components().into_iter().flatten() {
                let mut cb = ComponentResponse::builder()
                    .component_name(name)
                    .set_component_type_id(comp.component_type_id().map(str::to_string));
                for (p, v) in comp.properties().into_iter().flatten() {
                    cb = cb.properties(
                        p,
                        PropertyResponse::builder()
                            .set_value(v.value().cloned())
                            .build(),
                    );
                }
                b = b.components(name, cb.build());
            }
            MockResponse::Output(b.build().unwrap_or_else(|e| panic!("{e}")))
        })
    }

    fn delete_entity(&self) -> Rule {
        let me = self.clone();
        mock!(Client::delete_entity).then_compute_output(move |req| {
            let id = req.entity_id().unwrap_or_default().to_string();
            me.calls.push(format!(
                "DeleteEntity {id} recursive={}",
                req.is_recursive().unwrap_or(false)
            ));
            let mut c = me.lock();
            if let Some(e) = c.entities.get_mut(&id) {
                e.state = State::Deleting;
                e.polls_left = me.settle_polls;
            }
            DeleteEntityOutput::builder()
                .state(State::Deleting)
                .build()
                .unwrap_or_else(|e| panic!("{e}"))
        })
    }
}

/// Advances a transitional state by one poll: `Some(state)` to report, `None` once a deletion
/// has finished. CREATING becomes ACTIVE (or ERROR when `error` is set).
fn settle(state: &mut State, polls_left: &mut u32, error: Option<&str>) -> Option<State> {
    if *polls_left > 0 {
        *polls_left -= 1;
        return Some(state.clone());
    }
    match state {
        State::Creating | State::Updating => {
            *state = if error.is_some() {
                State::Error
            } else {
                State::Active
            };
            Some(state.clone())
        }
        State::Deleting => None,
        other => Some(other.clone()),
    }
}
