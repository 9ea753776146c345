//! A mock Kubernetes API for `kube` clients, the kube-rs way: the test takes each request in
//! turn, asserts it exactly and answers it.

use http::{Method, Request, Response};
use kube::client::Body;
use serde_json::Value;

pub type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// A client whose requests arrive at the returned handle.
pub fn client() -> (kube::Client, Handle) {
    let (svc, h) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(svc, "default"), h)
}

/// Takes the next request, checks method, path and query, and content type, answers `status`
/// with `reply`; returns the JSON body that was sent (null when none).
pub async fn expect(
    h: &mut Handle,
    method: Method,
    path_and_query: &str,
    content_type: Option<&str>,
    status: u16,
    reply: Value,
) -> Value {
    let (req, send) = h.next_request().await.expect("another request");
    assert_eq!(req.method(), method, "{}", req.uri());
    assert_eq!(req.uri().path_and_query().unwrap().as_str(), path_and_query);
    assert_eq!(
        req.headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .as_deref(),
        content_type,
        "{method} {path_and_query}"
    );
    let body = req.into_body().collect_bytes().await.unwrap();
    send.send_response(
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&reply).unwrap()))
            .unwrap(),
    );
    if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap()
    }
}
