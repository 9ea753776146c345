//! Turning objects as stored into objects that re-apply cleanly to a cluster:
//! - skipped: what a controller recreates (an owner that is in the namespace too), Events and
//!   Leases, objects being deleted, the auto-created `kube-root-ca.crt` / `openshift-service-ca.crt`
//!   ConfigMaps, `default` (and OpenShift's `builder`/`deployer`) ServiceAccounts, token Secrets;
//! - stripped: server-set metadata (uid, resourceVersion, generation, timestamps, managedFields,
//!   selfLink, ownerReferences to objects not exported) and `status`;
//! - fixed per kind: Service cluster IPs and node ports, Pod node binding, PVC bind annotations,
//!   Job selectors with the old controller uid, PV claim references, Namespace finalizers, CRDs
//!   stored as `v1beta1` written as `v1`;
//! - moved with `--to-namespace`: metadata and every namespace reference (RoleBinding subjects,
//!   PV claimRef, ClusterRoleBinding subjects).
//!
//! Each rule can be switched off (`--raw` switches off all of them).

use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::extract::object::Object;

/// Which rules apply.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Keep everything as stored: no skipping, no stripping, no fix-ups.
    pub raw: bool,
    /// Keep `status` (the API server ignores it on apply).
    pub keep_status: bool,
    /// Keep objects a controller would recreate.
    pub keep_owned: bool,
    /// Rewrite the namespace to this one.
    pub to_namespace: Option<String>,
}

/// An object left out, and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Skipped {
    /// `kind/name` of the object left out.
    pub object: String,
    /// Why it was left out.
    pub reason: String,
}

const SERVER_METADATA: &[&str] = &[
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
    "managedFields",
];

const PVC_BIND_ANNOTATIONS: &[&str] = &[
    "pv.kubernetes.io/bind-completed",
    "pv.kubernetes.io/bound-by-controller",
    "volume.kubernetes.io/selected-node",
    "volume.kubernetes.io/storage-provisioner",
    "volume.beta.kubernetes.io/storage-provisioner",
];

const AUTO_SERVICE_ACCOUNTS: &[&str] = &["default", "builder", "deployer", "pipeline"];

/// What the skip rules need to know about the whole namespace.
struct Namespace {
    /// uids of its objects: an owner among them recreates what it owns.
    uids: HashSet<String>,
    /// Services with a selector: their Endpoints are the controller's (they carry no owner).
    selector_services: HashSet<String>,
}

impl Namespace {
    fn of(objects: &[Object]) -> Self {
        Namespace {
            uids: objects
                .iter()
                .filter_map(|o| o.uid().map(str::to_owned))
                .collect(),
            selector_services: objects
                .iter()
                .filter(|o| o.kind() == "Service" && o.json["spec"].get("selector").is_some())
                .map(|o| o.name().to_owned())
                .collect(),
        }
    }
}

