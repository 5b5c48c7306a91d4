//! The object store: every object as a `serde_json::Value`, one global resourceVersion counter, a
//! bounded event history for watches, and the create/update/delete rules of the real API
//! (generation, finalizers, status subresource, namespaces, CRD registration).

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    sync::Arc,
};

use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use crate::{
    resources::{Registry, ResourceDef, Scope},
    status::ApiError,
};

pub(crate) const CRD_GROUP: &str = "apiextensions.k8s.io";
pub(crate) const CRD_PLURAL: &str = "customresourcedefinitions";
pub(crate) const CRD_CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";
pub(crate) const FOREGROUND_FINALIZER: &str = "foregroundDeletion";

/// Where an object is stored: every served version of a group/plural shares one storage.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Key {
    pub group: String,
    pub plural: String,
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    pub name: String,
}

impl Key {
    pub(crate) fn new(def: &ResourceDef, namespace: &str, name: &str) -> Self {
        Key {
            group: def.group.clone(),
            plural: def.plural.clone(),
            namespace: if def.namespaced() {
                namespace.to_string()
            } else {
                String::new()
            },
            name: name.to_string(),
        }
    }

    fn is(&self, group: &str, plural: &str) -> bool {
        self.group == group && self.plural == plural
    }

    pub(crate) fn is_namespace(&self) -> bool {
        self.is("", "namespaces")
    }

    pub(crate) fn is_crd(&self) -> bool {
        self.is(CRD_GROUP, CRD_PLURAL)
    }
}

/// Watch event types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, kept in the history and broadcast to open watches.
#[derive(Debug)]
pub(crate) struct Record {
    pub rv: u64,
    pub key: Key,
    pub ty: EventType,
    pub object: Value,
    /// The object before a MODIFIED change (to turn it into ADDED/DELETED for selector watches).
    pub old: Option<Value>,
}

/// What open watches receive.
#[derive(Clone, Debug)]
pub(crate) enum Signal {
    Event(Arc<Record>),
    /// Send a BOOKMARK now, with this resourceVersion.
    Bookmark(u64),
    /// End every open watch stream (as an API server restart does).
    Close,
}

/// How dependents are treated when their owner is deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Propagation {
    Background,
    Foreground,
    Orphan,
}

/// Which endpoint an update came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Main,
    Status,
}

/// Conditions of a DELETE.
#[derive(Clone, Debug, Default)]
pub(crate) struct Preconditions {
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}

pub(crate) struct State {
    pub registry: Registry,
    pub objects: BTreeMap<Key, Value>,
    pub rv: u64,
    pub history: VecDeque<Arc<Record>>,
    pub history_limit: usize,
    /// Watching from a resourceVersion below this answers 410 Expired.
    pub compacted: u64,
    pub tx: broadcast::Sender<Signal>,
    pub gc_enabled: bool,
}

pub(crate) fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

pub(crate) fn random_suffix(len: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    bytes
        .iter()
        .take(len)
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

pub(crate) fn meta(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata").and_then(Value::as_object)
}

pub(crate) fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"]
        .as_object_mut()
        .expect("metadata was just made an object")
}

pub(crate) fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    meta(obj)
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

