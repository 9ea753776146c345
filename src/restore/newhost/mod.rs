//! Restore onto a new machine (`restore --new-host --node-name N --node-ip IP`, kubeadm): the
//! bundle's files adapted, in the private staging directory and before anything on the host
//! changes, to a host with another name and address. From the bundle's CAs (kept, so every
//! token and kubeconfig they signed stays valid) the leaves that name the host are re-issued
//! (`certs`); manifests and kubeconfigs are rewritten (`rewrite`); the old masters' leases,
//! Nodes and the `kubernetes` endpoints are chosen for offline deletion (`cleanup`). Every
//! change is returned as lines for the plan.

pub mod certs;
pub mod cleanup;
mod cluster_config;
mod leaves;
mod old_host;
pub mod rewrite;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::beneath::Beneath;
use crate::bundle::manifest::Manifest;
use crate::error::usage;
use crate::host::{Platform, etcd_manifest};
use cleanup::Removal;
use cluster_config::cluster_configuration;
use old_host::{OldHost, host_of, old_host, refuse_collision};

/// The new host, as the flags name it.
#[derive(Debug, Clone)]
pub struct NewHost {
    /// Its node name (and etcd member name).
    pub name: String,
    /// The address etcd and the API server advertise.
    pub ip: IpAddr,
    /// `--keep-old-nodes`: leave the old masters' objects in the database.
    pub keep_old_nodes: bool,
}

impl NewHost {
    /// Checks the name is one Kubernetes accepts for a node (a DNS-1123 subdomain).
    pub fn new(name: &str, ip: IpAddr, keep_old_nodes: bool) -> anyhow::Result<Self> {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if name.len() > 253 || !name.split('.').all(label_ok) {
            return Err(usage(format!(
                "--node-name {name:?} is not a valid node name: lower-case letters, digits, '-' and '.', as `hostname` of a Kubernetes node"
            )));
        }
        if ip.is_unspecified() || ip.is_multicast() {
            return Err(usage(format!(
                "--node-ip {ip} cannot be advertised: give the address other masters and nodes reach this host on"
            )));
        }
        Ok(NewHost {
            name: name.to_owned(),
            ip,
            keep_old_nodes,
        })
    }
}

/// The bundle's files made fit for the new host, and what changed.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Lines for the plan: each certificate, each file's changed lines, each key removed.
    pub changes: Vec<String>,
    /// Things the operator must know (shown before the plan).
    pub warnings: Vec<String>,
    /// The rewritten static pod manifests (`<component>.yaml`), in the work directory.
    pub manifests: PathBuf,
    /// The components that have a manifest there, etcd first.
    pub components: Vec<String>,
    /// The keys to delete before etcd starts.
    pub removals: Vec<Removal>,
    /// Where they were saved with their values.
    pub removed_file: PathBuf,
    /// A directory holding `config.yaml`: the cluster's KubeletConfiguration (from
    /// `kube-system/kubelet-config`), for a host whose kubelet has none yet.
    pub kubelet_config: Option<PathBuf>,
}

/// Where kubeadm's kubelet reads its configuration.
pub const KUBELET_DIR: &str = "/var/lib/kubelet";

