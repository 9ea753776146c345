//! A decoded object with what extraction needs to know about it: the etcd key it came from, the
//! REST resource (plural) the key names, and the helpers to read its JSON.

use serde_json::Value;

use crate::k8s::unknown::Unknown;
use crate::snapshot::stats;

/// One decoded object.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    /// The etcd key it was stored under.
    pub key: String,
    /// The REST resource, e.g. `deployments`, `services`, `widgets` (custom resources).
    pub plural: String,
    /// The API group from the key for custom resources (built-ins take it from `apiVersion`).
    pub key_group: Option<String>,
    /// The object as the API server would return it.
    pub json: Value,
    /// Protobuf fields the schema did not know: not in `json`, so the object is lossy.
    pub unknown: Unknown,
}

impl Object {
    /// The object stored under `key`.
    pub fn new(key: &str, json: Value) -> Self {
        let path = stats::classify(key);
        let (group, plural) = rest_resource(path.resource);
        Object {
            key: key.to_owned(),
            plural,
            key_group: group,
            json,
            unknown: Unknown::default(),
        }
    }

    /// Whether the JSON misses fields the stored object has.
    pub fn is_lossy(&self) -> bool {
        !self.unknown.is_empty()
    }

    /// `kind`.
    pub fn kind(&self) -> &str {
        self.json["kind"].as_str().unwrap_or("")
    }

    /// `apiVersion`.
    pub fn api_version(&self) -> &str {
        self.json["apiVersion"].as_str().unwrap_or("")
    }

    /// The API group (`""` for the core group).
    pub fn group(&self) -> &str {
        self.api_version()
            .rsplit_once('/')
            .map(|(g, _)| g)
            .unwrap_or("")
    }

    /// `metadata.name`.
    pub fn name(&self) -> &str {
        self.json["metadata"]["name"].as_str().unwrap_or("")
    }

    /// `metadata.namespace`, if namespaced.
    pub fn namespace(&self) -> Option<&str> {
        self.json["metadata"]["namespace"]
            .as_str()
            .filter(|s| !s.is_empty())
    }

    /// `metadata.uid`.
    pub fn uid(&self) -> Option<&str> {
        self.json["metadata"]["uid"].as_str()
    }

    /// Whether it is a Secret (written 0600).
    pub fn is_secret(&self) -> bool {
        self.kind() == "Secret" && self.group().is_empty()
    }

    /// `deployment.apps/web`, `configmap/settings`: how kubectl names it.
    pub fn display(&self) -> String {
        let kind = self.kind().to_ascii_lowercase();
        match self.group() {
            "" => format!("{kind}/{}", self.name()),
            g => format!("{kind}.{g}/{}", self.name()),
        }
    }

    /// Every pod spec the object carries (a Pod's, a workload template's, a CronJob's job's).
    pub fn pod_specs(&self) -> Vec<&Value> {
        let j = &self.json;
        [
            &j["spec"],
            &j["spec"]["template"]["spec"],
            &j["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        ]
        .into_iter()
        .filter(|s| s.get("containers").is_some())
        .collect()
    }
}

/// The storage prefix of a key → (API group for custom resources, REST plural).
pub fn rest_resource(storage: &str) -> (Option<String>, String) {
    let plural = match storage {
        "services/specs" => "services",
        "services/endpoints" => "endpoints",
        "controllers" => "replicationcontrollers",
        "minions" => "nodes",
        "ingress" => "ingresses",
        "podsecuritypolicy" => "podsecuritypolicies",
        "oauth/accesstokens" => "oauthaccesstokens",
        "oauth/authorizetokens" => "oauthauthorizetokens",
        "oauth/clients" => "oauthclients",
        "oauth/clientauthorizations" => "oauthclientauthorizations",
        "useridentities" => "identities",
        other => other,
    };
    match plural.split_once('/') {
        Some((group, plural)) if group.contains('.') => (Some(group.to_owned()), plural.to_owned()),
        _ => (None, plural.to_owned()),
    }
}

/// Where a kind goes in apply order: what others refer to first, custom resources last.
pub fn apply_rank(kind: &str) -> usize {
    const ORDER: &[&str] = &[
        "CustomResourceDefinition",
        "PriorityClass",
        "Namespace",
        "NetworkPolicy",
        "ResourceQuota",
        "LimitRange",
        "PodDisruptionBudget",
        "ServiceAccount",
        "Secret",
        "ConfigMap",
        "StorageClass",
        "PersistentVolume",
        "PersistentVolumeClaim",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Service",
        "DaemonSet",
        "Pod",
        "ReplicationController",
        "ReplicaSet",
        "Deployment",
        "DeploymentConfig",
        "HorizontalPodAutoscaler",
        "StatefulSet",
        "Job",
        "CronJob",
        "IngressClass",
        "Ingress",
        "Route",
        "APIService",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ];
    ORDER.iter().position(|k| *k == kind).unwrap_or(ORDER.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_their_rest_resource() {
        let o = Object::new("/registry/services/specs/shop/web", Value::Null);
        assert_eq!(
            (o.plural.as_str(), o.key_group.as_deref()),
            ("services", None)
        );
        let o = Object::new("/registry/example.com/widgets/shop/w", Value::Null);
        assert_eq!(
            (o.plural.as_str(), o.key_group.as_deref()),
            ("widgets", Some("example.com"))
        );
        assert_eq!(rest_resource("controllers").1, "replicationcontrollers");
        assert_eq!(rest_resource("deployments").1, "deployments");
        assert!(apply_rank("Namespace") < apply_rank("Secret"));
        assert!(apply_rank("Secret") < apply_rank("Deployment"));
        assert!(apply_rank("Deployment") < apply_rank("Widget"));
    }
}
