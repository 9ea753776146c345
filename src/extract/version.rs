//! Which Kubernetes release a snapshot's cluster ran, from what the snapshot itself holds: the
//! kubeadm ClusterConfiguration, OpenShift's ClusterVersion, and the kubelet version of its Nodes
//! (a kubelet is never newer than its API server). Used to say when the cluster is newer than
//! the schema, before its newer fields turn up as lossy objects.

use serde_json::Value;

/// At most this many Node objects are decoded to learn the version (large clusters have
/// thousands; the first few say enough).
pub const MAX_NODES: usize = 16;

/// What a version source is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `kube-system/kubeadm-config`.
    Kubeadm,
    /// OpenShift's `clusterversions/version`.
    OpenShift,
    /// A Node.
    Node,
}

/// Whether the key holds a version source (cheap: looked at for every key of the snapshot).
pub fn source_of(key: &[u8]) -> Option<Source> {
    if key.ends_with(b"/configmaps/kube-system/kubeadm-config") {
        Some(Source::Kubeadm)
    } else if key.ends_with(b"/config.openshift.io/clusterversions/version") {
        Some(Source::OpenShift)
    } else if is_node_key(key) {
        Some(Source::Node)
    } else {
        None
    }
}

/// `<prefix>/minions/<name>` (`/registry/minions/cp-0`, `/kubernetes.io/minions/…`).
fn is_node_key(key: &[u8]) -> bool {
    let Some(rest) = key.strip_prefix(b"/") else {
        return false;
    };
    memchr::memchr(b'/', rest).is_some_and(|i| rest[i + 1..].starts_with(b"minions/"))
}

/// The Kubernetes minor version an object says the cluster runs, and where it said so.
pub fn minor_from(source: Source, json: &Value) -> Option<(u32, String)> {
    match source {
        Source::Kubeadm => {
            let config = json["data"]["ClusterConfiguration"].as_str()?;
            let v = config
                .lines()
                .find_map(|l| l.trim().strip_prefix("kubernetesVersion:"))?
                .trim()
                .trim_matches(['"', '\'']);
            Some((minor(v)?, format!("kubeadm ClusterConfiguration says {v}")))
        }
        Source::OpenShift => {
            let v = json["status"]["desired"]["version"].as_str()?;
            let (major, ocp_minor) = crate::host::etcd_manifest::minor_of(v)?;
            // OpenShift 4.N ships Kubernetes 1.(N+13): 4.16 → 1.29, 4.18 → 1.31
            // a crafted version must not overflow: 4.4294967295 is no release at all
            let minor = ocp_minor.checked_add(13).filter(|_| major == 4)?;
            Some((minor, format!("OpenShift ClusterVersion {v}")))
        }
        Source::Node => {
            let v = json["status"]["nodeInfo"]["kubeletVersion"].as_str()?;
            Some((minor(v)?, format!("a Node's kubelet is {v}")))
        }
    }
}

/// `v1.35.2` → 35.
pub fn minor(version: &str) -> Option<u32> {
    match crate::host::etcd_manifest::minor_of(version)? {
        (1, m) => Some(m),
        _ => None,
    }
}

/// The warning when the cluster is newer than the newest release the schema covers.
pub fn newer_than_schema(minor: u32, said_by: &str) -> Option<String> {
    let newest = crate::k8s::schema::Schema::newest_minor();
    (minor > newest).then(|| {
        format!(
            "the cluster runs Kubernetes 1.{minor} ({said_by}), newer than the schema (up to \
             1.{newest}): fields added since then are not decoded, and objects that have them are \
             flagged lossy. To decode them, give --proto-path with the 1.{minor} .proto files \
             (the generated.proto files of k8s.io/api, k8s.io/apimachinery, \
             k8s.io/apiextensions-apiserver and k8s.io/kube-aggregator at their v0.{minor} tags, \
             in their k8s.io/… directory layout)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_source_names_the_minor() {
        assert_eq!(source_of(b"/registry/minions/cp-0"), Some(Source::Node));
        assert_eq!(source_of(b"/registry/pods/ns/minions"), None);
        assert_eq!(source_of(b"/registry/pods/minions/x"), None);
        assert_eq!(
            source_of(b"/kubernetes.io/minions/master-0"),
            Some(Source::Node)
        );
        let kubeadm = json!({"data": {"ClusterConfiguration":
            "apiVersion: kubeadm.k8s.io/v1beta4\nkubernetesVersion: v1.36.1\n"}});
        assert_eq!(minor_from(Source::Kubeadm, &kubeadm).unwrap().0, 36);
        let ocp = json!({"status": {"desired": {"version": "4.18.3"}}});
        assert_eq!(minor_from(Source::OpenShift, &ocp).unwrap().0, 31);
        let node = json!({"status": {"nodeInfo": {"kubeletVersion": "v1.33.4+k3s1"}}});
        assert_eq!(minor_from(Source::Node, &node).unwrap().0, 33);
        assert_eq!(minor_from(Source::Node, &json!({})), None);
        let crafted = json!({"status": {"desired": {"version": "4.4294967295"}}});
        assert_eq!(minor_from(Source::OpenShift, &crafted), None);
        let big = json!({"status": {"nodeInfo": {"kubeletVersion": "v1.4294967295"}}});
        assert!(newer_than_schema(minor_from(Source::Node, &big).unwrap().0, "x").is_some());
        assert!(newer_than_schema(99, "x").unwrap().contains("--proto-path"));
        assert!(newer_than_schema(30, "x").is_none());
    }
}
