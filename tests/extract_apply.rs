//! `extract --apply`, tested the kube-rs way: a mock API server that asserts every request's
//! method, path, query, content type and body, in order.

use cpbackup_testkit as support;

use std::time::Duration;

use cpbackup::extract::object::Object;
use cpbackup::extract::reapply::{self, Options};
use cpbackup::kubeapi::apply::{self, ApplyOptions};
use http::Method;
use serde_json::{Value, json};

use support::mock_api::expect;

const APPLY: Option<&str> = Some("application/apply-patch+yaml");

fn objects() -> Vec<Object> {
    let raw = vec![
        Object::new(
            "/registry/example.com/widgets/shop/w1",
            json!({"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w1","namespace":"shop","uid":"w"},"spec":{"size":3}}),
        ),
        Object::new(
            "/registry/rolebindings/shop/app",
            json!({"apiVersion":"rbac.authorization.k8s.io/v1","kind":"RoleBinding","metadata":{"name":"app","namespace":"shop","uid":"rb"},
                "subjects":[{"kind":"ServiceAccount","name":"app","namespace":"shop"}],
                "roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"view"}}),
        ),
        Object::new(
            "/registry/namespaces/shop",
            json!({"apiVersion":"v1","kind":"Namespace","metadata":{"name":"shop","uid":"ns"}}),
        ),
        Object::new(
            "/registry/configmaps/shop/settings",
            json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"settings","namespace":"shop","uid":"cm","resourceVersion":"5"},"data":{"a":"1"}}),
        ),
        Object::new(
            "/registry/deployments/shop/web",
            json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"shop","uid":"d"},"spec":{"replicas":1}}),
        ),
    ];
    let opts = Options {
        to_namespace: Some("shop-restored".into()),
        ..Options::default()
    };
    let (mut kept, _) = reapply::prepare(raw, &opts);
    // a dependency written with --with-cluster-deps
    kept.push(Object::new(
        "/registry/apiextensions.k8s.io/customresourcedefinitions/widgets.example.com",
        json!({"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition","metadata":{"name":"widgets.example.com"},"spec":{"group":"example.com"}}),
    ));
    reapply::sort_for_apply(&mut kept);
    kept
}

fn established(yes: bool) -> Value {
    json!({"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition","metadata":{"name":"widgets.example.com"},
        "status":{"conditions":[{"type":"Established","status": if yes {"True"} else {"False"}}]}})
}

#[tokio::test]
async fn crds_first_then_every_object_in_order_and_failures_do_not_stop_the_rest() {
    let (client, mut h) = support::mock_api::client();
    let objs = objects();
    let opts = ApplyOptions {
        poll: Duration::from_millis(1),
        ..ApplyOptions::default()
    };
    let run = tokio::spawn(async move {
        let mut lines = Vec::new();
        let results = apply::apply_all(&client, &objs, &opts, |a| lines.push(a.line())).await;
        (results, lines)
    });
    let q = "?&force=true&fieldManager=cpbackup";
    let body = expect(
        &mut h,
        Method::PATCH,
        &format!("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com{q}"),
        APPLY,
        200,
        established(false),
    )
    .await;
    assert_eq!(body["spec"]["group"], "example.com");
    // waited for: not yet, then Established
    for yes in [false, true] {
        expect(
            &mut h,
            Method::GET,
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com",
            None,
            200,
            established(yes),
        )
        .await;
    }
    let body = expect(
        &mut h,
        Method::PATCH,
        &format!("/api/v1/namespaces/shop-restored{q}"),
        APPLY,
        201,
        json!({}),
    )
    .await;
    assert_eq!(
        body,
        json!({"apiVersion":"v1","kind":"Namespace","metadata":{"name":"shop-restored"}})
    );
    let body = expect(
        &mut h,
        Method::PATCH,
        &format!("/api/v1/namespaces/shop-restored/configmaps/settings{q}"),
        APPLY,
        422,
        json!({"kind":"Status","apiVersion":"v1","status":"Failure","message":"ConfigMap \"settings\" is invalid","reason":"Invalid","code":422}),
    )
    .await;
    assert_eq!(
        body,
        json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"settings","namespace":"shop-restored"},"data":{"a":"1"}})
    );
    let body = expect(
        &mut h,
        Method::PATCH,
        &format!("/apis/rbac.authorization.k8s.io/v1/namespaces/shop-restored/rolebindings/app{q}"),
        APPLY,
        200,
        json!({}),
    )
    .await;
    assert_eq!(body["subjects"][0]["namespace"], "shop-restored");
    expect(
        &mut h,
        Method::PATCH,
        &format!("/apis/apps/v1/namespaces/shop-restored/deployments/web{q}"),
        APPLY,
        200,
        json!({}),
    )
    .await;
    let body = expect(
        &mut h,
        Method::PATCH,
        &format!("/apis/example.com/v1/namespaces/shop-restored/widgets/w1{q}"),
        APPLY,
        200,
        json!({}),
    )
    .await;
    assert_eq!(body["spec"]["size"], 3);
    let (results, lines) = run.await.unwrap();
    assert!(apply::any_failed(&results));
    assert_eq!(
        lines,
        [
            "customresourcedefinition.apiextensions.k8s.io/widgets.example.com: applied",
            "namespace/shop-restored: applied",
            "configmap/settings -n shop-restored: failed: ConfigMap \"settings\" is invalid (Invalid)",
            "rolebinding.rbac.authorization.k8s.io/app -n shop-restored: applied",
            "deployment.apps/web -n shop-restored: applied",
            "widget.example.com/w1 -n shop-restored: applied",
        ]
    );
}

