//! A kube client whose API server misbehaves on purpose: for readiness checks that must tell an
//! unreachable API server or a missing CRD from a healthy one.

/// A client for an API server that answers every list with an empty one, except for request
/// paths containing `missing` (404, as for a CRD that is not installed); with `None` it
/// answers 503 to everything (the API server is unavailable).
pub fn client(missing: Option<&'static str>, namespace: &str) -> kube::Client {
    let svc = tower::service_fn(move |req: http::Request<kube::client::Body>| async move {
        let path = req.uri().path().to_owned();
        let (code, body) = match missing {
            None => (
                503,
                r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"unavailable","code":503}"#,
            ),
            Some(m) if path.contains(m) => (
                404,
                r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"the server could not find the requested resource","reason":"NotFound","code":404}"#,
            ),
            Some(_) => (
                200,
                r#"{"kind":"List","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[]}"#,
            ),
        };
        Ok::<_, std::convert::Infallible>(
            http::Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(kube::client::Body::from(body.as_bytes().to_vec()))
                .expect("a valid response"),
        )
    });
    kube::Client::new(svc, namespace.to_owned())
}
