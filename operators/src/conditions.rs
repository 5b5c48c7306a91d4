//! The one condition helper for every status this project writes: CSPC and CSPI
//! (`PoolCondition`), CVC (`CStorVolumeConfigCondition`) and CV (`CStorVolumeCondition`).
//!
//! Kubernetes' rules, whatever the type: one condition per `type`; setting a condition that
//! already says the same (status, reason, message) changes nothing (so a resync writes
//! nothing); `lastTransitionTime` moves only when the status changes (or the condition
//! appears); the update/probe time, where the type has one, moves on every change.

use cstor_api::cstor::{CStorVolumeCondition, CStorVolumeConfigCondition, PoolCondition};
use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};

/// What the helper needs of a condition type.
pub trait Condition {
    fn condition_type(&self) -> &str;
    /// Same status (types without a status field are "true" while present).
    fn same_status(&self, other: &Self) -> bool;
    /// Same status, reason and message: setting `other` over `self` would change nothing.
    fn same_state(&self, other: &Self) -> bool;
    fn transition_time(&self) -> Option<Time>;
    fn set_transition_time(&mut self, at: Option<Time>);
    /// Stamps the update or probe time, for the types that carry one.
    fn touch(&mut self, at: &Time);
}

/// The condition of type `type_`, if present.
pub fn find<'a, C: Condition>(list: Option<&'a Vec<C>>, type_: &str) -> Option<&'a C> {
    list.into_iter()
        .flatten()
        .find(|c| c.condition_type() == type_)
}

/// Sets `new` (replacing the condition of its type). Returns whether anything changed.
pub fn set<C: Condition>(list: &mut Option<Vec<C>>, mut new: C) -> bool {
    let now = Time(Timestamp::now());
    let list = list.get_or_insert_with(Vec::new);
    new.touch(&now);
    match list
        .iter_mut()
        .find(|c| c.condition_type() == new.condition_type())
    {
        Some(old) if old.same_state(&new) => false,
        Some(old) => {
            let at = if old.same_status(&new) {
                old.transition_time()
            } else {
                Some(now)
            };
            new.set_transition_time(at);
            *old = new;
            true
        }
        None => {
            new.set_transition_time(Some(now));
            list.push(new);
            true
        }
    }
}

/// Removes the condition of type `type_` (an empty list becomes absent). Returns whether
/// anything changed.
pub fn remove<C: Condition>(list: &mut Option<Vec<C>>, type_: &str) -> bool {
    let Some(items) = list.as_mut() else {
        return false;
    };
    let before = items.len();
    items.retain(|c| c.condition_type() != type_);
    let changed = items.len() != before;
    if items.is_empty() {
        *list = None;
    }
    changed
}

impl Condition for PoolCondition {
    fn condition_type(&self) -> &str {
        &self.type_
    }
    fn same_status(&self, other: &Self) -> bool {
        self.status == other.status
    }
    fn same_state(&self, other: &Self) -> bool {
        self.status == other.status && self.reason == other.reason && self.message == other.message
    }
    fn transition_time(&self) -> Option<Time> {
        self.last_transition_time.clone()
    }
    fn set_transition_time(&mut self, at: Option<Time>) {
        self.last_transition_time = at;
    }
    fn touch(&mut self, at: &Time) {
        self.last_update_time = Some(at.clone());
    }
}

impl Condition for CStorVolumeConfigCondition {
    fn condition_type(&self) -> &str {
        &self.type_
    }
    fn same_status(&self, _: &Self) -> bool {
        true
    }
    fn same_state(&self, other: &Self) -> bool {
        self.reason == other.reason && self.message == other.message
    }
    fn transition_time(&self) -> Option<Time> {
        self.last_transition_time.clone()
    }
    fn set_transition_time(&mut self, at: Option<Time>) {
        self.last_transition_time = at;
    }
    fn touch(&mut self, _: &Time) {}
}

impl Condition for CStorVolumeCondition {
    fn condition_type(&self) -> &str {
        &self.type_
    }
    fn same_status(&self, other: &Self) -> bool {
        self.status == other.status
    }
    fn same_state(&self, other: &Self) -> bool {
        self.status == other.status && self.reason == other.reason && self.message == other.message
    }
    fn transition_time(&self) -> Option<Time> {
        self.last_transition_time.clone()
    }
    fn set_transition_time(&mut self, at: Option<Time>) {
        self.last_transition_time = at;
    }
    fn touch(&mut self, at: &Time) {
        self.last_probe_time = Some(at.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cstor_api::cstor::ConditionStatus;

    fn pool(status: ConditionStatus, reason: &str) -> PoolCondition {
        PoolCondition {
            type_: "PoolExpansion".into(),
            status,
            reason: Some(reason.into()),
            message: Some("m".into()),
            ..Default::default()
        }
    }

    fn at(s: &str) -> Option<Time> {
        Some(Time(s.parse().unwrap()))
    }

    #[test]
    fn same_condition_changes_nothing() {
        let mut list = None;
        assert!(set(&mut list, pool(ConditionStatus::True, "A")));
        let before = list.clone();
        assert!(!set(&mut list, pool(ConditionStatus::True, "A")));
        assert_eq!(list, before);
    }

    #[test]
    fn transition_time_moves_only_with_the_status() {
        let mut old = pool(ConditionStatus::True, "A");
        old.last_transition_time = at("2020-01-01T00:00:00Z");
        let mut list = Some(vec![old]);
        assert!(set(&mut list, pool(ConditionStatus::True, "B")));
        let c = find(list.as_ref(), "PoolExpansion").unwrap();
        assert_eq!(c.reason.as_deref(), Some("B"));
        assert_eq!(c.last_transition_time, at("2020-01-01T00:00:00Z"));
        assert!(c.last_update_time.is_some());
        assert!(set(&mut list, pool(ConditionStatus::False, "B")));
        let c = find(list.as_ref(), "PoolExpansion").unwrap();
        assert_ne!(c.last_transition_time, at("2020-01-01T00:00:00Z"));
        assert_eq!(list.as_ref().unwrap().len(), 1);
    }

    #[test]
    fn removing_the_last_condition_leaves_none() {
        let mut list = None;
        set(
            &mut list,
            CStorVolumeCondition {
                type_: "Resizing".into(),
                status: "InProgress".into(),
                ..Default::default()
            },
        );
        assert!(
            find(list.as_ref(), "Resizing")
                .unwrap()
                .last_probe_time
                .is_some()
        );
        assert!(!remove(&mut list, "Other"));
        assert!(remove(&mut list, "Resizing"));
        assert_eq!(list, None);
    }

    #[test]
    fn volume_config_conditions_without_status() {
        let c = |reason: &str| CStorVolumeConfigCondition {
            type_: "ProvisionFailed".into(),
            reason: reason.into(),
            message: "m".into(),
            ..Default::default()
        };
        let mut list = None;
        assert!(set(&mut list, c("A")));
        let first = find(list.as_ref(), "ProvisionFailed")
            .unwrap()
            .last_transition_time
            .clone();
        assert!(first.is_some());
        assert!(!set(&mut list, c("A")));
        assert!(set(&mut list, c("B")));
        assert_eq!(
            find(list.as_ref(), "ProvisionFailed")
                .unwrap()
                .last_transition_time,
            first
        );
    }
}