/// Why an object should not be exported, if it should not.
fn skip_reason(o: &Object, ns: &Namespace, opts: &Options) -> Option<String> {
    let kind = o.kind();
    let meta = &o.json["metadata"];
    if meta.get("deletionTimestamp").is_some_and(|v| !v.is_null()) {
        return Some("being deleted (deletionTimestamp set)".into());
    }
    if let Some(owner) = controller_owner(o)
        && !opts.keep_owned
        && owner
            .get("uid")
            .and_then(Value::as_str)
            .is_some_and(|uid| ns.uids.contains(uid))
    {
        return Some(format!(
            "recreated by its controller {}/{}",
            owner["kind"].as_str().unwrap_or("?").to_ascii_lowercase(),
            owner["name"].as_str().unwrap_or("?")
        ));
    }
    match (kind, o.group()) {
        ("Event", "" | "events.k8s.io") => Some("events are not restored".into()),
        ("Lease", "coordination.k8s.io") => Some("leases are recreated by their holders".into()),
        ("ConfigMap", "")
            if matches!(o.name(), "kube-root-ca.crt" | "openshift-service-ca.crt") =>
        {
            Some("created in every namespace by the cluster".into())
        }
        ("ServiceAccount", "") if AUTO_SERVICE_ACCOUNTS.contains(&o.name()) => {
            Some("created in every namespace by the cluster".into())
        }
        ("RoleBinding", "rbac.authorization.k8s.io")
            if matches!(
                o.name(),
                "system:image-pullers" | "system:image-builders" | "system:deployers"
            ) =>
        {
            Some("created in every namespace by OpenShift".into())
        }
        ("Secret", "") => {
            let ty = o.json["type"].as_str().unwrap_or("");
            let annotations = &meta["annotations"];
            if ty == "kubernetes.io/service-account-token" {
                Some("service account token: the cluster issues a new one".into())
            } else if ty == "kubernetes.io/dockercfg"
                && (annotations
                    .get("openshift.io/internal-registry-auth-token.service-account")
                    .is_some()
                    || annotations
                        .get("kubernetes.io/service-account.name")
                        .is_some())
            {
                Some(
                    "registry pull secret of a service account: the cluster issues a new one"
                        .into(),
                )
            } else {
                None
            }
        }
        ("Endpoints", "") if ns.selector_services.contains(o.name()) => {
            Some("maintained by the endpoints controller".into())
        }
        ("Endpoints", "") | ("EndpointSlice", "discovery.k8s.io")
            if meta["labels"]
                .get("endpointslice.kubernetes.io/managed-by")
                .is_some()
                || meta["labels"]
                    .get("endpoints.kubernetes.io/managed-by")
                    .is_some() =>
        {
            Some("maintained by the endpoints controller".into())
        }
        _ => None,
    }
}

fn controller_owner(o: &Object) -> Option<&Value> {
    o.json["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"].as_bool() == Some(true))
}

/// Prepares the namespace's objects (the Namespace object among them) for re-applying: returns
/// the objects to write, in apply order, and the ones left out.
pub fn prepare(objects: Vec<Object>, opts: &Options) -> (Vec<Object>, Vec<Skipped>) {
    let ns = Namespace::of(&objects);
    let mut kept = Vec::new();
    let mut skipped = Vec::new();
    for mut o in objects {
        if !opts.raw {
            if let Some(reason) = skip_reason(&o, &ns, opts) {
                skipped.push(Skipped {
                    object: o.display(),
                    reason,
                });
                continue;
            }
            clean(&mut o, &ns.uids, opts);
        }
        if let Some(to) = &opts.to_namespace {
            move_namespace(&mut o, to);
        }
        kept.push(o);
    }
    sort_for_apply(&mut kept);
    (kept, skipped)
}

/// Deterministic apply order: by kind rank, then kind, namespace, name.
pub fn sort_for_apply(objects: &mut [Object]) {
    use crate::extract::object::apply_rank;
    objects.sort_by(|a, b| {
        (apply_rank(a.kind()), a.kind(), a.namespace(), a.name()).cmp(&(
            apply_rank(b.kind()),
            b.kind(),
            b.namespace(),
            b.name(),
        ))
    });
}

/// Strips server-set fields and applies the per-kind fix-ups.
pub fn clean(o: &mut Object, exported_uids: &HashSet<String>, opts: &Options) {
    let kind = o.kind().to_owned();
    let group = o.group().to_owned();
    let json = &mut o.json;
    strip_metadata(json, exported_uids);
    if !opts.keep_status
        && let Some(obj) = json.as_object_mut()
    {
        obj.remove("status");
    }
    fix_up(json, &kind, &group);
    drop_empty(json, "spec");
}

/// Server-set metadata, `generateName` beside a name, owners that are not exported (their
/// uids would be stale, and the garbage collector would delete us).
fn strip_metadata(json: &mut Value, exported_uids: &HashSet<String>) {
    if let Some(meta) = json.get_mut("metadata").and_then(Value::as_object_mut) {
        for f in SERVER_METADATA {
            meta.remove(*f);
        }
        if meta
            .get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty())
        {
            meta.remove("generateName");
        }
        if let Some(Value::Array(owners)) = meta.get_mut("ownerReferences") {
            owners.retain(|r| r["uid"].as_str().is_some_and(|u| exported_uids.contains(u)));
            if owners.is_empty() {
                meta.remove("ownerReferences");
            }
        }
    }
}