/// Adapts the staged bundle at `staged` for `new`; the rewritten manifests go to
/// `<work_dir>/manifests-new`, the removed keys' file to `<work_dir>/removed-old-hosts.json`.
pub fn prepare(
    staged: &Path,
    work_dir: &Path,
    m: &Manifest,
    new: &NewHost,
) -> anyhow::Result<Prepared> {
    match m.platform {
        Platform::Openshift => {
            return Err(usage(
                "--new-host restores kubeadm clusters only: OpenShift's certificates are issued and rotated by its operators, \
                 which cpbackup must not fight. On OpenShift, restore onto the original masters, or follow \"Replacing an unhealthy etcd member\" \
                 and the disaster-recovery documentation of your release to add new masters; nothing was changed",
            ));
        }
        Platform::Unknown => {
            return Err(usage(
                "this backup holds the etcd snapshot only (--static-pods none): without the cluster's CAs and manifests it cannot make a new host a master. \
                 Use a backup taken with the static pod resources; nothing was changed",
            ));
        }
        Platform::Kubeadm => {}
    }
    let dir = Beneath::open(staged)?;
    let etcd_yaml = certs::read_text(&dir, "manifests/etcd.yaml")
        .context("the backup has no readable manifests/etcd.yaml")?;
    let api_yaml = certs::read_text(&dir, "manifests/kube-apiserver.yaml").ok();
    let old = old_host(&etcd_yaml, api_yaml.as_deref(), m)?;
    refuse_collision(&old, new)?;
    let new_ip = new.ip.to_string();
    // The staged snapshot's live keys, read once for the ConfigMaps and the clean-up.
    let snapshot = staged.join(crate::bundle::manifest::SNAPSHOT_PATH);
    let file = std::fs::File::open(&snapshot)
        .with_context(|| format!("opening the staged snapshot {}", snapshot.display()))?;
    // SAFETY: the staged snapshot is a private file of this restore; nothing writes it now.
    let map = unsafe { memmap2::Mmap::map(&file)? };
    let db = crate::snapshot::db::Db::open(&map).context("reading the staged snapshot")?;
    let ks = crate::snapshot::mvcc::keyspace(&db).context("reading the staged snapshot's keys")?;
    let config = cluster_configuration(&ks, &old.etcd_prefix);
    let mut p = Prepared {
        changes: Vec::new(),
        warnings: Vec::new(),
        manifests: work_dir.join("manifests-new"),
        components: Vec::new(),
        removals: Vec::new(),
        removed_file: work_dir.join("removed-old-hosts.json"),
        kubelet_config: None,
    };
    if let Some(cpe) = config.control_plane_endpoint.as_deref()
        && old.addresses.iter().any(|a| host_of(cpe) == a.as_str())
    {
        p.warnings.push(format!(
            "WARNING: kubeadm's controlPlaneEndpoint is {cpe}, the old host's address: kubeconfigs naming it now point at {new_ip}; \
             update it in kube-system/kubeadm-config (and DNS or your load balancer) before `kubeadm join`"
        ));
    }
    leaves::reissue_certificates(&dir, &old, new, &config, &mut p)?;
    rewrite_kubeconfigs(&dir, staged, &old, new, &mut p)?;
    rewrite_manifests(&dir, &etcd_yaml, &old, new, &mut p)?;
    if let Some(kubelet) = &config.kubelet {
        // as `kubeadm join` writes it: a fresh host's kubelet runs no static pod without it
        let d = work_dir.join("kubelet");
        crate::restore::fsops::create_private_dir(&d)?;
        crate::fsutil::write_atomically(&d.join("config.yaml"), kubelet.as_bytes(), 0o644)?;
        p.changes.push(format!(
            "{KUBELET_DIR}/config.yaml: the cluster's kube-system/kubelet-config, where the host has none yet (as kubeadm join writes it)"
        ));
        p.kubelet_config = Some(d);
    }
    if !new.keep_old_nodes {
        p.removals = cleanup::select(&ks, &old.etcd_prefix, &old.masters, &new.name, &new_ip);
        cleanup::save(&p.removed_file, &p.removals)?;
        p.changes.push(format!(
            "etcd: {} key(s) of the old masters deleted before etcd starts (kept with their values in {}; --keep-old-nodes keeps them):",
            p.removals.len(),
            p.removed_file.display()
        ));
        for r in &p.removals {
            p.changes.push(format!("    {} ({})", r.key, r.reason));
        }
    }
    Ok(p)
}

fn rewrite_kubeconfigs(
    dir: &Beneath,
    staged: &Path,
    old: &OldHost,
    new: &NewHost,
    p: &mut Prepared,
) -> anyhow::Result<()> {
    let new_ip = new.ip.to_string();
    let confs: Vec<String> = crate::restore::steps::entries(staged)?
        .into_iter()
        .filter(|n| n.ends_with(".conf"))
        .collect();
    for conf in confs {
        let before = certs::read_text(dir, &conf)?;
        let mut after = before.clone();
        for a in old.addresses.iter().chain(std::iter::once(&old.name)) {
            after = rewrite::replace_on_server_lines(&after, a, &new_ip);
        }
        if conf == "kubelet.conf" {
            // A fresh machine has no rotated kubelet certificate (even under the old name):
            // the kubelet gets one inline, for its name.
            let ca = certs::Authority::load(dir, "ca")?;
            let (cert, key) = certs::kubelet_client(&ca, &new.name)?;
            after = rewrite::kubelet_identity(&after, &old.name, &new.name, &cert, &key);
        }
        record(p, &conf, &before, &after);
        if after != before {
            dir.replace_file(&conf, after.as_bytes(), 0o600)?;
        }
    }
    Ok(())
}

