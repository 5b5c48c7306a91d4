//! Waiting on conditions with a deadline instead of sleeping.
//!
//! [`wait_for`] polls an async condition with a short backoff (10 ms doubling to 200 ms) until it
//! holds or the deadline passes. [`wait_for_object`] follows one object with kube-runtime's
//! `await_condition` (a watch, no polling).

use std::{fmt::Debug, future::Future, time::Duration};

use kube::{Api, Resource, runtime::wait::Condition};
use serde::de::DeserializeOwned;

/// The deadline passed before the condition held.
#[derive(Debug, thiserror::Error)]
#[error("timed out after {waited:?} waiting for {what}")]
pub struct WaitTimeout {
    /// What was waited for.
    pub what: String,
    /// How long.
    pub waited: Duration,
}

/// Failure of [`wait_for_object`].
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// The deadline passed.
    #[error(transparent)]
    Timeout(#[from] WaitTimeout),
    /// The watch behind `await_condition` failed.
    #[error("watching {what} failed: {source}")]
    Watch {
        /// What was waited for.
        what: String,
        /// The watch error.
        source: kube::runtime::wait::Error,
    },
}

/// What a polled condition returns: `bool`, or `Option<T>` to hand a value back.
pub trait Ready {
    /// The value handed back once ready.
    type Output;
    /// `Some` once the condition holds.
    fn into_ready(self) -> Option<Self::Output>;
}

impl Ready for bool {
    type Output = ();
    fn into_ready(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Ready for Option<T> {
    type Output = T;
    fn into_ready(self) -> Option<T> {
        self
    }
}

/// Polls `condition` until it returns `true`/`Some`, for at most `deadline`.
///
/// ```no_run
/// # async fn demo(api: kube::Api<k8s_openapi::api::core::v1::Secret>) {
/// use std::time::Duration;
/// cstor_testkit::wait_for(Duration::from_secs(10), || async {
///     api.get_opt("s").await.ok().flatten().is_none()
/// })
/// .await
/// .expect("secret s was not deleted");
/// # }
/// ```
pub async fn wait_for<F, Fut, R>(deadline: Duration, condition: F) -> Result<R::Output, WaitTimeout>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = R>,
    R: Ready,
{
    wait_until("the condition", deadline, condition).await
}

/// [`wait_for`] with a description of what is awaited, used in the timeout error.
pub async fn wait_until<F, Fut, R>(
    what: &str,
    deadline: Duration,
    mut condition: F,
) -> Result<R::Output, WaitTimeout>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = R>,
    R: Ready,
{
    let start = tokio::time::Instant::now();
    let end = start + deadline;
    let mut backoff = Duration::from_millis(10);
    loop {
        if let Some(v) = condition().await.into_ready() {
            return Ok(v);
        }
        let now = tokio::time::Instant::now();
        if now >= end {
            return Err(WaitTimeout {
                what: what.to_string(),
                waited: now - start,
            });
        }
        tokio::time::sleep(backoff.min(end - now)).await;
        backoff = (backoff * 2).min(Duration::from_millis(200));
    }
}

/// Watches the named object until `cond` holds (kube-runtime `await_condition`), for at most
/// `deadline`. Returns the object as it was when the condition held (`None` if it was deleted).
pub async fn wait_for_object<K>(
    api: &Api<K>,
    name: &str,
    deadline: Duration,
    cond: impl Condition<K>,
) -> Result<Option<K>, WaitError>
where
    K: Clone + Debug + Send + DeserializeOwned + Resource + 'static,
    K::DynamicType: Default,
{
    let what = format!("{} {name:?}", K::kind(&Default::default()));
    match tokio::time::timeout(
        deadline,
        kube::runtime::wait::await_condition(api.clone(), name, cond),
    )
    .await
    {
        Ok(Ok(obj)) => Ok(obj),
        Ok(Err(source)) => Err(WaitError::Watch { what, source }),
        Err(_) => Err(WaitError::Timeout(WaitTimeout {
            what,
            waited: deadline,
        })),
    }
}
