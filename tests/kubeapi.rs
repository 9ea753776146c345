//! The OpenShift post-restore API calls, tested the kube-rs way: a mock service that asserts
//! every request's method, path, query, content type and body, and answers it.

use cpbackup_testkit as support;

use std::time::Duration;

use cpbackup::kubeapi::openshift::{self, Settle};
use http::{Method, Response};
use kube::client::Body;
use serde_json::{Value, json};

use support::mock_api::Handle;

/// Takes the next request, checks it, answers `reply` (200); returns the body sent.
async fn expect(
    h: &mut Handle,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    reply: Value,
) -> Value {
    support::mock_api::expect(h, method, path, content_type, 200, reply).await
}

fn cluster_version(v: &str) -> Value {
    json!({"apiVersion": "config.openshift.io/v1", "kind": "ClusterVersion",
           "metadata": {"name": "version"}, "status": {"desired": {"version": v}}})
}

fn operator(name: &str, progressing: &str) -> Value {
    json!({"apiVersion": "config.openshift.io/v1", "kind": "ClusterOperator", "metadata": {"name": name},
           "status": {"conditions": [
               {"type": "Available", "status": "True"},
               {"type": "Progressing", "status": progressing},
               {"type": "Degraded", "status": "False"}]}})
}

fn operators(items: Vec<Value>) -> Value {
    json!({"apiVersion": "config.openshift.io/v1", "kind": "ClusterOperatorList", "metadata": {}, "items": items})
}

fn settle() -> Settle {
    Settle {
        timeout: Duration::from_secs(30),
        stable_for: Duration::ZERO,
        poll: Duration::from_millis(1),
    }
}

const MERGE: Option<&str> = Some("application/merge-patch+json");

#[tokio::test]
async fn openshift_418_toggles_the_quorum_guard_around_a_stable_cluster() {
    let (client, mut h) = support::mock_api::client();
    let run = tokio::spawn(async move {
        let mut said = Vec::new();
        let r = openshift::post_restore(&client, settle(), &mut |s| said.push(s)).await;
        (r, said)
    });
    expect(
        &mut h,
        Method::GET,
        "/apis/config.openshift.io/v1/clusterversions/version",
        None,
        cluster_version("4.18.3"),
    )
    .await;
    let etcd = json!({"apiVersion": "operator.openshift.io/v1", "kind": "Etcd", "metadata": {"name": "cluster"}});
    let body = expect(
        &mut h,
        Method::PATCH,
        "/apis/operator.openshift.io/v1/etcds/cluster?",
        MERGE,
        etcd.clone(),
    )
    .await;
    assert_eq!(
        body,
        json!({"spec": {"unsupportedConfigOverrides": {"useUnsupportedUnsafeNonHANonProductionUnstableEtcd": true}}})
    );
    // Not settled yet, then settled.
    expect(
        &mut h,
        Method::GET,
        "/apis/config.openshift.io/v1/clusteroperators?",
        None,
        operators(vec![
            operator("etcd", "True"),
            operator("kube-apiserver", "False"),
        ]),
    )
    .await;
    expect(
        &mut h,
        Method::GET,
        "/apis/config.openshift.io/v1/clusteroperators?",
        None,
        operators(vec![
            operator("etcd", "False"),
            operator("kube-apiserver", "False"),
        ]),
    )
    .await;
    let body = expect(
        &mut h,
        Method::PATCH,
        "/apis/operator.openshift.io/v1/etcds/cluster?",
        MERGE,
        etcd,
    )
    .await;
    assert_eq!(body, json!({"spec": {"unsupportedConfigOverrides": null}}));
    let (r, said) = run.await.unwrap();
    r.unwrap();
    assert!(
        said.iter().any(|s| s.contains("quorum guard back on")),
        "{said:?}"
    );
}

