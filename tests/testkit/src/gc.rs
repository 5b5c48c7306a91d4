//! Garbage collection and the controllers that finish deletions, run synchronously after every
//! write until nothing more changes:
//!
//! - terminating namespaces: their objects are deleted (finalizers respected); the namespace goes
//!   when it is empty;
//! - deleted CRDs: their custom resources are deleted; the CRD goes when none is left;
//! - foreground deletion: dependents of an owner carrying `foregroundDeletion` are deleted (in
//!   foreground too when their reference has `blockOwnerDeletion`); the finalizer is removed once
//!   no blocking dependent is left;
//! - owner references: an object none of whose owners (matched by uid, any kind, any scope) exists
//!   any more is deleted in the background; references to missing owners are dropped when another
//!   owner still exists.
//!
//! Unlike the real, asynchronous collector, everything happens before the write returns. Owner-
//! reference collection can be switched off with [`crate::ServerConfig::garbage_collection`].

use std::collections::HashMap;

use serde_json::Value;

use crate::store::{
    CRD_CLEANUP_FINALIZER, FOREGROUND_FINALIZER, Key, Propagation, State, being_deleted,
    finalizers, meta_mut, meta_str, owner_uids, set_finalizers,
};

/// Upper bound on GC rounds after one write (each round makes progress or stops).
const MAX_ROUNDS: usize = 10_000;

impl State {
    /// Runs every deletion-finishing rule until nothing changes.
    pub(crate) fn collect_garbage(&mut self) {
        for _ in 0..MAX_ROUNDS {
            let mut changed = self.finish_namespaces();
            changed |= self.finish_crds();
            if self.gc_enabled {
                changed |= self.foreground_owners();
                changed |= self.dangling_dependents();
            }
            if !changed {
                return;
            }
        }
        tracing::warn!("garbage collection did not settle after {MAX_ROUNDS} rounds");
    }

    /// Removes `finalizer` from the object; removes the object when no finalizer is left.
    fn drop_finalizer(&mut self, key: &Key, finalizer: &str) {
        let Some(old) = self.objects.get(key).cloned() else {
            return;
        };
        let fins: Vec<String> = finalizers(&old)
            .into_iter()
            .filter(|f| f != finalizer)
            .collect();
        if fins.is_empty() && !key.is_namespace() {
            self.store_remove(key);
        } else {
            let mut new = old.clone();
            set_finalizers(&mut new, &fins);
            self.replace(key, new, old);
        }
    }

    fn replace(&mut self, key: &Key, new: Value, old: Value) {
        if new != old {
            self.store_update(key, new, old);
        }
    }

    fn finish_namespaces(&mut self) -> bool {
        let terminating: Vec<Key> = self
            .objects
            .iter()
            .filter(|(k, o)| k.is_namespace() && being_deleted(o))
            .map(|(k, _)| k.clone())
            .collect();
        let mut changed = false;
        for ns_key in terminating {
            let content: Vec<(Key, bool)> = self
                .objects
                .iter()
                .filter(|(k, _)| k.namespace == ns_key.name)
                .map(|(k, o)| (k.clone(), being_deleted(o)))
                .collect();
            if content.is_empty() {
                if finalizers(&self.objects[&ns_key]).is_empty() {
                    self.store_remove(&ns_key);
                    changed = true;
                }
                continue;
            }
            for (k, deleting) in content {
                if !deleting {
                    self.delete_key(&k, Propagation::Background);
                    changed = true;
                }
            }
        }
        changed
    }

    fn finish_crds(&mut self) -> bool {
        let deleting: Vec<(Key, String, String)> = self
            .objects
            .iter()
            .filter(|(k, o)| {
                k.is_crd()
                    && being_deleted(o)
                    && finalizers(o).iter().any(|f| f == CRD_CLEANUP_FINALIZER)
            })
            .map(|(k, o)| {
                let group = o
                    .pointer("/spec/group")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let plural = o
                    .pointer("/spec/names/plural")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                (k.clone(), group, plural)
            })
            .collect();
        let mut changed = false;
        for (crd_key, group, plural) in deleting {
            let instances: Vec<(Key, bool)> = self
                .objects
                .iter()
                .filter(|(k, _)| k.group == group && k.plural == plural)
                .map(|(k, o)| (k.clone(), being_deleted(o)))
                .collect();
            if instances.is_empty() {
                self.drop_finalizer(&crd_key, CRD_CLEANUP_FINALIZER);
                changed = true;
                continue;
            }
            for (k, deleting) in instances {
                if !deleting {
                    self.delete_key(&k, Propagation::Background);
                    changed = true;
                }
            }
        }
        changed
    }