/// The per-kind fix-ups: what the API server or a controller would set again, or refuse.
fn fix_up(json: &mut Value, kind: &str, group: &str) {
    let spec = json.get_mut("spec").and_then(Value::as_object_mut);
    match (kind, group) {
        ("Service", "") => {
            if let Some(spec) = spec {
                if spec.get("clusterIP").and_then(Value::as_str) != Some("None") {
                    spec.remove("clusterIP");
                    spec.remove("clusterIPs");
                }
                spec.remove("healthCheckNodePort");
                if let Some(Value::Array(ports)) = spec.get_mut("ports") {
                    for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                        p.remove("nodePort");
                    }
                }
            }
        }
        ("Pod", "") => {
            if let Some(spec) = spec {
                spec.remove("nodeName");
                spec.remove("priority");
            }
        }
        ("PersistentVolumeClaim", "") => {
            remove_annotations(json, PVC_BIND_ANNOTATIONS);
        }
        ("PersistentVolume", "") => {
            if let Some(claim) = json
                .pointer_mut("/spec/claimRef")
                .and_then(Value::as_object_mut)
            {
                claim.remove("uid");
                claim.remove("resourceVersion");
            }
            remove_annotations(json, &["pv.kubernetes.io/bound-by-controller"]);
        }
        ("Job", "batch") => {
            // the selector names the old Job's uid: let the API server generate a new one
            if json.pointer("/spec/manualSelector") != Some(&Value::Bool(true))
                && let Some(spec) = json.get_mut("spec").and_then(Value::as_object_mut)
            {
                spec.remove("selector");
            }
            if let Some(labels) = json
                .pointer_mut("/spec/template/metadata/labels")
                .and_then(Value::as_object_mut)
            {
                labels.remove("controller-uid");
                labels.remove("batch.kubernetes.io/controller-uid");
            }
        }
        ("Namespace", "") => {
            if let Some(spec) = spec {
                spec.remove("finalizers");
            }
        }
        ("CustomResourceDefinition", "apiextensions.k8s.io")
            if json["apiVersion"] == "apiextensions.k8s.io/v1beta1" =>
        {
            crate::extract::crd::v1beta1_to_v1(json);
        }
        _ => {}
    }
}

fn remove_annotations(json: &mut Value, names: &[&str]) {
    if let Some(a) = json
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        for n in names {
            a.remove(*n);
        }
        if a.is_empty() {
            json["metadata"]
                .as_object_mut()
                .map(|m| m.remove("annotations"));
        }
    }
}

fn drop_empty(json: &mut Value, field: &str) {
    if json
        .get(field)
        .and_then(Value::as_object)
        .is_some_and(Map::is_empty)
        && let Some(obj) = json.as_object_mut()
    {
        obj.remove(field);
    }
}

/// Rewrites every reference to the object's namespace to `to`.
pub fn move_namespace(o: &mut Object, to: &str) {
    let from = o.namespace().map(str::to_owned).unwrap_or_else(|| {
        // the Namespace object itself
        o.name().to_owned()
    });
    move_namespace_refs(o, &from, to);
}

/// Rewrites references to namespace `from` (metadata, subjects, claim) to `to`.
pub fn move_namespace_refs(o: &mut Object, from: &str, to: &str) {
    let kind = o.kind().to_owned();
    let json = &mut o.json;
    if kind == "Namespace" && o_name_is(json, from) {
        json["metadata"]["name"] = Value::String(to.to_owned());
        if let Some(labels) = json
            .pointer_mut("/metadata/labels")
            .and_then(Value::as_object_mut)
            && labels.contains_key("kubernetes.io/metadata.name")
        {
            labels.insert(
                "kubernetes.io/metadata.name".into(),
                Value::String(to.to_owned()),
            );
        }
        return;
    }
    if json["metadata"]["namespace"].as_str() == Some(from) {
        json["metadata"]["namespace"] = Value::String(to.to_owned());
    }
    match kind.as_str() {
        "RoleBinding" | "ClusterRoleBinding" => {
            if let Some(Value::Array(subjects)) = json.get_mut("subjects") {
                for s in subjects.iter_mut() {
                    if s["namespace"].as_str() == Some(from) {
                        s["namespace"] = Value::String(to.to_owned());
                    }
                }
            }
        }
        "PersistentVolume" => {
            if let Some(claim) = json.pointer_mut("/spec/claimRef")
                && claim["namespace"].as_str() == Some(from)
            {
                claim["namespace"] = Value::String(to.to_owned());
            }
        }
        _ => {}
    }
}

