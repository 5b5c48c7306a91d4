//! HTTP routing: parses `/api/...` and `/apis/...` paths into a resource, a namespace, a name and a
//! subresource, and dispatches on the method to list/watch/create/get/replace/patch/delete.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use axum::{
    body::Body,
    extract::{Query, Request, State as AxState},
    http::{HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};
use tokio_stream::wrappers::ReceiverStream;

use crate::{
    discovery,
    patch::{self, PatchKind},
    resources::ResourceDef,
    selectors::{FieldSelector, LabelSelector},
    server::ServerConfig,
    status::ApiError,
    store::{Endpoint, Key, Preconditions, Propagation, State, as_version},
    watch::{self, WatchFilter, WatchOptions},
};

/// Largest request body accepted.
const MAX_BODY: usize = 16 * 1024 * 1024;

pub(crate) struct Shared {
    pub state: Mutex<State>,
    pub config: ServerConfig,
    pub address: String,
    /// Every resource request served, for RBAC checks ([`ApiCall`]).
    pub calls: Mutex<Vec<ApiCall>>,
}

/// Header a test client sets to say which component it plays; recorded with each call.
pub const COMPONENT_HEADER: &str = "x-cstor-test-component";

/// One resource request as RBAC sees it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiCall {
    /// The [`COMPONENT_HEADER`] of the request, empty when absent.
    pub component: String,
    /// RBAC verb: get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: String,
    /// API group, empty for the core group.
    pub group: String,
    /// Plural resource name, with `/status` for the status subresource.
    pub resource: String,
    /// Whether the request named a namespace.
    pub namespaced: bool,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves a consistent map (every write is a single insert),
        // so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

type Q = HashMap<String, String>;

fn json_response(code: StatusCode, v: &Value) -> Response {
    let mut r = (code, serde_json::to_vec(v).expect("JSON values serialise")).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn error_response(e: &ApiError) -> Response {
    let code = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(code, &e.to_status())
}

/// Where a request goes.
struct Target {
    def: ResourceDef,
    namespace: Option<String>,
    name: Option<String>,
    status: bool,
    /// Answer `PartialObjectMetadata` (from the Accept header).
    metadata_only: bool,
}

enum Route {
    Document(Value),
    Resource(Box<Target>),
}

fn route(st: &State, address: &str, path: &str) -> Result<Route, ApiError> {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let reg = &st.registry;
    let doc = |v: Option<Value>| v.map(Route::Document).ok_or_else(ApiError::unknown_path);
    match segs.as_slice() {
        ["version"] => Ok(Route::Document(discovery::version())),
        ["api"] => Ok(Route::Document(discovery::core_versions(address))),
        ["api", v] => doc(discovery::resource_list(reg, "", v)),
        ["apis"] => Ok(Route::Document(discovery::group_list(reg))),
        ["apis", g] => doc(discovery::group(reg, g)),
        ["apis", g, v] => doc(discovery::resource_list(reg, g, v)),
        ["api", v, rest @ ..] => resource_route(st, "", v, rest),
        ["apis", g, v, rest @ ..] => resource_route(st, g, v, rest),
        _ => Err(ApiError::unknown_path()),
    }
}

fn resource_route(
    st: &State,
    group: &str,
    version: &str,
    rest: &[&str],
) -> Result<Route, ApiError> {
    let reg = &st.registry;
    let namespaced_path = rest.len() >= 3
        && rest[0] == "namespaces"
        && reg
            .get(group, version, rest[2])
            .is_some_and(ResourceDef::namespaced);
    let (namespace, rest) = if namespaced_path {
        (Some(rest[1].to_string()), &rest[2..])
    } else {
        (None, rest)
    };
    let Some(def) = reg.get(group, version, rest[0]).cloned() else {
        return Err(ApiError::unknown_path());
    };
    let name = rest.get(1).map(|s| s.to_string());
    let status = match rest.get(2) {
        None => false,
        Some(&"status") if def.status_subresource => true,
        Some(_) => return Err(ApiError::unknown_path()),
    };
    if rest.len() > 3 || (def.namespaced() && namespace.is_none() && name.is_some()) {
        return Err(ApiError::unknown_path());
    }
    Ok(Route::Resource(Box::new(Target {
        def,
        namespace,
        name,
        status,
        metadata_only: false,
    })))
}

/// The axum fallback handler: every request comes through here.
pub(crate) async fn handle(AxState(shared): AxState<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let query: Q = Query::<Q>::try_from_uri(&parts.uri)
        .map(|q| q.0)
        .unwrap_or_default();
    let path = parts.uri.path().to_string();
    if matches!(path.as_str(), "/healthz" | "/readyz" | "/livez") {
        return (StatusCode::OK, "ok").into_response();
    }
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => {
            return error_response(&ApiError::bad_request(format!(
                "could not read the request body: {e}"
            )));
        }
    };
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let routed = {
        let st = shared.lock();
        route(&st, &shared.address, &path)
    };
    let target = match routed {
        Ok(Route::Document(v)) => {
            return if parts.method == Method::GET {
                json_response(StatusCode::OK, &v)
            } else {
                error_response(&ApiError::method_not_allowed())
            };
        }
        Ok(Route::Resource(t)) => t,
        Err(e) => return error_response(&e),
    };
    // kube's `*_metadata` calls ask for PartialObjectMetadata through the Accept header.
    let metadata_only = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("as=PartialObjectMetadata"));
    let mut target = target;
    target.metadata_only = metadata_only;
    let verb = match (&parts.method, target.name.is_some()) {
        (&Method::GET, true) => "get",
        (&Method::GET, false) if is_true(&query, "watch") => "watch",
        (&Method::GET, false) => "list",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        _ => "",
    };
    shared
        .calls
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(ApiCall {
            component: parts
                .headers
                .get(COMPONENT_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string(),
            verb: verb.to_string(),
            group: target.def.group.clone(),
            resource: if target.status {
                format!("{}/status", target.def.plural)
            } else {
                target.def.plural.clone()
            },
            namespaced: target.namespace.is_some(),
        });
    let result = dispatch(
        &shared,
        &parts.method,
        &target,
        &query,
        &content_type,
        &bytes,
    );
    match result {
        Ok(Reply::Json(code, v)) if metadata_only => json_response(code, &to_partial(v)),
        Ok(Reply::Json(code, v)) => json_response(code, &v),
        Ok(Reply::Watch(w)) => start_watch(&shared, w.0, w.1),
        Err(e) => error_response(&e),
    }
}

