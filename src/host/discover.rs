//! Which platform this node is, and how to reach its local etcd member.
//!
//! - OpenShift: `etcd.env` in the etcd-scripts ConfigMap directory names the CA and the node's
//!   peer certificate (with `static-pod-certs` rewritten to `static-pod-resources/etcd-certs`, as
//!   `cluster-backup.sh` does) and the node's IP (`NODE_<name>_IP`); only the local member is used.
//! - kubeadm: `/etc/kubernetes/pki/etcd/ca.crt` with the apiserver-etcd-client (or
//!   healthcheck-client) pair, at `https://127.0.0.1:2379`.
//!
//! Explicit settings override whatever is discovered.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::EtcdSettings;
use crate::error::usage;
use crate::host::HostRoot;

pub const OPENSHIFT_ETCD_ENV: &str =
    "/etc/kubernetes/static-pod-resources/etcd-certs/configmaps/etcd-scripts/etcd.env";
pub const KUBEADM_ETCD_CA: &str = "/etc/kubernetes/pki/etcd/ca.crt";

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Openshift,
    Kubeadm,
    /// Neither layout was found: plain etcd.
    Unknown,
}

impl Platform {
    /// The name as the manifest, the JSON outputs and the logs write it (`openshift`, `kubeadm`,
    /// `unknown`).
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Openshift => "openshift",
            Platform::Kubeadm => "kubeadm",
            Platform::Unknown => "unknown",
        }
    }

    pub fn detect(host: &HostRoot) -> Platform {
        if host.path(OPENSHIFT_ETCD_ENV).is_file() {
            Platform::Openshift
        } else if host.path(KUBEADM_ETCD_CA).is_file() {
            Platform::Kubeadm
        } else {
            Platform::Unknown
        }
    }
}

/// Everything needed to open a client to the local member. Paths are readable as they are.
#[derive(Debug, Clone)]
pub struct EtcdAccess {
    pub endpoint: String,
    pub cacert: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// The node name, when discovery learnt it (OpenShift peer certificate name).
    pub node_name: Option<String>,
}

/// Parses `export K="V"` lines.
pub fn parse_env_file(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim();
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            out.insert(k.trim().to_owned(), v.to_owned());
        }
    }
    out
}

/// `NODE_<name>_IP` key for a node name (`-` and `.` become `_`).
pub fn node_ip_key(node: &str) -> String {
    format!("NODE_{}_IP", node.replace(['-', '.'], "_"))
}

fn rewrite_pod_path(p: &str) -> PathBuf {
    PathBuf::from(p.replace(
        "/etc/kubernetes/static-pod-certs",
        "/etc/kubernetes/static-pod-resources/etcd-certs",
    ))
}

/// Resolves etcd access: explicit settings first, then the platform's files.
pub fn etcd_access(
    host: &HostRoot,
    platform: Platform,
    settings: &EtcdSettings,
    node_name: Option<&str>,
) -> anyhow::Result<EtcdAccess> {
    let mut access = match platform {
        Platform::Openshift => openshift_access(host, settings, node_name)?,
        Platform::Kubeadm => kubeadm_access(host),
        Platform::Unknown => EtcdAccess {
            endpoint: String::new(),
            cacert: None,
            cert: None,
            key: None,
            node_name: None,
        },
    };
    if let Some(ep) = &settings.endpoint {
        access.endpoint = ep.clone();
    }
    if let Some(p) = &settings.cacert {
        access.cacert = Some(p.clone());
    }
    if let (Some(c), Some(k)) = (&settings.cert, &settings.key) {
        access.cert = Some(c.clone());
        access.key = Some(k.clone());
    }
    if access.endpoint.is_empty() {
        return Err(usage(format!(
            "cannot find etcd: no OpenShift ({OPENSHIFT_ETCD_ENV}) or kubeadm ({KUBEADM_ETCD_CA}) layout under host root {}; \
             pass --etcd-endpoint (and --etcd-cacert/--etcd-cert/--etcd-key for TLS), or --host-root if the host is mounted elsewhere",
            host.root().display()
        )));
    }
    if access.endpoint.starts_with("https://") && access.cacert.is_none() {
        return Err(usage(format!(
            "etcd endpoint {} uses TLS but no CA is known: pass --etcd-cacert FILE",
            access.endpoint
        )));
    }
    Ok(access)
}

