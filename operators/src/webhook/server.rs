//! The HTTPS side: `AdmissionReview` (v1) dispatch to the rules and the `/validate` server.

use std::{future::Future, sync::Arc};

use axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode, header::CONTENT_TYPE},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use cstor_api::cstor::{CStorPoolCluster, CStorVolumeConfig};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
    service::TowerToHyperService,
};
use kube::core::{
    DynamicObject, Status,
    admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation},
};
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::{Denial, VALIDATE_PATH, WEBHOOK_CONFIG_NAME, cspc, cvc, lookup::ClusterLookup, pvc};

/// What the request handlers share.
#[derive(Clone)]
pub struct WebhookState {
    /// Cluster reads/writes of the rules.
    pub lookup: Arc<dyn ClusterLookup>,
    /// The OpenEBS namespace (`OPENEBS_NAMESPACE`).
    pub openebs_namespace: String,
    /// The ValidatingWebhookConfiguration to remove when the OpenEBS namespace is deleted.
    pub webhook_config_name: String,
}

impl WebhookState {
    /// State with the default webhook configuration name.
    pub fn new(lookup: Arc<dyn ClusterLookup>, openebs_namespace: impl Into<String>) -> Self {
        Self {
            lookup,
            openebs_namespace: openebs_namespace.into(),
            webhook_config_name: WEBHOOK_CONFIG_NAME.to_owned(),
        }
    }
}

fn decode<K: DeserializeOwned>(
    object: Option<&DynamicObject>,
    what: &str,
    fix: impl FnOnce(&mut serde_json::Value),
) -> Result<K, Denial> {
    let object = object.ok_or_else(|| {
        Denial::bad_request(format!("the admission request carries no {what} object"))
    })?;
    let mut value = serde_json::to_value(object)
        .map_err(|e| Denial::bad_request(format!("failed to decode {what}: {e}")))?;
    fix(&mut value);
    cstor_api::cstor::from_value(value)
        .map_err(|e| Denial::bad_request(format!("failed to decode {what}: {e}")))
}

/// Upstream reports a pool without `dataRaidGroupType` as a rule violation, not a decode
/// error: give such pools an empty type so the rule sees it.
fn default_raid_types(value: &mut serde_json::Value) {
    if let Some(pools) = value
        .pointer_mut("/spec/pools")
        .and_then(|p| p.as_array_mut())
    {
        for pool in pools {
            if let Some(config) = pool.get_mut("poolConfig").and_then(|c| c.as_object_mut()) {
                config
                    .entry("dataRaidGroupType")
                    .or_insert_with(|| serde_json::Value::String(String::new()));
            }
        }
    }
}

fn decode_cspc(
    object: Option<&DynamicObject>,
    request: &AdmissionRequest<DynamicObject>,
) -> Result<CStorPoolCluster, Denial> {
    let mut cspc: CStorPoolCluster = decode(object, "cspc", default_raid_types)?;
    if cspc.metadata.namespace.is_none() {
        cspc.metadata.namespace = request.namespace.clone();
    }
    Ok(cspc)
}

/// Applies the rule matching the request's resource and operation.
pub async fn admit(
    state: &WebhookState,
    request: &AdmissionRequest<DynamicObject>,
) -> Result<(), Denial> {
    let lookup = state.lookup.as_ref();
    let namespace = request.namespace.clone().unwrap_or_default();
    let resource = &request.resource;
    match (
        resource.group.as_str(),
        resource.resource.as_str(),
        &request.operation,
    ) {
        ("cstor.openebs.io", "cstorpoolclusters", Operation::Create) => {
            let new = decode_cspc(request.object.as_ref(), request)?;
            cspc::validate_cspc_create(&new, lookup).await
        }
        ("cstor.openebs.io", "cstorpoolclusters", Operation::Update) => {
            let new = decode_cspc(request.object.as_ref(), request)?;
            let old = decode_cspc(request.old_object.as_ref(), request)?;
            cspc::validate_cspc_update(&old, &new, lookup, !request.dry_run)
                .await
                .map(|_| ())
        }
        ("cstor.openebs.io", "cstorpoolclusters", Operation::Delete) => {
            cspc::validate_cspc_delete(&namespace, &request.name, lookup).await
        }
        ("cstor.openebs.io", "cstorvolumeconfigs", Operation::Update) => {
            let new: CStorVolumeConfig = decode(request.object.as_ref(), "cvc", |_| ())?;
            let old: CStorVolumeConfig = decode(request.old_object.as_ref(), "cvc", |_| ())?;
            cvc::validate_cvc_update(&old, &new)
        }
        ("", "persistentvolumeclaims", Operation::Delete) => {
            pvc::validate_pvc_delete(&namespace, &request.name, lookup).await
        }
        ("", "namespaces", Operation::Delete) => {
            if let Err(e) = pvc::handle_namespace_delete(
                &request.name,
                &state.openebs_namespace,
                &state.webhook_config_name,
                lookup,
            )
            .await
            {
                tracing::warn!(namespace = %request.name, error = %e, "could not remove the webhook configuration");
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Answers one `AdmissionReview`: the response carries the request's UID, and a denial's
/// `status` is `{status: Failure, code, reason, message}`.
pub async fn review(
    state: &WebhookState,
    review: AdmissionReview<DynamicObject>,
) -> AdmissionReview<DynamicObject> {
    let request: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(r) => r,
        Err(e) => return AdmissionResponse::invalid(e.to_string()).into_review(),
    };
    let mut response = AdmissionResponse::from(&request);
    if let Err(denial) = admit(state, &request).await {
        tracing::info!(
            resource = %request.resource.resource, name = %request.name,
            operation = ?request.operation, message = %denial.message, "denied"
        );
        response.allowed = false;
        response.result = Status::failure(&denial.message, &denial.reason).with_code(denial.code);
    }
    response.into_review()
}

async fn validate_handler(
    State(state): State<WebhookState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim() == "application/json")
        });
    if !json {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid Content-Type, expected `application/json`",
        )
            .into_response();
    }
    if body.is_empty() {
        return (StatusCode::BAD_REQUEST, "empty body").into_response();
    }
    match serde_json::from_slice::<AdmissionReview<DynamicObject>>(&body) {
        Ok(r) => Json(review(&state, r).await).into_response(),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            format!("could not decode the AdmissionReview body: {e}"),
        )
            .into_response(),
    }
}

/// `POST /validate` and `GET /healthz`.
pub fn router(state: WebhookState) -> Router {
    Router::new()
        .route(VALIDATE_PATH, post(validate_handler))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

/// Pause after a failed accept before the next one.
const ACCEPT_ERROR_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

/// Connections served at once; the next accept waits for one to end (the API server keeps a
/// few connections open to a webhook, far fewer than this).
pub const MAX_CONNECTIONS: usize = 256;

/// Deadline of a TLS handshake, and of reading a request's headers.
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves `app` over TLS on `listener` until `shutdown` completes; a failed accept is logged
/// and serving goes on. Bounded: at most [`MAX_CONNECTIONS`] connections, each with
/// [`HANDSHAKE_TIMEOUT`] for its handshake and for the headers of each request.
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let acceptor = TlsAcceptor::from(tls);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let accepted = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors, a connection reset before it was taken, ...: the
                // listener is still good. Pause briefly so a persistent error does not spin.
                tracing::warn!(error = %e, "accepting a connection failed; still serving");
                tokio::select! {
                    _ = &mut shutdown => return Ok(()),
                    () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => continue,
                }
            }
        };
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HANDSHAKE_TIMEOUT);
            if let Err(e) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}