enum Reply {
    Json(StatusCode, Value),
    Watch(Box<(WatchFilter, WatchOptions)>),
}

fn is_true(q: &Q, key: &str) -> bool {
    q.get(key)
        .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

fn dispatch(
    shared: &Shared,
    method: &Method,
    t: &Target,
    q: &Q,
    ct: &str,
    body: &[u8],
) -> Result<Reply, ApiError> {
    let ok = |v: Value| Ok(Reply::Json(StatusCode::OK, v));
    let dry_run = q.get("dryRun").is_some_and(|v| v == "All");
    let ns = t.namespace.clone().unwrap_or_default();
    let mut guard = shared.lock();
    let mut scratch;
    let st: &mut State = if dry_run {
        scratch = guard.scratch();
        &mut scratch
    } else {
        &mut guard
    };
    match (&t.name, method) {
        (None, &Method::GET) if is_true(q, "watch") => Ok(Reply::Watch(Box::new((
            WatchFilter {
                def: t.def.clone(),
                namespace: t.namespace.clone(),
                metadata_only: t.metadata_only,
                labels: LabelSelector::parse(
                    q.get("labelSelector").map(String::as_str).unwrap_or(""),
                )?,
                fields: FieldSelector::parse(
                    q.get("fieldSelector").map(String::as_str).unwrap_or(""),
                )?,
            },
            WatchOptions {
                resource_version: q.get("resourceVersion").cloned().unwrap_or_default(),
                bookmarks: is_true(q, "allowWatchBookmarks"),
                send_initial_events: is_true(q, "sendInitialEvents"),
                timeout: q
                    .get("timeoutSeconds")
                    .and_then(|s| s.parse().ok())
                    .map(Duration::from_secs),
                bookmark_interval: shared.config.bookmark_interval,
            },
        )))),
        (None, &Method::GET) => ok(list(st, &t.def, t.namespace.as_deref(), q)?),
        (None, &Method::POST) => {
            if t.def.namespaced() && t.namespace.is_none() {
                return Err(ApiError::method_not_allowed());
            }
            let obj = decode_body(&t.def, ct, body)?;
            let created = st.create(&t.def, t.namespace.as_deref(), obj)?;
            Ok(Reply::Json(StatusCode::CREATED, created))
        }
        (None, &Method::DELETE) => ok(delete_collection(
            st,
            &t.def,
            t.namespace.as_deref(),
            q,
            body,
        )?),
        (None, _) => Err(ApiError::method_not_allowed()),
        (Some(name), &Method::GET) => ok(st.get(&t.def, &Key::new(&t.def, &ns, name))?),
        (Some(name), &Method::PUT) => {
            let obj = decode_body(&t.def, ct, body)?;
            let endpoint = if t.status {
                Endpoint::Status
            } else {
                Endpoint::Main
            };
            ok(st.update(&t.def, &ns, name, obj, endpoint)?)
        }
        (Some(name), &Method::PATCH) => {
            let kind = patch::patch_kind(ct, q.get("fieldManager").map(String::as_str))?;
            let (code, v) = patch_object(st, t, &ns, name, &kind, body)?;
            Ok(Reply::Json(code, v))
        }
        (Some(name), &Method::DELETE) if !t.status => {
            let (propagation, pre) = delete_options(q, body)?;
            let key = Key::new(&t.def, &ns, name);
            let out = st.delete(&t.def, &key, propagation, &pre)?;
            let code = if st.objects.contains_key(&key) {
                StatusCode::ACCEPTED
            } else {
                StatusCode::OK
            };
            Ok(Reply::Json(code, out))
        }
        (Some(_), _) => Err(ApiError::method_not_allowed()),
    }
}

/// Turns an object or a list into its PartialObjectMetadata form.
fn to_partial(v: Value) -> Value {
    if let Some(items) = v.get("items").and_then(Value::as_array) {
        json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": v.get("metadata").cloned().unwrap_or_else(|| json!({})),
            "items": items.iter().map(watch::partial_metadata).collect::<Vec<_>>(),
        })
    } else {
        watch::partial_metadata(&v)
    }
}

