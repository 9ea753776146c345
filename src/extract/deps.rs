//! The cluster-scoped objects a namespace depends on: PersistentVolumes bound to its claims,
//! StorageClasses, CRDs of its custom resources, ClusterRoles its RoleBindings name,
//! ClusterRoleBindings and SecurityContextConstraints naming its ServiceAccounts,
//! PriorityClasses, RuntimeClasses and IngressClasses its workloads use, admission webhooks
//! served from it. Reported always; written with `--with-cluster-deps`.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::extract::object::Object;

/// One cluster-scoped object the namespace needs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Dependency {
    /// e.g. `persistentvolume/pv-1`, `customresourcedefinition/widgets.example.com`.
    pub object: String,
    /// Why: `bound to persistentvolumeclaim/data`, …
    pub reasons: Vec<String>,
    /// Whether the snapshot holds it (an index into the cluster objects).
    #[serde(skip)]
    pub found: Option<usize>,
    pub in_snapshot: bool,
}

struct Needs {
    wanted: BTreeMap<(String, String), Vec<String>>,
}

impl Needs {
    fn add(&mut self, kind: &str, name: &str, why: String) {
        if name.is_empty() {
            return;
        }
        self.wanted
            .entry((kind.to_owned(), name.to_owned()))
            .or_default()
            .push(why);
    }
}

/// What `members` (the namespace's objects, as stored) need from `cluster`.
pub fn find(namespace: &str, members: &[Object], cluster: &[Object]) -> Vec<Dependency> {
    let mut n = Needs {
        wanted: BTreeMap::new(),
    };
    for o in members {
        n.of_member(o);
    }
    for c in cluster {
        n.naming(namespace, c);
    }
    n.resolve(cluster)
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or("").to_owned()
}

impl Needs {
    /// What one of the namespace's objects names: volumes, classes, roles, its CRD.
    fn of_member(&mut self, o: &Object) {
        let n = self;
        let me = o.display();
        match (o.kind(), o.group()) {
            ("PersistentVolumeClaim", "") => {
                n.add(
                    "PersistentVolume",
                    &s(&o.json["spec"]["volumeName"]),
                    format!("bound to {me}"),
                );
                n.add(
                    "StorageClass",
                    &s(&o.json["spec"]["storageClassName"]),
                    format!("used by {me}"),
                );
            }
            ("RoleBinding", "rbac.authorization.k8s.io")
                if o.json["roleRef"]["kind"] == "ClusterRole" =>
            {
                n.add(
                    "ClusterRole",
                    &s(&o.json["roleRef"]["name"]),
                    format!("bound by {me}"),
                );
            }
            ("Ingress", "networking.k8s.io" | "extensions") => {
                n.add(
                    "IngressClass",
                    &s(&o.json["spec"]["ingressClassName"]),
                    format!("used by {me}"),
                );
            }
            _ => {}
        }
        if let Some(group) = &o.key_group {
            n.add(
                "CustomResourceDefinition",
                &format!("{}.{group}", o.plural),
                format!("defines {me}"),
            );
        }
        for spec in o.pod_specs() {
            n.add(
                "PriorityClass",
                &s(&spec["priorityClassName"]),
                format!("used by {me}"),
            );
            n.add(
                "RuntimeClass",
                &s(&spec["runtimeClassName"]),
                format!("used by {me}"),
            );
        }
    }

