//! Keeping a boundary's two copies of its secret in step, and rotating them with no failed
//! message: the sender's store is the source of truth; the receiver's store holds a current
//! and, during a rotation, a next secret, and accepts both.
//!
//! Rotation: stage the new secret as next on the receiver (it now accepts old and new), switch
//! the sender to it, then promote it on the receiver (the old one is retired). Every moment in
//! between, the secret the sender signs with is one the receiver accepts. An interrupted
//! rotation is finished by running it again: [`sync`] first completes whatever state it finds.

use super::receiver::AcceptedSecrets;
use super::secret::BoundarySecret;
use crate::error::CloudError;
use async_trait::async_trait;

/// One side's store of a boundary secret (AWS Secrets Manager, an Azure Key Vault secret or
/// app setting). Implementations never log or return the value anywhere else.
#[async_trait]
pub trait BoundarySecretStore: Send + Sync {
    /// Where the secret lives, for messages: e.g. `AWS Secrets Manager secret t-boundary-persist`.
    fn location(&self) -> String;
    /// The current secret (what a sender signs with), `None` if the store has none yet.
    async fn current(&self) -> Result<Option<BoundarySecret>, CloudError>;
    /// The staged next secret, if a rotation staged one.
    async fn next(&self) -> Result<Option<BoundarySecret>, CloudError>;
    /// Replaces the current secret (the sender's switch); clears nothing else.
    async fn set_current(&self, secret: &BoundarySecret) -> Result<(), CloudError>;
    /// Stages `secret` as next (replacing a staged one).
    async fn stage_next(&self, secret: &BoundarySecret) -> Result<(), CloudError>;
    /// Makes the staged next secret current and forgets the old current; no-op without one.
    async fn promote_next(&self) -> Result<(), CloudError>;
}

/// The secrets a receiver's store accepts now.
pub async fn accepted(
    store: &dyn BoundarySecretStore,
) -> Result<Option<AcceptedSecrets>, CloudError> {
    let Some(current) = store.current().await? else {
        return Ok(None);
    };
    let accepted = AcceptedSecrets::new(current);
    Ok(Some(match store.next().await? {
        Some(next) => accepted.also(next),
        None => accepted,
    }))
}

/// A step of [`rotate`], reported as it completes (for progress and for tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotationStep {
    /// The two copies were brought in step first (see [`sync`]).
    Synced(SyncOutcome),
    /// The new secret is staged on the receiver: it accepts old and new.
    StagedOnReceiver,
    /// The sender signs with the new secret.
    SwitchedSender,
    /// The receiver accepts only the new secret.
    RetiredOld,
}

/// What [`sync`] had to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncOutcome {
    /// The receiver's current secret is the sender's.
    InStep,
    /// An interrupted rotation had switched the sender: its secret was promoted on the receiver.
    FinishedRotation,
    /// The receiver held another secret (or none): the sender's was installed there.
    Installed,
}

/// Why a boundary's secrets could not be brought in step.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RotationError {
    /// The sender's store has no secret: the boundary is not deployed.
    #[error("{0} has no secret yet; run `deployer deploy` first")]
    NotDeployed(String),
    /// A store call failed (see the error for the resource and whether a retry may help).
    #[error("{store}: {error}")]
    Store {
        /// Which store.
        store: String,
        /// What it answered.
        error: CloudError,
    },
}

fn at(store: &dyn BoundarySecretStore) -> impl Fn(CloudError) -> RotationError + '_ {
    move |error| RotationError::Store {
        store: store.location(),
        error,
    }
}