fn decode_body(def: &ResourceDef, ct: &str, body: &[u8]) -> Result<Value, ApiError> {
    let parsed = if ct.contains("yaml") {
        serde_yaml::from_slice::<Value>(body).map_err(|e| e.to_string())
    } else {
        serde_json::from_slice::<Value>(body).map_err(|e| e.to_string())
    };
    parsed.map_err(|e| {
        ApiError::bad_request(format!(
            "the object provided is unrecognized (must be of type {}): couldn't decode the request body: {e}",
            def.kind
        ))
    })
}

fn patch_object(
    st: &mut State,
    t: &Target,
    ns: &str,
    name: &str,
    kind: &PatchKind,
    body: &[u8],
) -> Result<(StatusCode, Value), ApiError> {
    let key = Key::new(&t.def, ns, name);
    let endpoint = if t.status {
        Endpoint::Status
    } else {
        Endpoint::Main
    };
    let Some(current) = st.objects.get(&key).map(|o| as_version(&t.def, o)) else {
        if let PatchKind::Apply { manager } = kind
            && !t.status
        {
            let mut obj = patch::strip_apply_meta(patch::apply_body(&t.def, name, body)?);
            crate::store::meta_mut(&mut obj).insert("name".into(), json!(name));
            patch::record_apply_manager(&t.def, &mut obj, manager, false);
            let created = st.create(&t.def, t.namespace.as_deref(), obj)?;
            return Ok((StatusCode::CREATED, created));
        }
        return Err(ApiError::not_found(&t.def, name));
    };
    let mut patched = patch::apply_patch(&t.def, &current, kind, body)?;
    if let PatchKind::Apply { manager } = kind
        && patched != current
    {
        patch::record_apply_manager(&t.def, &mut patched, manager, t.status);
    }
    Ok((
        StatusCode::OK,
        st.update(&t.def, ns, name, patched, endpoint)?,
    ))
}

/// Propagation policy and preconditions from the query and the `DeleteOptions` body.
fn delete_options(q: &Q, body: &[u8]) -> Result<(Propagation, Preconditions), ApiError> {
    let opts: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("could not decode DeleteOptions: {e}")))?
    };
    let policy = opts
        .get("propagationPolicy")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| q.get("propagationPolicy").cloned());
    let orphan = opts.get("orphanDependents").and_then(Value::as_bool) == Some(true)
        || q.get("orphanDependents").is_some_and(|v| v == "true");
    let propagation = match policy.as_deref() {
        None | Some("") if orphan => Propagation::Orphan,
        None | Some("") | Some("Background") => Propagation::Background,
        Some("Foreground") => Propagation::Foreground,
        Some("Orphan") => Propagation::Orphan,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "propagationPolicy {other:?} is not supported: use Background, Foreground or Orphan"
            )));
        }
    };
    let s = |p: &str| opts.pointer(p).and_then(Value::as_str).map(str::to_string);
    let pre = Preconditions {
        uid: s("/preconditions/uid"),
        resource_version: s("/preconditions/resourceVersion"),
    };
    Ok((propagation, pre))
}

