//! Exponential backoff with jitter up to a deadline, for calls that failed retryably.

use crate::error::CloudError;
use rand::Rng;
use std::future::Future;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How long and how often a failing call is retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// First delay before jitter.
    pub base: Duration,
    /// Largest delay.
    pub cap: Duration,
    /// Give up when the next attempt would start later than this after the first.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    /// IAM propagation takes up to ~10 s and API throttling clears within a minute, so a few
    /// minutes per operation is generous without hanging a broken deploy for long.
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_millis(250),
            cap: Duration::from_secs(20),
            deadline: Duration::from_secs(300),
        }
    }
}

/// Why a retried call ended without success.
#[derive(Debug)]
pub enum RetryStop {
    /// The last error (not retryable, or the deadline passed).
    Failed(CloudError, u32),
    /// Cancelled while waiting.
    Cancelled,
}

impl RetryPolicy {
    /// The delay before retry number `attempt` (1-based): exponential, capped, with "equal
    /// jitter" (half fixed, half random) so concurrent callers spread out but never hammer.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(20)));
        let d = exp.min(self.cap);
        let half = d / 2;
        let jitter_ms = rand::rng().random_range(0..=half.as_millis().max(1) as u64);
        half + Duration::from_millis(jitter_ms)
    }

    /// Runs `call` without retry events (calls outside a resource: account look-ups,
    /// discovery, listings), mapping a stop to the last error or `None` when cancelled.
    pub async fn run_quiet<T, F, Fut>(
        &self,
        cancel: &CancellationToken,
        call: F,
    ) -> Result<T, Option<CloudError>>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, CloudError>>,
    {
        match self.run(cancel, call, |_, _, _| {}).await {
            Ok((v, _)) => Ok(v),
            Err(RetryStop::Failed(e, _)) => Err(Some(e)),
            Err(RetryStop::Cancelled) => Err(None),
        }
    }

    /// Runs `call` until it succeeds, fails with a non-retryable error, the deadline passes, or
    /// `cancel` fires. `on_retry(attempt, delay, error)` is told before each wait.
    pub async fn run<T, F, Fut>(
        &self,
        cancel: &CancellationToken,
        mut call: F,
        mut on_retry: impl FnMut(u32, Duration, &CloudError),
    ) -> Result<(T, u32), RetryStop>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, CloudError>>,
    {
        let start = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let outcome = tokio::select! {
                r = call(attempt) => r,
                // A long call (a wait inside a driver) stops on Ctrl-C too: whatever it had
                // asked the cloud to do is found again by the next command's read.
                _ = cancel.cancelled() => return Err(RetryStop::Cancelled),
            };
            match outcome {
                Ok(v) => return Ok((v, attempt)),
                Err(e) => {
                    // A server's Retry-After is a floor, never shortened by our backoff.
                    let delay = self
                        .delay(attempt)
                        .max(e.retry_after.unwrap_or_default().min(self.cap * 3));
                    if !e.class.is_retryable() || start.elapsed() + delay > self.deadline {
                        return Err(RetryStop::Failed(e, attempt));
                    }
                    on_retry(attempt, delay, &e);
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {} // backoff
                        _ = cancel.cancelled() => return Err(RetryStop::Cancelled),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorClass;

    #[test]
    fn delay_grows_and_is_capped() {
        let p = RetryPolicy {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
            deadline: Duration::from_secs(10),
        };
        for _ in 0..50 {
            let d1 = p.delay(1);
            assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
            let d3 = p.delay(3);
            assert!(d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400));
            let d30 = p.delay(30);
            assert!(d30 >= Duration::from_millis(500) && d30 <= Duration::from_secs(1));
        }
    }

    #[tokio::test]
    async fn retries_retryable_then_succeeds() {
        let p = RetryPolicy {
            base: Duration::from_millis(1),
            cap: Duration::from_millis(2),
            deadline: Duration::from_secs(5),
        };
        let mut retries = 0;
        let r = p
            .run(
                &CancellationToken::new(),
                |n| async move {
                    if n < 3 {
                        Err(CloudError::new(
                            ErrorClass::Throttling,
                            "Throttling",
                            "slow down",
                        ))
                    } else {
                        Ok(n)
                    }
                },
                |_, _, _| retries += 1,
            )
            .await;
        assert!(matches!(r, Ok((3, 3))));
        assert_eq!(retries, 2);
    }

    #[tokio::test]
    async fn honours_retry_after() {
        let p = RetryPolicy {
            base: Duration::from_millis(1),
            cap: Duration::from_millis(100),
            deadline: Duration::from_secs(5),
        };
        let start = Instant::now();
        let r = p
            .run(
                &CancellationToken::new(),
                |n| async move {
                    if n < 2 {
                        Err(CloudError::new(ErrorClass::Throttling, "TooMany", "wait")
                            .with_retry_after(Some(Duration::from_millis(80))))
                    } else {
                        Ok(n)
                    }
                },
                |_, d, _| assert!(d >= Duration::from_millis(80), "{d:?}"),
            )
            .await;
        assert!(matches!(r, Ok((2, 2))));
        assert!(start.elapsed() >= Duration::from_millis(80));
    }

    #[tokio::test]
    async fn a_long_call_stops_on_cancel() {
        let p = RetryPolicy::default();
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await; // let the call start
            c.cancel();
        });
        let r: Result<((), u32), _> = p
            .run(
                &cancel,
                |_| async {
                    std::future::pending::<()>().await;
                    Ok(())
                },
                |_, _, _| {},
            )
            .await;
        assert!(matches!(r, Err(RetryStop::Cancelled)));
    }

    #[tokio::test]
    async fn fatal_fails_on_first_attempt() {
        let p = RetryPolicy::default();
        let r: Result<((), u32), _> = p
            .run(
                &CancellationToken::new(),
                |_| async { Err(CloudError::fatal("AccessDenied", "no")) },
                |_, _, _| panic!("must not retry"),
            )
            .await;
        assert!(matches!(r, Err(RetryStop::Failed(e, 1)) if e.code == "AccessDenied"));
    }

    #[tokio::test]
    async fn gives_up_at_the_deadline() {
        let p = RetryPolicy {
            base: Duration::from_millis(5),
            cap: Duration::from_millis(10),
            deadline: Duration::from_millis(60),
        };
        let r: Result<((), u32), _> = p
            .run(
                &CancellationToken::new(),
                |_| async {
                    Err(CloudError::new(
                        ErrorClass::Transient,
                        "InternalError",
                        "5xx",
                    ))
                },
                |_, _, _| {},
            )
            .await;
        match r {
            Err(RetryStop::Failed(e, n)) => {
                assert_eq!(e.code, "InternalError");
                assert!(n > 2, "retried {n} times");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