    /// Whether a cluster-scoped object names the namespace (claims, bindings, webhooks, SCCs).
    fn naming(&mut self, namespace: &str, c: &Object) {
        let n = self;
        let sa_prefix = format!("system:serviceaccount:{namespace}:");
        let me = c.display();
        match c.kind() {
            "PersistentVolume" if c.json["spec"]["claimRef"]["namespace"] == namespace => {
                let claim = s(&c.json["spec"]["claimRef"]["name"]);
                n.add(
                    "PersistentVolume",
                    c.name(),
                    format!("claimed by persistentvolumeclaim/{claim}"),
                );
                n.add(
                    "StorageClass",
                    &s(&c.json["spec"]["storageClassName"]),
                    format!("used by {me}"),
                );
            }
            "ClusterRoleBinding" => {
                let names_us = c.json["subjects"].as_array().is_some_and(|subjects| {
                    subjects.iter().any(|sub| {
                        (sub["kind"] == "ServiceAccount" && sub["namespace"] == namespace)
                            || sub["name"].as_str()
                                == Some(&format!("system:serviceaccounts:{namespace}"))
                    })
                });
                if names_us {
                    n.add(
                        "ClusterRoleBinding",
                        c.name(),
                        "names a service account of the namespace".into(),
                    );
                    n.add(
                        "ClusterRole",
                        &s(&c.json["roleRef"]["name"]),
                        format!("bound by {me}"),
                    );
                }
            }
            "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration" => {
                let served_here = c.json["webhooks"].as_array().is_some_and(|hooks| {
                    hooks
                        .iter()
                        .any(|h| h["clientConfig"]["service"]["namespace"] == namespace)
                });
                if served_here {
                    n.add(
                        c.kind(),
                        c.name(),
                        "its webhook service is in the namespace".into(),
                    );
                }
            }
            "SecurityContextConstraints" => {
                let names_us = c.json["users"].as_array().is_some_and(|users| {
                    users
                        .iter()
                        .any(|u| u.as_str().is_some_and(|u| u.starts_with(&sa_prefix)))
                });
                if names_us {
                    n.add(
                        c.kind(),
                        c.name(),
                        "grants a service account of the namespace".into(),
                    );
                }
            }
            _ => {}
        }
    }

    /// Each needed object, found in the snapshot or not.
    fn resolve(self, cluster: &[Object]) -> Vec<Dependency> {
        self.wanted
            .into_iter()
            .map(|((kind, name), mut reasons)| {
                reasons.sort();
                reasons.dedup();
                let found = cluster
                    .iter()
                    .position(|c| c.kind() == kind && c.name() == name);
                Dependency {
                    object: format!("{}/{name}", kind.to_ascii_lowercase()),
                    reasons,
                    found,
                    in_snapshot: found.is_some(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_what_the_namespace_needs() {
        let members = vec![
            Object::new(
                "/registry/persistentvolumeclaims/shop/data",
                json!({"apiVersion":"v1","kind":"PersistentVolumeClaim","metadata":{"name":"data","namespace":"shop"},
                    "spec":{"volumeName":"pv-1","storageClassName":"fast"}}),
            ),
            Object::new(
                "/registry/rolebindings/shop/view",
                json!({"apiVersion":"rbac.authorization.k8s.io/v1","kind":"RoleBinding","metadata":{"name":"view","namespace":"shop"},
                    "roleRef":{"kind":"ClusterRole","name":"view"}}),
            ),
            Object::new(
                "/registry/example.com/widgets/shop/w",
                json!({"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w","namespace":"shop"}}),
            ),
            Object::new(
                "/registry/deployments/shop/web",
                json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"shop"},
                    "spec":{"template":{"spec":{"priorityClassName":"high","containers":[]}}}}),
            ),
        ];
        let cluster = vec![
            Object::new(
                "/registry/persistentvolumes/pv-1",
                json!({"apiVersion":"v1","kind":"PersistentVolume","metadata":{"name":"pv-1"},
                    "spec":{"claimRef":{"namespace":"shop","name":"data"},"storageClassName":"fast"}}),
            ),
            Object::new(
                "/registry/clusterrolebindings/shop-admin",
                json!({"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRoleBinding","metadata":{"name":"shop-admin"},
                    "subjects":[{"kind":"ServiceAccount","name":"app","namespace":"shop"}],"roleRef":{"kind":"ClusterRole","name":"admin"}}),
            ),
            Object::new(
                "/registry/clusterrolebindings/other",
                json!({"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRoleBinding","metadata":{"name":"other"},
                    "subjects":[{"kind":"ServiceAccount","name":"app","namespace":"other"}],"roleRef":{"kind":"ClusterRole","name":"edit"}}),
            ),
        ];
        let deps = find("shop", &members, &cluster);
        let names: Vec<(&str, bool)> = deps
            .iter()
            .map(|d| (d.object.as_str(), d.in_snapshot))
            .collect();
        assert_eq!(
            names,
            [
                ("clusterrole/admin", false),
                ("clusterrole/view", false),
                ("clusterrolebinding/shop-admin", true),
                ("customresourcedefinition/widgets.example.com", false),
                ("persistentvolume/pv-1", true),
                ("priorityclass/high", false),
                ("storageclass/fast", false),
            ]
        );
        let pv = deps
            .iter()
            .find(|d| d.object == "persistentvolume/pv-1")
            .unwrap();
        assert_eq!(
            pv.reasons,
            [
                "bound to persistentvolumeclaim/data",
                "claimed by persistentvolumeclaim/data"
            ]
        );
    }
}