fn o_name_is(json: &Value, name: &str) -> bool {
    json["metadata"]["name"].as_str() == Some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(key: &str, json: Value) -> Object {
        Object::new(key, json)
    }

    #[test]
    fn owned_objects_events_and_auto_created_ones_are_skipped() {
        let dep = obj(
            "/registry/deployments/shop/web",
            json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"shop","uid":"d1"}}),
        );
        let rs = obj(
            "/registry/replicasets/shop/web-5d",
            json!({"apiVersion":"apps/v1","kind":"ReplicaSet","metadata":{"name":"web-5d","namespace":"shop","uid":"r1",
                "ownerReferences":[{"kind":"Deployment","name":"web","uid":"d1","controller":true}]}}),
        );
        let orphan = obj(
            "/registry/pods/shop/lonely",
            json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"lonely","namespace":"shop","uid":"p1",
                "ownerReferences":[{"kind":"Node","name":"n","uid":"elsewhere","controller":true}]},
                "spec":{"nodeName":"n1","containers":[{"name":"c"}]}}),
        );
        let event = obj(
            "/registry/events/shop/e",
            json!({"apiVersion":"v1","kind":"Event","metadata":{"name":"e","namespace":"shop"}}),
        );
        let root_ca = obj(
            "/registry/configmaps/shop/kube-root-ca.crt",
            json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"kube-root-ca.crt","namespace":"shop"}}),
        );
        let token = obj(
            "/registry/secrets/shop/t",
            json!({"apiVersion":"v1","kind":"Secret","type":"kubernetes.io/service-account-token","metadata":{"name":"t","namespace":"shop"}}),
        );
        let (kept, skipped) = prepare(
            vec![orphan, rs, event, dep, root_ca, token],
            &Options::default(),
        );
        let names: Vec<String> = kept.iter().map(Object::display).collect();
        assert_eq!(names, ["pod/lonely", "deployment.apps/web"]);
        assert_eq!(skipped.len(), 4);
        assert!(skipped[0].reason.contains("deployment/web"), "{skipped:?}");
        // the stale owner is dropped, the node binding too
        assert!(kept[0].json["metadata"].get("ownerReferences").is_none());
        assert!(kept[0].json["spec"].get("nodeName").is_none());
        let (kept, skipped) = prepare(
            vec![obj(
                "/registry/events/shop/e",
                json!({"apiVersion":"v1","kind":"Event","metadata":{"name":"e"}}),
            )],
            &Options {
                raw: true,
                ..Options::default()
            },
        );
        assert_eq!((kept.len(), skipped.len()), (1, 0));
    }

    #[test]
    fn endpoints_of_selector_services_are_the_controllers_and_manual_ones_stay() {
        let svc = |name: &str, selector: bool| {
            let mut j = json!({"apiVersion":"v1","kind":"Service","metadata":{"name":name,"namespace":"shop"},"spec":{}});
            if selector {
                j["spec"]["selector"] = json!({"app": name});
            }
            obj(&format!("/registry/services/specs/shop/{name}"), j)
        };
        let ep = |name: &str| {
            obj(
                &format!("/registry/services/endpoints/shop/{name}"),
                json!({"apiVersion":"v1","kind":"Endpoints","metadata":{"name":name,"namespace":"shop"}}),
            )
        };
        let slice = obj(
            "/registry/endpointslices/shop/web-abc",
            json!({"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"name":"web-abc","namespace":"shop",
                "labels":{"endpointslice.kubernetes.io/managed-by":"endpointslice-controller.k8s.io"}}}),
        );
        let (kept, skipped) = prepare(
            vec![
                svc("web", true),
                ep("web"),
                svc("external-db", false),
                ep("external-db"),
                slice,
            ],
            &Options::default(),
        );
        let kept: Vec<String> = kept.iter().map(Object::display).collect();
        assert_eq!(
            kept,
            [
                "service/external-db",
                "service/web",
                "endpoints/external-db"
            ]
        );
        let skipped: Vec<&str> = skipped.iter().map(|s| s.object.as_str()).collect();
        assert_eq!(
            skipped,
            ["endpoints/web", "endpointslice.discovery.k8s.io/web-abc"]
        );
    }

    #[test]
    fn server_fields_go_and_kind_fix_ups_apply() {
        let svc = obj(
            "/registry/services/specs/shop/web",
            json!({"apiVersion":"v1","kind":"Service","metadata":{"name":"web","namespace":"shop","uid":"u",
                "resourceVersion":"","creationTimestamp":"2024-01-01T00:00:00Z","managedFields":[{}]},
                "spec":{"clusterIP":"10.0.0.7","clusterIPs":["10.0.0.7"],"type":"NodePort",
                "ports":[{"port":80,"nodePort":30080}],"selector":{"app":"web"}},
                "status":{"loadBalancer":{}}}),
        );
        let headless = obj(
            "/registry/services/specs/shop/db",
            json!({"apiVersion":"v1","kind":"Service","metadata":{"name":"db","namespace":"shop"},
                "spec":{"clusterIP":"None","clusterIPs":["None"]}}),
        );
        let job = obj(
            "/registry/jobs/shop/j",
            json!({"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"j","namespace":"shop"},
                "spec":{"selector":{"matchLabels":{"batch.kubernetes.io/controller-uid":"x"}},
                "template":{"metadata":{"labels":{"batch.kubernetes.io/controller-uid":"x","app":"j"}}}}}),
        );
        let pvc = obj(
            "/registry/persistentvolumeclaims/shop/data",
            json!({"apiVersion":"v1","kind":"PersistentVolumeClaim","metadata":{"name":"data","namespace":"shop",
                "annotations":{"pv.kubernetes.io/bind-completed":"yes"}},"spec":{"volumeName":"pv-1"}}),
        );
        let (kept, _) = prepare(vec![svc, headless, job, pvc], &Options::default());
        let find = |n: &str| kept.iter().find(|o| o.name() == n).unwrap().json.clone();
        let web = find("web");
        assert_eq!(
            web,
            json!({"apiVersion":"v1","kind":"Service","metadata":{"name":"web","namespace":"shop"},
                "spec":{"type":"NodePort","ports":[{"port":80}],"selector":{"app":"web"}}})
        );
        assert_eq!(find("db")["spec"]["clusterIP"], "None");
        let j = find("j");
        assert!(j["spec"].get("selector").is_none());
        assert_eq!(
            j["spec"]["template"]["metadata"]["labels"],
            json!({"app":"j"})
        );
        assert!(find("data")["metadata"].get("annotations").is_none());
        // --keep-status keeps status
        let (kept, _) = prepare(
            vec![obj(
                "/registry/pods/shop/p",
                json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"shop"},"status":{"phase":"Running"}}),
            )],
            &Options {
                keep_status: true,
                ..Options::default()
            },
        );
        assert_eq!(kept[0].json["status"]["phase"], "Running");
    }

    #[test]
    fn to_namespace_moves_every_reference() {
        let rb = obj(
            "/registry/rolebindings/shop/rb",
            json!({"apiVersion":"rbac.authorization.k8s.io/v1","kind":"RoleBinding","metadata":{"name":"rb","namespace":"shop"},
                "subjects":[{"kind":"ServiceAccount","name":"app","namespace":"shop"},{"kind":"ServiceAccount","name":"x","namespace":"other"}],
                "roleRef":{"kind":"Role","name":"r"}}),
        );
        let ns = obj(
            "/registry/namespaces/shop",
            json!({"apiVersion":"v1","kind":"Namespace","metadata":{"name":"shop","labels":{"kubernetes.io/metadata.name":"shop"}},"spec":{"finalizers":["kubernetes"]}}),
        );
        let opts = Options {
            to_namespace: Some("shop-restored".into()),
            ..Options::default()
        };
        let (kept, _) = prepare(vec![rb, ns], &opts);
        assert_eq!(kept[0].kind(), "Namespace");
        assert_eq!(
            kept[0].json,
            json!({"apiVersion":"v1","kind":"Namespace","metadata":{"name":"shop-restored","labels":{"kubernetes.io/metadata.name":"shop-restored"}}})
        );
        assert_eq!(kept[1].json["metadata"]["namespace"], "shop-restored");
        assert_eq!(kept[1].json["subjects"][0]["namespace"], "shop-restored");
        assert_eq!(kept[1].json["subjects"][1]["namespace"], "other");
    }

    mod properties {
        use super::*;
        use crate::extract::object::apply_rank;
        use proptest::prelude::*;

        const KINDS: &[(&str, &str, &str)] = &[
            ("v1", "ConfigMap", "configmaps"),
            ("v1", "Secret", "secrets"),
            ("v1", "Pod", "pods"),
            ("v1", "Service", "services/specs"),
            ("apps/v1", "Deployment", "deployments"),
            ("apps/v1", "ReplicaSet", "replicasets"),
            ("batch/v1", "Job", "jobs"),
            ("v1", "Event", "events"),
            ("example.com/v1", "Widget", "example.com/widgets"),
        ];

        fn objects() -> impl Strategy<Value = Vec<Object>> {
            prop::collection::vec(
                (0..KINDS.len(), 0u32..50, any::<bool>(), any::<bool>(), prop::option::of(0u32..50)),
                0..30,
            )
            .prop_map(|specs| {
                specs
                    .into_iter()
                    .enumerate()
                    .map(|(i, (k, name, status, managed, owner))| {
                        let (api, kind, res) = KINDS[k];
                        let mut meta = json!({"name": format!("o{name}"), "namespace": "shop",
                            "uid": format!("u{i}"), "resourceVersion": "7", "generation": 2,
                            "creationTimestamp": "2024-01-01T00:00:00Z"});
                        if managed {
                            meta["managedFields"] = json!([{"manager": "kubectl"}]);
                        }
                        if let Some(o) = owner {
                            meta["ownerReferences"] =
                                json!([{"kind": "Deployment", "name": "x", "uid": format!("u{o}"), "controller": true}]);
                        }
                        let mut j = json!({"apiVersion": api, "kind": kind, "metadata": meta, "spec": {"a": 1}});
                        if status {
                            j["status"] = json!({"phase": "Running"});
                        }
                        Object::new(&format!("/registry/{res}/shop/o{name}-{i}"), j)
                    })
                    .collect()
            })
        }

        proptest! {
            #[test]
            fn prepared_objects_carry_no_server_state_and_are_in_apply_order(objs in objects()) {
                let n = objs.len();
                let uids: HashSet<String> = objs.iter().filter_map(|o| o.uid().map(str::to_owned)).collect();
                let (kept, skipped) = prepare(objs, &Options::default());
                prop_assert_eq!(kept.len() + skipped.len(), n);
                for o in &kept {
                    let meta = &o.json["metadata"];
                    for f in SERVER_METADATA {
                        prop_assert!(meta.get(*f).is_none(), "{} kept {}", o.display(), f);
                    }
                    prop_assert!(o.json.get("status").is_none());
                    prop_assert!(o.kind() != "Event");
                    if let Some(owners) = meta["ownerReferences"].as_array() {
                        for r in owners {
                            prop_assert!(!uids.contains(r["uid"].as_str().unwrap_or("")));
                        }
                    }
                }
                prop_assert!(kept.windows(2).all(|w| apply_rank(w[0].kind()) <= apply_rank(w[1].kind())));
                // preparing prepared output changes nothing
                let (again, skipped_again) = prepare(kept.clone(), &Options::default());
                prop_assert!(skipped_again.is_empty());
                prop_assert_eq!(
                    again.iter().map(|o| &o.json).collect::<Vec<_>>(),
                    kept.iter().map(|o| &o.json).collect::<Vec<_>>()
                );
            }
        }
    }
}