#[tokio::test]
async fn server_dry_run_sends_dry_run_all_and_does_not_wait_for_crds() {
    let (client, mut h) = support::mock_api::client();
    let objs: Vec<Object> = objects().into_iter().take(2).collect();
    let opts = ApplyOptions {
        server_dry_run: true,
        ..ApplyOptions::default()
    };
    let run = tokio::spawn(async move { apply::apply_all(&client, &objs, &opts, |_| {}).await });
    let q = "?&dryRun=All&force=true&fieldManager=cpbackup";
    expect(
        &mut h,
        Method::PATCH,
        &format!("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com{q}"),
        APPLY,
        200,
        established(false),
    )
    .await;
    expect(
        &mut h,
        Method::PATCH,
        &format!("/api/v1/namespaces/shop-restored{q}"),
        APPLY,
        200,
        json!({}),
    )
    .await;
    let results = run.await.unwrap();
    assert!(!apply::any_failed(&results));
    assert!(
        results
            .iter()
            .all(|r| r.result == "applied (server dry run)")
    );
}

/// Before any object: `GET /version`. An answer (even 404) means an API server is there;
/// 401/403 is a credentials error that names the kubeconfig, said once.
#[tokio::test]
async fn the_api_server_is_checked_once_before_anything_is_applied() {
    let kc = std::path::Path::new("/tmp/kc");
    for (status, reply, ok) in [
        (
            200,
            json!({"major":"1","minor":"35","gitVersion":"v1.35.0","gitCommit":"x","gitTreeState":"clean",
                "buildDate":"2026-01-01T00:00:00Z","goVersion":"go","compiler":"gc","platform":"linux/amd64"}),
            true,
        ),
        (
            404,
            json!({"kind":"Status","code":404,"message":"not found","reason":"NotFound","status":"Failure"}),
            true,
        ),
        (
            401,
            json!({"kind":"Status","code":401,"message":"Unauthorized","reason":"Unauthorized","status":"Failure"}),
            false,
        ),
    ] {
        let (client, mut h) = support::mock_api::client();
        let check = tokio::spawn(async move { cpbackup::kubeapi::reachable(&client, kc).await });
        expect(&mut h, Method::GET, "/version", None, status, reply).await;
        let got = check.await.unwrap();
        assert_eq!(got.is_ok(), ok, "{status}: {got:?}");
        if let Err(e) = got {
            let e = format!("{e:#}");
            assert!(
                e.contains("refused the credentials of /tmp/kc")
                    && e.contains("nothing was applied"),
                "{e}"
            );
        }
    }
}