fn openshift_access(
    host: &HostRoot,
    settings: &EtcdSettings,
    node_name: Option<&str>,
) -> anyhow::Result<EtcdAccess> {
    let env_path = host.path(OPENSHIFT_ETCD_ENV);
    let text = std::fs::read_to_string(&env_path).map_err(|e| {
        anyhow::anyhow!(
            "cannot read {}: {e}; is this an OpenShift control-plane node?",
            env_path.display()
        )
    })?;
    let env = parse_env_file(&text);
    let get = |k: &str| {
        env.get(k).cloned().ok_or_else(|| {
            anyhow::anyhow!(
                "{} has no {k}; pass --etcd-cacert/--etcd-cert/--etcd-key explicitly",
                env_path.display()
            )
        })
    };
    let cert_raw = get("ETCDCTL_CERT")?;
    // The installer names the peer certificate after the node: etcd-peer-<node>.crt.
    let cert_node = std::path::Path::new(&cert_raw)
        .file_name()
        .and_then(|f| f.to_str())
        .and_then(|f| f.strip_prefix("etcd-peer-"))
        .and_then(|f| f.strip_suffix(".crt"))
        .map(str::to_owned);
    let node = node_name
        .map(str::to_owned)
        .or_else(|| cert_node.clone())
        .or_else(hostname);
    let endpoint = if settings.endpoint.is_some() {
        String::new()
    } else {
        let node = node
            .clone()
            .ok_or_else(|| usage("cannot tell this node's name: pass --node-name"))?;
        let key = node_ip_key(&node);
        let ip = env.get(&key).ok_or_else(|| {
            let known: Vec<&String> =
                env.keys().filter(|k| k.starts_with("NODE_") && k.ends_with("_IP")).collect();
            usage(format!(
                "{} has no {key} for node {node:?} (it knows {known:?}); pass --node-name or --etcd-endpoint https://<this node's IP>:2379",
                env_path.display()
            ))
        })?;
        format!("https://{ip}:2379")
    };
    Ok(EtcdAccess {
        endpoint,
        cacert: Some(host.path(rewrite_pod_path(&get("ETCDCTL_CACERT")?))),
        cert: Some(host.path(rewrite_pod_path(&cert_raw))),
        key: Some(host.path(rewrite_pod_path(&get("ETCDCTL_KEY")?))),
        node_name: node,
    })
}

fn kubeadm_access(host: &HostRoot) -> EtcdAccess {
    let pki = "/etc/kubernetes/pki";
    let (cert, key) = if host
        .path(format!("{pki}/apiserver-etcd-client.crt"))
        .is_file()
    {
        ("apiserver-etcd-client.crt", "apiserver-etcd-client.key")
    } else {
        ("etcd/healthcheck-client.crt", "etcd/healthcheck-client.key")
    };
    EtcdAccess {
        endpoint: "https://127.0.0.1:2379".into(),
        cacert: Some(host.path(KUBEADM_ETCD_CA)),
        cert: Some(host.path(format!("{pki}/{cert}"))),
        key: Some(host.path(format!("{pki}/{key}"))),
        node_name: None,
    }
}

/// The Kubernetes version of the node's API server, from its kubeadm static pod's image tag.
pub fn kubernetes_version(host: &HostRoot) -> Option<String> {
    let m =
        std::fs::read_to_string(host.path("/etc/kubernetes/manifests/kube-apiserver.yaml")).ok()?;
    super::etcd_manifest::image_tag(&m).filter(|t| super::etcd_manifest::minor_of(t).is_some())
}

