//! TwinMaker creates, updates and deletes entities and component types asynchronously: the call
//! returns at CREATING / UPDATING / DELETING and the resource settles later. These helpers wait
//! on that status with `poll_until` instead of sleeping.

use aws_sdk_iottwinmaker::types::{State, Status};
use std::future::Future;
use std::time::Duration;
use twin_engine::wait::poll_until;
use twin_engine::{CloudError, ErrorClass};

/// First poll interval: entities and component types usually settle within seconds.
const FIRST_POLL: Duration = Duration::from_millis(500);
/// Longest poll interval.
const MAX_POLL: Duration = Duration::from_secs(10);
/// How long a TwinMaker resource may take to settle before the wait gives up.
pub const SETTLE_DEADLINE: Duration = Duration::from_secs(600);

/// What one status poll found.
#[derive(Debug, Clone, PartialEq)]
pub enum Polled {
    /// The resource exists in this state, with the error TwinMaker reports for `ERROR`.
    Present(Option<State>, Option<String>),
    /// The resource is gone.
    Gone,
}

/// The state and error message of a TwinMaker status.
pub fn polled(status: Option<&Status>) -> Polled {
    Polled::Present(
        status.and_then(|s| s.state()).cloned(),
        status
            .and_then(|s| s.error())
            .and_then(|e| e.message())
            .map(str::to_string),
    )
}

/// Waits until `check` reports ACTIVE; ERROR (or the resource vanishing) ends the wait with a
/// fatal error naming `what`.
pub async fn wait_active<F, Fut>(what: &str, mut check: F) -> Result<(), CloudError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Polled, CloudError>>,
{
    poll_until(
        &format!("{what} ACTIVE"),
        FIRST_POLL,
        MAX_POLL,
        SETTLE_DEADLINE,
        || {
            let next = check();
            async move {
                match next.await? {
                    Polled::Present(Some(State::Active), _) => Ok(Some(())),
                    Polled::Present(Some(State::Error), message) => Err(CloudError::fatal(
                        "TwinMakerStateError",
                        format!(
                            "{what} is in state ERROR: {}",
                            message.unwrap_or_else(|| "no reason given".into())
                        ),
                    )
                    .with_hint("fix the cause, then run `destroy --layer l4` and `deploy` again")),
                    Polled::Gone => Err(CloudError::new(
                        ErrorClass::EventualConsistency,
                        "NotYetVisible",
                        format!("{what} not visible yet"),
                    )),
                    Polled::Present(_, _) => Ok(None),
                }
            }
        },
    )
    .await
}

/// Waits until `check` reports the resource gone. A resource stuck in ERROR while deleting
/// ends the wait with a fatal error naming `what`.
pub async fn wait_gone<F, Fut>(what: &str, mut check: F) -> Result<(), CloudError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Polled, CloudError>>,
{
    poll_until(
        &format!("{what} deleted"),
        FIRST_POLL,
        MAX_POLL,
        SETTLE_DEADLINE,
        || {
            let next = check();
            async move {
                match next.await? {
                    Polled::Gone => Ok(Some(())),
                    Polled::Present(Some(State::Error), message) => Err(CloudError::fatal(
                        "TwinMakerStateError",
                        format!(
                            "deleting {what} failed: {}",
                            message.unwrap_or_else(|| "no reason given".into())
                        ),
                    )),
                    Polled::Present(_, _) => Ok(None),
                }
            }
        },
    )
    .await
}
