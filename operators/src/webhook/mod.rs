//! The cStor validating admission webhook (`cstor-webhook`).
//!
//! - [`cspc`], [`cvc`] and [`pvc`] hold the rules as plain functions over the request objects
//!   and a [`lookup::ClusterLookup`] (the Kubernetes reads and the two writes the rules need),
//!   so they run against an in-memory [`lookup::MemoryLookup`] or a live cluster
//!   ([`lookup::KubeLookup`]) unchanged.
//! - [`server`] turns an `AdmissionReview` (v1) into a call of the right rule and serves
//!   `POST /validate` over HTTPS.
//! - [`tls`] generates the self-signed CA and serving certificate and loads PEM files;
//!   [`bootstrap`] stores them in the webhook Secret and registers the Service and the
//!   ValidatingWebhookConfiguration (with the CA bundle) owned by the webhook Deployment.

pub mod bootstrap;
pub mod cspc;
pub mod cvc;
pub mod lookup;
pub mod pvc;
pub mod server;
pub mod tls;

use std::fmt;

/// Name of the webhook Deployment, Service and the server certificate's host.
pub const SERVER_NAME: &str = "openebs-cstor-admission-server";
/// Secret holding the CA and serving certificate.
pub const SECRET_NAME: &str = "openebs-cstor-admission-secret";
/// The ValidatingWebhookConfiguration the webhook registers.
pub const WEBHOOK_CONFIG_NAME: &str = "openebs-cstor-validation-webhook";
/// The single webhook inside [`WEBHOOK_CONFIG_NAME`].
pub const WEBHOOK_NAME: &str = "admission-webhook.cstor.openebs.io";
/// Common name of the self-signed CA.
pub const CA_COMMON_NAME: &str = "openebs-cstor-admission-server-ca";
/// HTTP path of the validation endpoint.
pub const VALIDATE_PATH: &str = "/validate";
/// Default HTTPS port.
pub const DEFAULT_PORT: u16 = 8443;
/// Secret key of the serving certificate (PEM).
pub const SECRET_CERT_KEY: &str = "app.crt";
/// Secret key of the serving certificate's private key (PEM).
pub const SECRET_KEY_KEY: &str = "app.pem";
/// Secret key of the CA certificate (PEM).
pub const SECRET_CA_KEY: &str = "ca.crt";

/// Why a request is refused: the `status` of a denying `AdmissionResponse`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    /// Suggested HTTP code (`422` CSPC rules, `400` CVC rules and undecodable objects, `403` PVCs).
    pub code: u16,
    /// Machine-readable reason.
    pub reason: String,
    /// Human-readable message (upstream's wording).
    pub message: String,
}

impl Denial {
    /// 422, reason `BadRequest` (CSPC rule violations).
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self {
            code: 422,
            reason: "BadRequest".into(),
            message: message.into(),
        }
    }

    /// 400, reason `BadRequest` (CVC rules, objects that cannot be decoded).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            code: 400,
            reason: "BadRequest".into(),
            message: message.into(),
        }
    }

    /// 403 with a custom reason (PVC deletion).
    pub fn forbidden(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: 403,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for Denial {}

/// Renders a list the way Go's `%v` prints a `[]string`: `[a b c]`.
pub(crate) fn go_list<S: AsRef<str>>(items: &[S]) -> String {
    let parts: Vec<&str> = items.iter().map(|s| s.as_ref()).collect();
    format!("[{}]", parts.join(" "))
}

/// Renders a map the way Go's `%v` prints a `map[string]string`: `map[k:v k2:v2]` (sorted).
pub(crate) fn go_map(map: &std::collections::BTreeMap<String, String>) -> String {
    let parts: Vec<String> = map.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    format!("map[{}]", parts.join(" "))
}