fn selectors(q: &Q) -> Result<(LabelSelector, FieldSelector), ApiError> {
    Ok((
        LabelSelector::parse(q.get("labelSelector").map(String::as_str).unwrap_or(""))?,
        FieldSelector::parse(q.get("fieldSelector").map(String::as_str).unwrap_or(""))?,
    ))
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

/// Lists a collection with selectors and `limit`/`continue` pagination. A `continue` token carries
/// the list's resourceVersion and the last key returned; later pages read the live store after
/// that key (not a snapshot) and answer 410 once the token's version has left the history.
fn list(st: &State, def: &ResourceDef, ns: Option<&str>, q: &Q) -> Result<Value, ApiError> {
    let (labels, fields) = selectors(q)?;
    let limit = match q.get("limit").map(|s| s.parse::<usize>()) {
        None => None,
        Some(Ok(0)) => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => {
            return Err(ApiError::bad_request(
                "limit must be a non-negative integer",
            ));
        }
    };
    let (list_rv, after) = match q.get("continue").filter(|c| !c.is_empty()) {
        None => (st.rv, None),
        Some(token) => {
            let bad = || {
                ApiError::bad_request(
                    "continue key is not valid: pass the token from the previous page",
                )
            };
            let decoded = unhex(token).ok_or_else(bad)?;
            let mut parts = decoded.splitn(3, '\n');
            let rv: u64 = parts.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
            let tns = parts.next().ok_or_else(bad)?.to_string();
            let tname = parts.next().ok_or_else(bad)?.to_string();
            if rv < st.compacted {
                return Err(ApiError::expired(
                    "The provided continue parameter is too old to display a consistent list result. You can start \
                     a new list without the continue parameter.",
                ));
            }
            (rv, Some((tns, tname)))
        }
    };
    let mut items = Vec::new();
    let mut next = None;
    let mut remaining = 0usize;
    for (k, o) in &st.objects {
        if k.group != def.group || k.plural != def.plural || ns.is_some_and(|n| n != k.namespace) {
            continue;
        }
        if let Some((tns, tname)) = &after
            && (&k.namespace, &k.name) <= (tns, tname)
        {
            continue;
        }
        if !(labels.matches(o) && fields.matches(o)) {
            continue;
        }
        if limit.is_some_and(|l| items.len() >= l) {
            remaining += 1;
            continue;
        }
        items.push(as_version(def, o));
        next = Some((k.namespace.clone(), k.name.clone()));
    }
    let mut metadata = json!({"resourceVersion": list_rv.to_string()});
    if remaining > 0
        && let Some((tns, tname)) = next
    {
        metadata["continue"] = json!(hex(&format!("{list_rv}\n{tns}\n{tname}")));
        metadata["remainingItemCount"] = json!(remaining);
    }
    Ok(
        json!({"kind": def.list_kind(), "apiVersion": def.api_version(), "metadata": metadata, "items": items}),
    )
}

fn delete_collection(
    st: &mut State,
    def: &ResourceDef,
    ns: Option<&str>,
    q: &Q,
    body: &[u8],
) -> Result<Value, ApiError> {
    let (labels, fields) = selectors(q)?;
    let (propagation, _) = delete_options(q, body)?;
    let keys: Vec<Key> = st
        .objects
        .iter()
        .filter(|(k, o)| {
            k.group == def.group
                && k.plural == def.plural
                && ns.is_none_or(|n| n == k.namespace)
                && labels.matches(o)
                && fields.matches(o)
        })
        .map(|(k, _)| k.clone())
        .collect();
    let mut items = Vec::new();
    for key in keys {
        if st.objects.contains_key(&key) {
            items.push(st.delete_without_gc(def, &key, propagation, &Preconditions::default())?);
        }
    }
    st.collect_garbage();
    Ok(json!({
        "kind": def.list_kind(),
        "apiVersion": def.api_version(),
        "metadata": {"resourceVersion": st.rv.to_string()},
        "items": items,
    }))
}

fn start_watch(shared: &Shared, filter: WatchFilter, opts: WatchOptions) -> Response {
    let started = {
        let st = shared.lock();
        watch::start(&st, &filter, &opts)
    };
    let started = match started {
        Ok(s) => s,
        Err(e) => return error_response(&e),
    };
    let body_rx = watch::stream(filter, opts, started);
    let mut r = Response::new(Body::from_stream(ReceiverStream::new(body_rx)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}