    /// uid → (key, waiting for dependents in foreground).
    fn uid_index(&self) -> HashMap<String, (Key, bool)> {
        self.objects
            .iter()
            .filter_map(|(k, o)| {
                let uid = meta_str(o, "uid")?.to_string();
                let fg =
                    being_deleted(o) && finalizers(o).iter().any(|f| f == FOREGROUND_FINALIZER);
                Some((uid, (k.clone(), fg)))
            })
            .collect()
    }

    fn foreground_owners(&mut self) -> bool {
        let index = self.uid_index();
        let owners: Vec<(String, Key)> = index
            .iter()
            .filter(|(_, (_, fg))| *fg)
            .map(|(uid, (k, _))| (uid.clone(), k.clone()))
            .collect();
        let mut changed = false;
        for (owner_uid, owner_key) in owners {
            let dependents: Vec<(Key, bool, bool, bool)> = self
                .objects
                .iter()
                .filter_map(|(k, o)| {
                    let refs = owner_uids(o);
                    let (_, block) = refs.iter().find(|(u, _)| *u == owner_uid)?;
                    // Another owner that exists and is not itself going away keeps the dependent.
                    let solid = refs
                        .iter()
                        .any(|(u, _)| *u != owner_uid && index.get(u).is_some_and(|(_, fg)| !fg));
                    Some((k.clone(), *block, being_deleted(o), solid))
                })
                .collect();
            for (k, block, deleting, solid) in &dependents {
                if *deleting {
                    continue;
                }
                if *solid {
                    self.remove_owner_ref(k, &owner_uid);
                } else {
                    let policy = if *block {
                        Propagation::Foreground
                    } else {
                        Propagation::Background
                    };
                    self.delete_key(k, policy);
                }
                changed = true;
            }
            let blocking_left = self.objects.values().any(|o| {
                owner_uids(o)
                    .iter()
                    .any(|(u, block)| *u == owner_uid && *block)
            });
            if !blocking_left {
                self.drop_finalizer(&owner_key, FOREGROUND_FINALIZER);
                changed = true;
            }
        }
        changed
    }

    fn remove_owner_ref(&mut self, key: &Key, owner_uid: &str) {
        let Some(old) = self.objects.get(key).cloned() else {
            return;
        };
        let mut new = old.clone();
        let m = meta_mut(&mut new);
        if let Some(refs) = m.get_mut("ownerReferences").and_then(Value::as_array_mut) {
            refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(owner_uid));
            if refs.is_empty() {
                m.remove("ownerReferences");
            }
        }
        self.replace(key, new, old);
    }

    fn dangling_dependents(&mut self) -> bool {
        let index = self.uid_index();
        let mut to_delete = Vec::new();
        let mut to_trim: Vec<(Key, Vec<String>)> = Vec::new();
        for (k, o) in &self.objects {
            let refs = owner_uids(o);
            if refs.is_empty() || being_deleted(o) {
                continue;
            }
            let missing: Vec<String> = refs
                .iter()
                .filter(|(u, _)| !index.contains_key(u))
                .map(|(u, _)| u.clone())
                .collect();
            if missing.len() == refs.len() {
                to_delete.push(k.clone());
            } else if !missing.is_empty() {
                to_trim.push((k.clone(), missing));
            }
        }
        let changed = !to_delete.is_empty() || !to_trim.is_empty();
        for k in to_delete {
            self.delete_key(&k, Propagation::Background);
        }
        for (k, missing) in to_trim {
            for uid in missing {
                self.remove_owner_ref(&k, &uid);
            }
        }
        changed
    }
}
