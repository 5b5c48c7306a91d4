//! The one way every operator publishes Events: kube's [`Recorder`] (events.k8s.io/v1), which
//! folds repeats of the same reason and action on one object into a series with a count.
//! Publishing is best effort: a failure is logged and never fails the reconcile.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    Client, Resource, ResourceExt,
    runtime::events::{Event, EventType, Recorder, Reporter},
};

/// Event publisher of one component (`controller` is the reporting controller; the instance is
/// the pod, from `POD_NAME`).
#[derive(Clone)]
pub struct Events {
    recorder: Recorder,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").finish_non_exhaustive()
    }
}

impl Events {
    pub fn new(client: Client, controller: &str) -> Self {
        let reporter = Reporter {
            controller: controller.to_owned(),
            instance: std::env::var(cstor_api::constants::env::POD_NAME)
                .ok()
                .filter(|s| !s.is_empty()),
        };
        Self {
            recorder: Recorder::new(client, reporter),
        }
    }

    /// Publishes an Event about `obj`. Events with the same `reason` and `action` on one object
    /// become one series (its count grows, the first note stays), so steps of one operation
    /// that must stay visible separately use distinct actions.
    pub async fn publish<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: impl Into<String>,
    ) {
        let reference: ObjectReference = obj.object_ref(&());
        let ev = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note.into()),
            action: action.to_owned(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &reference).await {
            tracing::warn!(object = %obj.name_any(), reason, error = %e, "publishing event failed");
        }
    }
}