#[tokio::test]
async fn openshift_before_418_redeploys_each_operator_until_every_node_has_the_new_revision() {
    let (client, mut h) = support::mock_api::client();
    let run =
        tokio::spawn(async move { openshift::post_restore(&client, settle(), &mut |_| {}).await });
    expect(
        &mut h,
        Method::GET,
        "/apis/config.openshift.io/v1/clusterversions/version",
        None,
        cluster_version("4.14.12"),
    )
    .await;
    for (kind, plural) in openshift::REDEPLOY {
        let path = format!("/apis/operator.openshift.io/v1/{plural}/cluster");
        let obj = |rev: i64, reason: &str| {
            json!({"apiVersion": "operator.openshift.io/v1", "kind": kind,
            "metadata": {"name": "cluster"},
            "status": {"latestAvailableRevision": rev,
                       "conditions": [{"type": "NodeInstallerProgressing", "status": "False", "reason": reason}]}})
        };
        expect(
            &mut h,
            Method::GET,
            &path,
            None,
            obj(7, "AllNodesAtLatestRevision"),
        )
        .await;
        let body = expect(
            &mut h,
            Method::PATCH,
            &format!("{path}?"),
            MERGE,
            obj(7, "AllNodesAtLatestRevision"),
        )
        .await;
        let reason = body["spec"]["forceRedeploymentReason"].as_str().unwrap();
        assert!(reason.starts_with("recovery-"), "{body}");
        // The old revision everywhere does not count; a new one rolling out neither.
        expect(
            &mut h,
            Method::GET,
            &path,
            None,
            obj(7, "AllNodesAtLatestRevision"),
        )
        .await;
        expect(
            &mut h,
            Method::GET,
            &path,
            None,
            obj(8, "NodeInstallerProgressing"),
        )
        .await;
        expect(
            &mut h,
            Method::GET,
            &path,
            None,
            obj(8, "AllNodesAtLatestRevision"),
        )
        .await;
    }
    run.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_cluster_that_never_settles_times_out_with_the_names_and_the_guard_goes_back_on() {
    let (client, mut h) = support::mock_api::client();
    let s = Settle {
        timeout: Duration::from_millis(50),
        stable_for: Duration::ZERO,
        poll: Duration::from_millis(20),
    };
    let run = tokio::spawn(async move { openshift::post_restore(&client, s, &mut |_| {}).await });
    expect(
        &mut h,
        Method::GET,
        "/apis/config.openshift.io/v1/clusterversions/version",
        None,
        cluster_version("4.19.0"),
    )
    .await;
    let etcd = json!({"apiVersion": "operator.openshift.io/v1", "kind": "Etcd", "metadata": {"name": "cluster"}});
    expect(
        &mut h,
        Method::PATCH,
        "/apis/operator.openshift.io/v1/etcds/cluster?",
        MERGE,
        etcd.clone(),
    )
    .await;
    loop {
        let (req, send) = h.next_request().await.unwrap();
        if req.method() == Method::PATCH {
            let body: Value =
                serde_json::from_slice(&req.into_body().collect_bytes().await.unwrap()).unwrap();
            assert_eq!(body, json!({"spec": {"unsupportedConfigOverrides": null}}));
            send.send_response(
                Response::builder()
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&etcd).unwrap()))
                    .unwrap(),
            );
            break;
        }
        send.send_response(
            Response::builder()
                .header("content-type", "application/json")
                .body(Body::from(
                    serde_json::to_vec(&operators(vec![operator("network", "True")])).unwrap(),
                ))
                .unwrap(),
        );
    }
    let e = run.await.unwrap().unwrap_err();
    assert!(format!("{e:#}").contains("network"), "{e:#}");
}

#[tokio::test]
async fn precheck_reads_the_four_control_plane_operators_and_names_the_busy_ones() {
    let (client, mut h) = support::mock_api::client();
    let run = tokio::spawn(async move { openshift::rollouts_in_progress(&client).await });
    for (name, progressing) in [
        ("kube-apiserver", "False"),
        ("kube-controller-manager", "True"),
        ("kube-scheduler", "False"),
        ("etcd", "False"),
    ] {
        expect(
            &mut h,
            Method::GET,
            &format!("/apis/config.openshift.io/v1/clusteroperators/{name}"),
            None,
            operator(name, progressing),
        )
        .await;
    }
    let busy = run.await.unwrap().unwrap();
    assert_eq!(
        busy,
        vec![("kube-controller-manager".to_owned(), "True".to_owned())]
    );
}