/// This machine's hostname (short form as the kernel reports it).
pub fn hostname() -> Option<String> {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn settings() -> EtcdSettings {
        crate::settings::etcd::resolve(&Default::default(), &Default::default()).unwrap()
    }

    fn openshift_root(node: &str) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let env = d.path().join(OPENSHIFT_ETCD_ENV.trim_start_matches('/'));
        fs::create_dir_all(env.parent().unwrap()).unwrap();
        fs::write(
            &env,
            format!(
                "export ETCDCTL_API=\"3\"\n\
                 export ETCDCTL_CACERT=\"/etc/kubernetes/static-pod-certs/configmaps/etcd-all-bundles/server-ca-bundle.crt\"\n\
                 export ETCDCTL_CERT=\"/etc/kubernetes/static-pod-certs/secrets/etcd-all-certs/etcd-peer-{node}.crt\"\n\
                 export ETCDCTL_KEY=\"/etc/kubernetes/static-pod-certs/secrets/etcd-all-certs/etcd-peer-{node}.key\"\n\
                 export ETCDCTL_ENDPOINTS=\"https://10.0.0.1:2379,https://10.0.0.2:2379\"\n\
                 export NODE_master_0_example_com_IP=\"10.0.0.1\"\n\
                 export NODE_master_1_example_com_IP=\"10.0.0.2\"\n"
            ),
        )
        .unwrap();
        d
    }

    #[test]
    fn openshift_env_gives_local_member_and_rewritten_paths() {
        let d = openshift_root("master-1.example.com");
        let host = HostRoot::new(d.path());
        assert_eq!(Platform::detect(&host), Platform::Openshift);
        let a = etcd_access(&host, Platform::Openshift, &settings(), None).unwrap();
        assert_eq!(a.endpoint, "https://10.0.0.2:2379");
        assert_eq!(a.node_name.as_deref(), Some("master-1.example.com"));
        assert_eq!(
            a.cacert.unwrap(),
            d.path().join("etc/kubernetes/static-pod-resources/etcd-certs/configmaps/etcd-all-bundles/server-ca-bundle.crt")
        );
        assert!(a.cert.unwrap().ends_with(
            "static-pod-resources/etcd-certs/secrets/etcd-all-certs/etcd-peer-master-1.example.com.crt"
        ));
    }

    #[test]
    fn openshift_unknown_node_names_the_fix() {
        let d = openshift_root("master-1.example.com");
        let host = HostRoot::new(d.path());
        let e = etcd_access(&host, Platform::Openshift, &settings(), Some("master-9")).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("NODE_master_9_IP") && msg.contains("--etcd-endpoint"),
            "{msg}"
        );
    }

    #[test]
    fn kubeadm_prefers_apiserver_client_pair() {
        let d = tempfile::tempdir().unwrap();
        let pki = d.path().join("etc/kubernetes/pki");
        fs::create_dir_all(pki.join("etcd")).unwrap();
        fs::write(pki.join("etcd/ca.crt"), "x").unwrap();
        let host = HostRoot::new(d.path());
        assert_eq!(Platform::detect(&host), Platform::Kubeadm);
        let a = etcd_access(&host, Platform::Kubeadm, &settings(), None).unwrap();
        assert!(a.cert.unwrap().ends_with("etcd/healthcheck-client.crt"));
        fs::write(pki.join("apiserver-etcd-client.crt"), "x").unwrap();
        let a = etcd_access(&host, Platform::Kubeadm, &settings(), None).unwrap();
        assert!(a.cert.unwrap().ends_with("pki/apiserver-etcd-client.crt"));
        assert_eq!(a.endpoint, "https://127.0.0.1:2379");
    }

    #[test]
    fn nothing_found_asks_for_endpoint() {
        let d = tempfile::tempdir().unwrap();
        let host = HostRoot::new(d.path());
        assert_eq!(Platform::detect(&host), Platform::Unknown);
        let e = etcd_access(&host, Platform::Unknown, &settings(), None).unwrap_err();
        assert_eq!(crate::error::exit_code(&e), 2);
        assert!(e.to_string().contains("--etcd-endpoint"));
    }

    #[test]
    fn env_parsing_handles_quotes() {
        let m = parse_env_file("export A=\"1\"\nB='2'\n# c\nexport C=3\n");
        assert_eq!(m["A"], "1");
        assert_eq!(m["B"], "2");
        assert_eq!(m["C"], "3");
        assert_eq!(node_ip_key("m-0.x"), "NODE_m_0_x_IP");
    }
}
