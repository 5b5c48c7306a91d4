//! The one shutdown signal of every long-running binary: SIGTERM (what the kubelet sends when it
//! stops a Pod) or SIGINT (Ctrl-C), whichever comes first.

use std::future::Future;

/// Listens for SIGTERM and SIGINT from this call on; see [`cstor_api::process::shutdown_signal`].
pub use cstor_api::process::shutdown_signal as signal;

/// How long in-flight reconciles get to finish after the shutdown signal.
pub const GRACE: std::time::Duration = std::time::Duration::from_secs(20);

/// Drives `controller` — a kube Controller's run stream, built with
/// `graceful_shutdown_on(shutdown.clone())` — until it ends. After `shutdown` it gets [`GRACE`]
/// to finish what is in flight; none when its cache had not synced yet (`started` is false:
/// nothing ran, and kube's controller would wait for a sync that can no longer come).
pub async fn drive(
    controller: impl Future<Output = ()>,
    shutdown: futures::future::Shared<futures::future::BoxFuture<'static, ()>>,
    started: impl Fn() -> bool,
) {
    tokio::select! {
        () = controller => {}
        () = async {
            shutdown.await;
            if started() {
                tokio::time::sleep(GRACE).await;
                tracing::warn!("in-flight reconciles did not finish within {GRACE:?}; exiting");
            } else {
                tracing::info!("stopping before the first sync: nothing was in flight");
            }
        } => {}
    }
}

/// `shutdown` made shareable: one copy for the controller, one for [`drive`].
pub fn shared(
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> futures::future::Shared<futures::future::BoxFuture<'static, ()>> {
    use futures::FutureExt;
    shutdown.boxed().shared()
}