pub(crate) fn finalizers(obj: &Value) -> Vec<String> {
    meta(obj)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn set_finalizers(obj: &mut Value, fins: &[String]) {
    let m = meta_mut(obj);
    if fins.is_empty() {
        m.remove("finalizers");
    } else {
        m.insert("finalizers".into(), json!(fins));
    }
}

pub(crate) fn being_deleted(obj: &Value) -> bool {
    meta_str(obj, "deletionTimestamp").is_some()
}

/// The uids named in `metadata.ownerReferences`, with their `blockOwnerDeletion`.
pub(crate) fn owner_uids(obj: &Value) -> Vec<(String, bool)> {
    meta(obj)
        .and_then(|m| m.get("ownerReferences"))
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .filter_map(|r| {
                    let uid = r.get("uid")?.as_str()?.to_string();
                    let block = r
                        .get("blockOwnerDeletion")
                        .and_then(Value::as_bool)
                        .unwrap_or(false);
                    Some((uid, block))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// `true` for a lowercase RFC 1123 subdomain (the rule for most object names): at most 253
/// characters matching the regex of [`SUBDOMAIN_MSG`]. As in the real API, the parts between
/// dots are not limited to 63 characters (a 66-character CStorVolumeReplica name is valid).
pub fn is_dns1123_subdomain(s: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !p.starts_with('-')
            && !p.ends_with('-')
    };
    !s.is_empty() && s.len() <= 253 && s.split('.').all(part)
}

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or \
     '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is \
     '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and \
     must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is \
     '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

fn label_value_ok(v: &str) -> bool {
    v.is_empty()
        || (v.len() <= 63
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && v.as_bytes()[0].is_ascii_alphanumeric()
            && v.as_bytes()[v.len() - 1].is_ascii_alphanumeric())
}

/// Checks what the real API validates for every kind: the name and label values.
fn validate_meta(def: &ResourceDef, obj: &Value) -> Result<(), ApiError> {
    let name = meta_str(obj, "name").unwrap_or_default();
    let label_rule = def.group.is_empty() && def.plural == "namespaces";
    let ok = if label_rule {
        is_dns1123_label(name)
    } else {
        is_dns1123_subdomain(name)
    };
    if !ok {
        let msg = if label_rule { LABEL_MSG } else { SUBDOMAIN_MSG };
        return Err(ApiError::invalid_field(
            def,
            name,
            "metadata.name",
            "FieldValueInvalid",
            format!("Invalid value: \"{name}\": {msg}"),
        ));
    }
    if let Some(labels) = meta(obj).and_then(|m| m.get("labels")) {
        let Some(labels) = labels.as_object() else {
            return Err(ApiError::bad_request(
                "metadata.labels must be a map of string keys to string values",
            ));
        };
        for (k, v) in labels {
            let Some(v) = v.as_str() else {
                return Err(ApiError::bad_request(format!(
                    "metadata.labels[{k}] must be a string"
                )));
            };
            if !label_value_ok(v) {
                return Err(ApiError::invalid_field(
                    def,
                    name,
                    "metadata.labels",
                    "FieldValueInvalid",
                    format!(
                        "Invalid value: \"{v}\": a valid label must be an empty string or consist of alphanumeric \
                         characters, '-', '_' or '.', and must start and end with an alphanumeric character"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The part of an object that drives `metadata.generation`.
fn generation_part(obj: &Value, ignore_status: bool) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        m.remove("apiVersion");
        m.remove("kind");
        if ignore_status {
            m.remove("status");
        }
    }
    v
}

/// Metadata fields the server owns: a client can't change them through update/patch.
const SERVER_OWNED_META: &[&str] = &[
    "uid",
    "creationTimestamp",
    "generation",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
];

impl State {
    pub(crate) fn new(history_limit: usize, gc_enabled: bool) -> Self {
        let (tx, _) = broadcast::channel(history_limit.max(16) * 4);
        let mut st = State {
            registry: Registry::with_builtins(),
            objects: BTreeMap::new(),
            rv: 0,
            history: VecDeque::new(),
            history_limit: history_limit.max(1),
            compacted: 0,
            tx,
            gc_enabled,
        };
        let ns_def = st
            .registry
            .get("", "v1", "namespaces")
            .cloned()
            .expect("namespaces are built in");
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            st.create(&ns_def, None, json!({"metadata": {"name": ns}}))
                .expect("built-in namespaces are valid");
        }
        st
    }

    /// A throw-away copy for `dryRun=All`: changes and events never reach the real store.
    pub(crate) fn scratch(&self) -> State {
        let (tx, _) = broadcast::channel(1);
        State {
            registry: self.registry.clone(),
            objects: self.objects.clone(),
            rv: self.rv,
            history: VecDeque::new(),
            history_limit: self.history_limit,
            compacted: self.rv,
            tx,
            gc_enabled: self.gc_enabled,
        }
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    /// Records a change in the history and sends it to the open watches.
    fn emit(&mut self, ty: EventType, key: &Key, object: &Value, old: Option<Value>) {
        let rec = Arc::new(Record {
            rv: self.rv,
            key: key.clone(),
            ty,
            object: object.clone(),
            old,
        });
        self.history.push_back(rec.clone());
        while self.history.len() > self.history_limit {
            if let Some(dropped) = self.history.pop_front() {
                self.compacted = self.compacted.max(dropped.rv);
            }
        }
        // No receiver is not an error: nobody watches.
        let _ = self.tx.send(Signal::Event(rec));
    }

    /// Makes every resourceVersion handed out so far too old to watch from and ends open watches.
    pub(crate) fn expire_history(&mut self) {
        let rv = self.next_rv();
        self.compacted = rv;
        self.history.clear();
        let _ = self.tx.send(Signal::Close);
    }

    fn store_new(&mut self, key: Key, mut obj: Value) -> Value {
        let rv = self.next_rv();
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(rv.to_string()));
        self.emit(EventType::Added, &key, &obj, None);
        self.objects.insert(key, obj.clone());
        obj
    }

    pub(crate) fn store_update(&mut self, key: &Key, mut obj: Value, old: Value) -> Value {
        let rv = self.next_rv();
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(rv.to_string()));
        self.emit(EventType::Modified, key, &obj, Some(old));
        self.objects.insert(key.clone(), obj.clone());
        obj
    }

    /// Removes an object for good and emits DELETED.
    pub(crate) fn store_remove(&mut self, key: &Key) -> Option<Value> {
        let mut obj = self.objects.remove(key)?;
        let rv = self.next_rv();
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(rv.to_string()));
        self.emit(EventType::Deleted, key, &obj, None);
        if key.is_crd() {
            self.registry.remove_crd(&key.name);
        }
        Some(obj)
    }

    /// The object at `key`, served as the given resource version.
    pub(crate) fn get(&self, def: &ResourceDef, key: &Key) -> Result<Value, ApiError> {
        self.objects
            .get(key)
            .map(|o| as_version(def, o))
            .ok_or_else(|| ApiError::not_found(def, &key.name))
    }

    fn namespace_state(&self, ns: &str) -> Option<&Value> {
        self.objects.get(&Key {
            group: String::new(),
            plural: "namespaces".into(),
            namespace: String::new(),
            name: ns.into(),
        })
    }

    /// Creates an object (POST). `path_ns` is the namespace from the URL.
    pub(crate) fn create(
        &mut self,
        def: &ResourceDef,
        path_ns: Option<&str>,
        body: Value,
    ) -> Result<Value, ApiError> {
        let mut obj = check_body(def, body)?;
        let m = meta_mut(&mut obj);
        let body_ns = m
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let ns = if def.namespaced() {
            let ns = path_ns.unwrap_or_default().to_string();
            if !body_ns.is_empty() && body_ns != ns {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            m.insert("namespace".into(), json!(ns));
            ns
        } else {
            m.remove("namespace");
            String::new()
        };
        let mut name = m
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if name.is_empty() {
            let prefix = m
                .get("generateName")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if prefix.is_empty() {
                return Err(ApiError::invalid_field(
                    def,
                    "",
                    "metadata.name",
                    "FieldValueRequired",
                    "Required value: name or generateName is required",
                ));
            }
            name = format!("{prefix}{}", random_suffix(5));
            m.insert("name".into(), json!(name));
        }
        for field in SERVER_OWNED_META {
            m.remove(*field);
        }
        m.remove("resourceVersion");
        m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        m.insert("creationTimestamp".into(), json!(now()));
        m.insert("generation".into(), json!(1));
        validate_meta(def, &obj)?;
        if def.namespaced() {
            match self.namespace_state(&ns) {
                None => return Err(ApiError::not_found_resource("", "namespaces", &ns)),
                Some(n) if being_deleted(n) => {
                    return Err(ApiError::forbidden(
                        def,
                        &name,
                        &format!(
                            "unable to create new content in namespace {ns} because it is being terminated"
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        let key = Key::new(def, &ns, &name);
        if self.objects.contains_key(&key) {
            return Err(ApiError::already_exists(def, &name));
        }
        if def.reset_status_on_create
            && let Some(o) = obj.as_object_mut()
        {
            o.remove("status");
        }
        apply_create_defaults(def, &mut obj);
        if key.is_crd() {
            self.register_crd(def, &mut obj)?;
        }
        let stored = self.store_new(key, obj);
        Ok(as_version(def, &stored))
    }

    /// Replaces an object (PUT, and the last step of every PATCH). A non-empty
    /// `metadata.resourceVersion` in `body` must be the current one.
    pub(crate) fn update(
        &mut self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
        body: Value,
        endpoint: Endpoint,
    ) -> Result<Value, ApiError> {
        let key = Key::new(def, ns, name);
        let body = check_body(def, body)?;
        let body_name = meta_str(&body, "name").unwrap_or(name);
        if body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        if def.namespaced()
            && let Some(body_ns) = meta_str(&body, "namespace")
            && body_ns != ns
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let Some(old) = self.objects.get(&key).cloned() else {
            return Err(ApiError::not_found(def, name));
        };
        let current_rv = meta_str(&old, "resourceVersion")
            .unwrap_or_default()
            .to_string();
        if let Some(rv) = meta_str(&body, "resourceVersion")
            && rv != current_rv
        {
            if rv.parse::<u64>().is_err() {
                return Err(ApiError::bad_request(format!(
                    "metadata.resourceVersion {rv:?} is not a valid resource version: send the value read from the server"
                )));
            }
            return Err(ApiError::stale(def, name));
        }

        let mut new = match endpoint {
            Endpoint::Status => {
                let mut n = old.clone();
                match body.get("status") {
                    Some(s) => n["status"] = s.clone(),
                    None => {
                        if let Some(o) = n.as_object_mut() {
                            o.remove("status");
                        }
                    }
                }
                n
            }
            Endpoint::Main => {
                let mut n = body;
                if def.status_subresource {
                    let o = n.as_object_mut().expect("checked to be an object");
                    match old.get("status") {
                        Some(s) => {
                            o.insert("status".into(), s.clone());
                        }
                        None => {
                            o.remove("status");
                        }
                    }
                }
                let old_meta = meta(&old).cloned().unwrap_or_default();
                let m = meta_mut(&mut n);
                if !m.contains_key("managedFields")
                    && let Some(mf) = old_meta.get("managedFields")
                {
                    m.insert("managedFields".into(), mf.clone());
                }
                for field in SERVER_OWNED_META.iter().chain(["name", "namespace"].iter()) {
                    match old_meta.get(*field) {
                        Some(v) => {
                            m.insert(field.to_string(), v.clone());
                        }
                        None => {
                            m.remove(*field);
                        }
                    }
                }
                n
            }
        };
        let o = new.as_object_mut().expect("objects are maps");
        o.insert("apiVersion".into(), json!(old["apiVersion"]));
        o.insert("kind".into(), json!(def.kind));
        meta_mut(&mut new).insert("resourceVersion".into(), json!(current_rv));
        if new == old {
            return Ok(as_version(def, &old));
        }
        validate_meta(def, &new)?;

        let old_fins: BTreeSet<String> = finalizers(&old).into_iter().collect();
        let new_fins = finalizers(&new);
        if being_deleted(&old) {
            let added: Vec<&String> = new_fins.iter().filter(|f| !old_fins.contains(*f)).collect();
            if !added.is_empty() {
                return Err(ApiError::invalid_field(
                    def,
                    name,
                    "metadata.finalizers",
                    "FieldValueForbidden",
                    format!(
                        "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"
                    ),
                ));
            }
        }
        if generation_part(&old, def.status_subresource)
            != generation_part(&new, def.status_subresource)
        {
            let g = meta(&old)
                .and_then(|m| m.get("generation"))
                .and_then(Value::as_i64)
                .unwrap_or(0);
            meta_mut(&mut new).insert("generation".into(), json!(g + 1));
        }
        if key.is_crd() {
            self.register_crd(def, &mut new)?;
        }
        let stored = self.store_update(&key, new, old);
        if being_deleted(&stored) && finalizers(&stored).is_empty() && !key.is_namespace() {
            let removed = self.store_remove(&key).expect("object was just stored");
            self.collect_garbage();
            return Ok(as_version(def, &removed));
        }
        self.collect_garbage();
        Ok(as_version(def, &stored))
    }

    /// Deletes an object (DELETE).
    pub(crate) fn delete(
        &mut self,
        def: &ResourceDef,
        key: &Key,
        propagation: Propagation,
        pre: &Preconditions,
    ) -> Result<Value, ApiError> {
        let out = self.delete_without_gc(def, key, propagation, pre)?;
        self.collect_garbage();
        Ok(out)
    }

    /// [`State::delete`] without the garbage collection that follows a write: a collection
    /// deletes every object first and collects once.
    pub(crate) fn delete_without_gc(
        &mut self,
        def: &ResourceDef,
        key: &Key,
        propagation: Propagation,
        pre: &Preconditions,
    ) -> Result<Value, ApiError> {
        let Some(obj) = self.objects.get(key) else {
            return Err(ApiError::not_found(def, &key.name));
        };
        if let Some(uid) = &pre.uid {
            let actual = meta_str(obj, "uid").unwrap_or_default();
            if uid != actual {
                return Err(ApiError::conflict(
                    def,
                    &key.name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"
                    ),
                ));
            }
        }
        if let Some(rv) = &pre.resource_version {
            let actual = meta_str(obj, "resourceVersion").unwrap_or_default();
            if rv != actual {
                return Err(ApiError::conflict(
                    def,
                    &key.name,
                    &format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {actual}"
                    ),
                ));
            }
        }
        let out = self.delete_key(key, propagation).expect("object exists");
        Ok(as_version(def, &out))
    }

    /// Deletes without preconditions; returns the object as it is after the call (marked for
    /// deletion, or removed).
    pub(crate) fn delete_key(&mut self, key: &Key, propagation: Propagation) -> Option<Value> {
        let old = self.objects.get(key)?.clone();
        let uid = meta_str(&old, "uid").unwrap_or_default().to_string();
        if propagation == Propagation::Orphan {
            self.orphan_dependents(&uid);
        }
        let mut new = old.clone();
        let mut fins = finalizers(&new);
        if propagation == Propagation::Foreground && !fins.iter().any(|f| f == FOREGROUND_FINALIZER)
        {
            fins.push(FOREGROUND_FINALIZER.to_string());
        }
        if key.is_crd() && !being_deleted(&old) && !fins.iter().any(|f| f == CRD_CLEANUP_FINALIZER)
        {
            fins.push(CRD_CLEANUP_FINALIZER.to_string());
        }
        set_finalizers(&mut new, &fins);
        if fins.is_empty() && !key.is_namespace() {
            return self.store_remove(key);
        }
        if !being_deleted(&new) {
            let m = meta_mut(&mut new);
            m.insert("deletionTimestamp".into(), json!(now()));
            m.insert("deletionGracePeriodSeconds".into(), json!(0));
            let g = m.get("generation").and_then(Value::as_i64).unwrap_or(0);
            if g > 0 {
                m.insert("generation".into(), json!(g + 1));
            }
            if key.is_namespace() {
                new["status"]["phase"] = json!("Terminating");
            }
        }
        if new == old {
            return Some(old);
        }
        Some(self.store_update(key, new, old))
    }

    /// Removes owner references to `uid` from every object (Orphan propagation).
    fn orphan_dependents(&mut self, uid: &str) {
        let dependents: Vec<Key> = self
            .objects
            .iter()
            .filter(|(_, o)| owner_uids(o).iter().any(|(u, _)| u == uid))
            .map(|(k, _)| k.clone())
            .collect();
        for key in dependents {
            let old = self.objects[&key].clone();
            let mut new = old.clone();
            let m = meta_mut(&mut new);
            if let Some(refs) = m.get_mut("ownerReferences").and_then(Value::as_array_mut) {
                refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(uid));
                if refs.is_empty() {
                    m.remove("ownerReferences");
                }
            }
            self.store_update(&key, new, old);
        }
    }

    /// Validates a CRD, sets its status (Established at once) and serves its resources.
    fn register_crd(&mut self, def: &ResourceDef, crd: &mut Value) -> Result<(), ApiError> {
        let name = meta_str(crd, "name").unwrap_or_default().to_string();
        let invalid = |field: &str, reason: &str, msg: String| {
            ApiError::invalid_field(def, &name, field, reason, msg)
        };
        let spec = crd.get("spec").cloned().unwrap_or(Value::Null);
        let s = |p: &str| {
            spec.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let group = s("/group");
        let plural = s("/names/plural");
        let kind = s("/names/kind");
        if group.is_empty() {
            return Err(invalid(
                "spec.group",
                "FieldValueRequired",
                "Required value".into(),
            ));
        }
        if plural.is_empty() {
            return Err(invalid(
                "spec.names.plural",
                "FieldValueRequired",
                "Required value".into(),
            ));
        }
        if kind.is_empty() {
            return Err(invalid(
                "spec.names.kind",
                "FieldValueRequired",
                "Required value".into(),
            ));
        }
        if name != format!("{plural}.{group}") {
            return Err(invalid(
                "metadata.name",
                "FieldValueInvalid",
                format!("Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"),
            ));
        }
        let scope = match s("/scope").as_str() {
            "Namespaced" => Scope::Namespaced,
            "Cluster" => Scope::Cluster,
            other => {
                return Err(invalid(
                    "spec.scope",
                    "FieldValueNotSupported",
                    format!(
                        "Unsupported value: \"{other}\": supported values: \"Cluster\", \"Namespaced\""
                    ),
                ));
            }
        };
        let versions = spec
            .get("versions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if versions.is_empty() {
            return Err(invalid(
                "spec.versions",
                "FieldValueRequired",
                "Required value: must have at least one version".into(),
            ));
        }
        let storage: Vec<String> = versions
            .iter()
            .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
            .filter_map(|v| v.get("name").and_then(Value::as_str).map(str::to_string))
            .collect();
        if storage.len() != 1 {
            return Err(invalid(
                "spec.versions",
                "FieldValueInvalid",
                format!(
                    "Invalid value: {storage:?}: must have exactly one version marked as storage version"
                ),
            ));
        }
        let strs = |p: &str| -> Vec<String> {
            spec.pointer(p)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        let singular = Some(s("/names/singular"))
            .filter(|x| !x.is_empty())
            .unwrap_or_else(|| kind.to_ascii_lowercase());
        let list_kind = Some(s("/names/listKind"))
            .filter(|x| !x.is_empty())
            .unwrap_or_else(|| format!("{kind}List"));
        self.registry.remove_crd(&name);
        for v in &versions {
            let Some(vname) = v.get("name").and_then(Value::as_str) else {
                return Err(invalid(
                    "spec.versions[].name",
                    "FieldValueRequired",
                    "Required value".into(),
                ));
            };
            if v.get("served").and_then(Value::as_bool) == Some(false) {
                continue;
            }
            let mut rd = ResourceDef::new(&group, vname, &kind, &plural, scope)
                .custom()
                .singular(&singular);
            rd.short_names = strs("/names/shortNames");
            rd.categories = strs("/names/categories");
            if v.pointer("/subresources/status").is_some() {
                rd.status_subresource = true;
                rd.reset_status_on_create = true;
            }
            rd.crd_name = Some(name.clone());
            self.registry.insert(rd);
        }
        let old_conditions = crd.pointer("/status/conditions").cloned();
        let ts = now();
        let transition = |ty: &str| -> String {
            old_conditions
                .as_ref()
                .and_then(Value::as_array)
                .and_then(|cs| cs.iter().find(|c| c["type"] == ty))
                .and_then(|c| c["lastTransitionTime"].as_str())
                .map(str::to_string)
                .unwrap_or_else(|| ts.clone())
        };
        let mut stored_versions: Vec<String> = crd
            .pointer("/status/storedVersions")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        if !stored_versions.contains(&storage[0]) {
            stored_versions.push(storage[0].clone());
        }
        crd["status"] = json!({
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found",
                 "lastTransitionTime": transition("NamesAccepted")},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                 "message": "the initial names have been accepted", "lastTransitionTime": transition("Established")},
            ],
            "acceptedNames": {
                "plural": plural, "singular": singular, "kind": kind, "listKind": list_kind,
                "shortNames": strs("/names/shortNames"), "categories": strs("/names/categories"),
            },
            "storedVersions": stored_versions,
        });
        Ok(())
    }
}

/// Checks that a body is an object of the right kind and fills in apiVersion/kind.
fn check_body(def: &ResourceDef, body: Value) -> Result<Value, ApiError> {
    let Value::Object(mut o) = body else {
        return Err(ApiError::bad_request(format!(
            "the object provided is unrecognized (must be of type {}): expected a JSON object",
            def.kind
        )));
    };
    if let Some(kind) = o.get("kind").and_then(Value::as_str)
        && !kind.is_empty()
        && kind != def.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({}): send a {} to this URL",
            def.kind, def.kind
        )));
    }
    if let Some(av) = o.get("apiVersion").and_then(Value::as_str)
        && !av.is_empty()
    {
        let group = av.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
        if group != def.group {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({})",
                def.api_version()
            )));
        }
    }
    if o.get("metadata")
        .is_some_and(|m| !m.is_object() && !m.is_null())
    {
        return Err(ApiError::bad_request("metadata must be an object"));
    }
    o.insert("apiVersion".into(), json!(def.api_version()));
    o.insert("kind".into(), json!(def.kind));
    Ok(Value::Object(o))
}

/// The object as served through `def`'s version (objects of all versions share one storage; no
/// conversion, as with a CRD's `conversion: None` strategy).
pub(crate) fn as_version(def: &ResourceDef, obj: &Value) -> Value {
    let mut o = obj.clone();
    o["apiVersion"] = json!(def.api_version());
    o
}

/// Defaults the real API sets on create for the kinds the operators use.
fn apply_create_defaults(def: &ResourceDef, obj: &mut Value) {
    if !def.group.is_empty() {
        return;
    }
    match def.plural.as_str() {
        "namespaces" => {
            obj["spec"]["finalizers"] = json!(["kubernetes"]);
            obj["status"] = json!({"phase": "Active"});
        }
        "pods" | "persistentvolumeclaims" | "persistentvolumes" => {
            obj["status"]["phase"] = json!("Pending");
        }
        _ => {}
    }
}