fn rewrite_manifests(
    dir: &Beneath,
    etcd_yaml: &str,
    old: &OldHost,
    new: &NewHost,
    p: &mut Prepared,
) -> anyhow::Result<()> {
    let new_ip = new.ip.to_string();
    crate::restore::fsops::create_private_dir(&p.manifests)?;
    let ordered = [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
    ];
    for c in ordered {
        let rel = format!("manifests/{c}.yaml");
        let before = match c {
            "etcd" => etcd_yaml.to_owned(),
            _ => match certs::read_text(dir, &rel) {
                Ok(t) => t,
                Err(_) => continue,
            },
        };
        let mut after = before.clone();
        for a in &old.addresses {
            after = rewrite::replace_address(&after, a, &new_ip);
        }
        if c == "etcd" {
            let f = etcd_manifest::command_flags(&after);
            let peer = f
                .get("initial-advertise-peer-urls")
                .and_then(|u| u.split(',').next())
                .context("the backup's etcd manifest has no --initial-advertise-peer-urls")?
                .to_owned();
            // the peer URL is the bundle's: it must not break out of the flag's line
            let cluster = format!("{}={peer}", new.name);
            etcd_manifest::plain_flag_value(&cluster).map_err(|e| {
                usage(format!(
                    "the backup's etcd manifest names an unusable peer URL ({e:#}); nothing was changed"
                ))
            })?;
            after = etcd_manifest::with_flags(
                &after,
                &[("name", &new.name), ("initial-cluster", &cluster)],
            );
        }
        record(p, &rel, &before, &after);
        crate::fsutil::write_atomically(
            &p.manifests.join(format!("{c}.yaml")),
            after.as_bytes(),
            0o600,
        )?;
        p.components.push(c.to_owned());
    }
    Ok(())
}

/// The plan's lines for one rewritten file.
fn record(p: &mut Prepared, path: &str, before: &str, after: &str) {
    let d = rewrite::diff(before, after);
    if d.is_empty() {
        return;
    }
    p.changes.push(format!("{path}:"));
    for c in d {
        p.changes.push(format!("    - {}", c.before));
        p.changes.push(format!("    + {}", c.after));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bundle's etcd manifest whose peer URL would break out of `--initial-cluster`'s line
    /// (anyone with the recipient and PutObject can write one) is refused, nothing written.
    #[test]
    fn a_crafted_peer_url_never_reaches_the_manifest() {
        let d = tempfile::tempdir().unwrap();
        let staged = d.path().join("staged");
        std::fs::create_dir_all(staged.join("manifests")).unwrap();
        let old = OldHost {
            name: "cp-old".into(),
            addresses: ["10.0.0.1".to_owned()].into(),
            masters: Default::default(),
            urls: Vec::new(),
            etcd_prefix: "/registry".into(),
            service_range: None,
        };
        let new = NewHost::new("cp-new", "10.0.3.7".parse().unwrap(), false).unwrap();
        for (peer, refused) in [
            ("https://10.0.0.1:2380", false),
            ("https://10.0.0.1:2380#x", true),
            ("https://10.0.0.1:2380`id`", true),
            ("https://10.0.0.1:2380$(reboot)", true),
        ] {
            let yaml = format!(
                "spec:\n  containers:\n  - command:\n    - etcd\n    - --name=cp-old\n    - --initial-advertise-peer-urls={peer}\n"
            );
            let mut p = Prepared {
                changes: Vec::new(),
                warnings: Vec::new(),
                manifests: d.path().join(format!("out-{refused}")),
                components: Vec::new(),
                removals: Vec::new(),
                removed_file: d.path().join("removed.json"),
                kubelet_config: None,
            };
            let dir = Beneath::open(&staged).unwrap();
            let r = rewrite_manifests(&dir, &yaml, &old, &new, &mut p);
            assert_eq!(r.is_err(), refused, "{peer}: {r:?}");
            let written = p.manifests.join("etcd.yaml");
            assert_eq!(written.exists(), !refused, "{peer}");
            if !refused {
                let t = std::fs::read_to_string(written).unwrap();
                assert!(
                    t.contains("--initial-cluster=cp-new=https://10.0.3.7:2380"),
                    "{t}"
                );
            }
        }
    }

    #[test]
    fn node_names_are_checked() {
        let ip = "10.0.3.7".parse().unwrap();
        assert!(NewHost::new("cp-new-0", ip, false).is_ok());
        for bad in ["", "CP", "a b", "-x", "x\ny", "a..b"] {
            assert!(NewHost::new(bad, ip, false).is_err(), "{bad:?}");
        }
        assert!(NewHost::new("cp", "0.0.0.0".parse().unwrap(), false).is_err());
    }
}