/// Makes the receiver accept the sender's current secret, finishing an interrupted rotation
/// if that is where things stand. Safe to run at any time (`deploy` runs it for every boundary).
pub async fn sync(
    sender: &dyn BoundarySecretStore,
    receiver: &dyn BoundarySecretStore,
) -> Result<SyncOutcome, RotationError> {
    let signing = sender
        .current()
        .await
        .map_err(at(sender))?
        .ok_or_else(|| RotationError::NotDeployed(sender.location()))?;
    if receiver.current().await.map_err(at(receiver))?.as_ref() == Some(&signing) {
        return Ok(SyncOutcome::InStep);
    }
    if receiver.next().await.map_err(at(receiver))?.as_ref() == Some(&signing) {
        receiver.promote_next().await.map_err(at(receiver))?;
        return Ok(SyncOutcome::FinishedRotation);
    }
    // The receiver's own value was never given to any sender, so nothing signed with it
    // can be lost when it is replaced.
    receiver.stage_next(&signing).await.map_err(at(receiver))?;
    receiver.promote_next().await.map_err(at(receiver))?;
    Ok(SyncOutcome::Installed)
}

/// Rotates a boundary's secret to `new` with no failed message (see the module doc), calling
/// `done` after each step.
pub async fn rotate(
    sender: &dyn BoundarySecretStore,
    receiver: &dyn BoundarySecretStore,
    new: &BoundarySecret,
    done: &mut (dyn FnMut(RotationStep) + Send),
) -> Result<(), RotationError> {
    done(RotationStep::Synced(sync(sender, receiver).await?));
    receiver.stage_next(new).await.map_err(at(receiver))?;
    done(RotationStep::StagedOnReceiver);
    sender.set_current(new).await.map_err(at(sender))?;
    done(RotationStep::SwitchedSender);
    receiver.promote_next().await.map_err(at(receiver))?;
    done(RotationStep::RetiredOld);
    Ok(())
}

/// A store in memory, for tests and the local data plane.
#[derive(Debug, Default)]
pub struct InMemorySecretStore {
    name: String,
    slots: std::sync::Mutex<(Option<BoundarySecret>, Option<BoundarySecret>)>,
    /// Fails the n-th mutating call from now (1 = the next one), to test interrupted rotations.
    fail_at: std::sync::Mutex<Option<u32>>,
}

impl InMemorySecretStore {
    /// A store named `name` holding `current`.
    pub fn new(name: &str, current: Option<BoundarySecret>) -> Self {
        Self {
            name: name.to_string(),
            slots: std::sync::Mutex::new((current, None)),
            fail_at: std::sync::Mutex::new(None),
        }
    }

    /// Makes the `n`-th mutating call from now fail with a transient error.
    pub fn fail_mutation(&self, n: u32) {
        if let Ok(mut f) = self.fail_at.lock() {
            *f = Some(n);
        }
    }

    fn error(&self, code: &str) -> CloudError {
        CloudError::new(
            "SecretStore",
            self.name.clone(),
            code,
            "in-memory store",
            crate::error::CloudErrorKind::Transient,
        )
    }

    fn mutate(
        &self,
        f: impl FnOnce(&mut (Option<BoundarySecret>, Option<BoundarySecret>)),
    ) -> Result<(), CloudError> {
        let mut fail = self.fail_at.lock().map_err(|_| self.error("Poisoned"))?;
        if let Some(n) = *fail {
            if n <= 1 {
                *fail = None;
                return Err(self.error("InjectedFault"));
            }
            *fail = Some(n - 1);
        }
        let mut slots = self.slots.lock().map_err(|_| self.error("Poisoned"))?;
        f(&mut slots);
        Ok(())
    }

    fn read(&self, next: bool) -> Result<Option<BoundarySecret>, CloudError> {
        let slots = self.slots.lock().map_err(|_| self.error("Poisoned"))?;
        Ok(if next {
            slots.1.clone()
        } else {
            slots.0.clone()
        })
    }
}

#[async_trait]
impl BoundarySecretStore for InMemorySecretStore {
    fn location(&self) -> String {
        format!("in-memory store {}", self.name)
    }
    async fn current(&self) -> Result<Option<BoundarySecret>, CloudError> {
        self.read(false)
    }
    async fn next(&self) -> Result<Option<BoundarySecret>, CloudError> {
        self.read(true)
    }
    async fn set_current(&self, secret: &BoundarySecret) -> Result<(), CloudError> {
        self.mutate(|s| s.0 = Some(secret.clone()))
    }
    async fn stage_next(&self, secret: &BoundarySecret) -> Result<(), CloudError> {
        self.mutate(|s| s.1 = Some(secret.clone()))
    }
    async fn promote_next(&self) -> Result<(), CloudError> {
        self.mutate(|s| {
            if let Some(n) = s.1.take() {
                s.0 = Some(n);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(b: u8) -> BoundarySecret {
        BoundarySecret::from_bytes([b; 32])
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    /// Whether the receiver accepts what the sender signs with right now (read directly: the
    /// callers run inside a runtime already).
    fn in_step(sender: &InMemorySecretStore, receiver: &InMemorySecretStore) -> bool {
        let signing = sender.read(false).expect("reads");
        let accepted = [receiver.read(false), receiver.read(true)];
        signing.is_some_and(|sig| {
            accepted
                .iter()
                .any(|a| a.as_ref().ok().and_then(Option::as_ref) == Some(&sig))
        })
    }

    #[test]
    fn sync_installs_the_senders_secret_on_a_fresh_receiver() {
        let sender = InMemorySecretStore::new("sender", Some(s(1)));
        let receiver = InMemorySecretStore::new("receiver", Some(s(9)));
        assert_eq!(
            block_on(sync(&sender, &receiver)).expect("syncs"),
            SyncOutcome::Installed
        );
        assert!(in_step(&sender, &receiver));
        assert_eq!(
            block_on(sync(&sender, &receiver)).expect("syncs"),
            SyncOutcome::InStep
        );
        let empty = InMemorySecretStore::new("nothing", None);
        assert!(matches!(
            block_on(sync(&empty, &receiver)),
            Err(RotationError::NotDeployed(_))
        ));
    }

    #[test]
    fn every_moment_of_a_rotation_accepts_what_the_sender_signs_with() {
        let sender = InMemorySecretStore::new("sender", Some(s(1)));
        let receiver = InMemorySecretStore::new("receiver", Some(s(1)));
        let mut steps = Vec::new();
        let mut ok = true;
        block_on(rotate(&sender, &receiver, &s(2), &mut |step| {
            steps.push(step);
            ok &= in_step(&sender, &receiver);
        }))
        .expect("rotates");
        assert!(ok, "a message would have failed during {steps:?}");
        assert_eq!(steps.len(), 4);
        assert_eq!(receiver.read(false).expect("reads"), Some(s(2)));
        assert_eq!(
            receiver.read(true).expect("reads"),
            None,
            "the old secret is retired"
        );
    }

    #[test]
    fn a_rotation_interrupted_at_any_step_stays_in_step_and_finishes_when_run_again() {
        for fail_at in 1..=3 {
            let sender = InMemorySecretStore::new("sender", Some(s(1)));
            let receiver = InMemorySecretStore::new("receiver", Some(s(1)));
            // Mutations in order: receiver stage, sender switch, receiver promote.
            match fail_at {
                1 => receiver.fail_mutation(1),
                2 => sender.fail_mutation(1),
                _ => receiver.fail_mutation(2),
            }
            let first = block_on(rotate(&sender, &receiver, &s(2), &mut |_| {}));
            assert!(first.is_err(), "fault {fail_at} was injected");
            assert!(in_step(&sender, &receiver), "fault {fail_at}: out of step");
            let mut ok = true;
            block_on(rotate(&sender, &receiver, &s(3), &mut |_| {
                ok &= in_step(&sender, &receiver);
            }))
            .expect("the second run rotates");
            assert!(
                ok,
                "fault {fail_at}: a message would have failed on the rerun"
            );
            assert_eq!(sender.read(false).expect("reads"), Some(s(3)));
            assert_eq!(receiver.read(false).expect("reads"), Some(s(3)));
        }
    }
}
