//! Restore onto a new machine (`restore --new-host --node-name N --node-ip IP`, kubeadm): the
//! bundle's files adapted, in the private staging directory and before anything on the host
//! changes, to a host with another name and address. From the bundle's CAs (kept, so every
//! token and kubeconfig they signed stays valid) the leaves that name the host are re-issued
//! (`certs`); manifests and kubeconfigs are rewritten (`rewrite`); the old masters' leases,
//! Nodes and the `kubernetes` endpoints are chosen for offline deletion (`cleanup`). Every
//! change is returned as lines for the plan.

pub mod certs;
pub mod cleanup;
pub mod rewrite;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::beneath::Beneath;
use crate::bundle::manifest::Manifest;
use crate::error::usage;
use crate::host::{Platform, etcd_manifest};
use certs::San;
use cleanup::{OldMasters, Removal};

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
}

/// What the bundle says the old host was.
struct OldHost {
    name: String,
    addresses: BTreeSet<String>,
    /// Every old master.
    masters: OldMasters,
    /// Client and peer URLs of every old member.
    urls: Vec<String>,
    etcd_prefix: String,
    service_range: Option<String>,
}

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
    let snapshot = staged.join(crate::bundle::manifest::SNAPSHOT_PATH);
    let config = cluster_configuration(&snapshot, &old.etcd_prefix);
    let mut p = Prepared {
        changes: Vec::new(),
        warnings: Vec::new(),
        manifests: work_dir.join("manifests-new"),
        components: Vec::new(),
        removals: Vec::new(),
        removed_file: work_dir.join("removed-old-hosts.json"),
    };
    if let Some(cpe) = config.control_plane_endpoint.as_deref()
        && old.addresses.iter().any(|a| host_of(cpe) == a.as_str())
    {
        p.warnings.push(format!(
            "WARNING: kubeadm's controlPlaneEndpoint is {cpe}, the old host's address: kubeconfigs naming it now point at {new_ip}; \
             update it in kube-system/kubeadm-config (and DNS or your load balancer) before `kubeadm join`"
        ));
    }
    reissue_certificates(&dir, &old, new, &config, &mut p)?;
    rewrite_kubeconfigs(&dir, staged, &old, new, &mut p)?;
    rewrite_manifests(&dir, &etcd_yaml, &old, new, &mut p)?;
    if !new.keep_old_nodes {
        p.removals = cleanup::select(
            &snapshot,
            &old.etcd_prefix,
            &old.masters,
            &new.name,
            &new_ip,
        )?;
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

fn old_host(etcd_yaml: &str, api_yaml: Option<&str>, m: &Manifest) -> anyhow::Result<OldHost> {
    let f = etcd_manifest::command_flags(etcd_yaml);
    let name = f
        .get("name")
        .cloned()
        .context("the backup's etcd manifest has no --name")?;
    let api = api_yaml
        .map(etcd_manifest::command_flags)
        .unwrap_or_default();
    let mut urls: Vec<String> = Vec::new();
    for k in ["advertise-client-urls", "initial-advertise-peer-urls"] {
        urls.extend(
            f.get(k)
                .into_iter()
                .flat_map(|v| v.split(',').map(str::to_owned)),
        );
    }
    let mut addresses: BTreeSet<String> = urls.iter().map(|u| host_of(u).to_owned()).collect();
    addresses.extend(api.get("advertise-address").cloned());
    addresses.retain(|a| !is_loopback(a));
    let mut masters = OldMasters {
        names: BTreeSet::from([name.clone()]),
        addresses: addresses.clone(),
    };
    for member in f
        .get("initial-cluster")
        .into_iter()
        .flat_map(|v| v.split(','))
    {
        if let Some((n, u)) = member.split_once('=') {
            masters.names.insert(n.to_owned());
            masters.addresses.insert(host_of(u).to_owned());
            urls.push(u.to_owned());
        }
    }
    for h in m.consistency.iter().flat_map(|c| &c.members) {
        masters.names.insert(h.name.clone());
        masters.addresses.insert(host_of(&h.endpoint).to_owned());
        urls.push(h.endpoint.clone());
    }
    masters.addresses.retain(|a| !is_loopback(a));
    Ok(OldHost {
        name,
        addresses,
        masters,
        urls,
        etcd_prefix: api
            .get("etcd-prefix")
            .cloned()
            .unwrap_or_else(|| "/registry".into()),
        service_range: api.get("service-cluster-ip-range").cloned(),
    })
}

/// The host of a URL or `host:port` (`https://10.0.0.1:2379` → `10.0.0.1`, `[fd00::1]:2379` →
/// `fd00::1`).
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.split('/').next().unwrap_or(rest);
    if let Some(v6) = rest.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6);
    }
    match rest.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !h.contains(':') => h,
        _ => rest,
    }
}

/// The loopback names kubeadm gives every host (other loopback addresses, as tests use, are
/// addresses like any other).
fn is_loopback(a: &str) -> bool {
    matches!(a, "localhost" | "127.0.0.1" | "::1")
}

/// Refuses when an old member still answers at the new address: two etcds would claim it.
fn refuse_collision(old: &OldHost, new: &NewHost) -> anyhow::Result<()> {
    for url in &old.urls {
        if host_of(url).parse::<IpAddr>().ok() != Some(new.ip) {
            continue;
        }
        let hostport = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
        let addrs: Vec<SocketAddr> = hostport
            .to_socket_addrs()
            .map(Iterator::collect)
            .unwrap_or_default();
        if addrs
            .iter()
            .any(|a| TcpStream::connect_timeout(a, Duration::from_secs(1)).is_ok())
        {
            return Err(usage(format!(
                "{url}, an old etcd member's address, still answers, and it is the --node-ip given ({}): two members would claim it. \
                 Stop that etcd first (`cpbackup restore --disable-etcd` on its host), or give this host another address; nothing was changed",
                new.ip
            )));
        }
    }
    Ok(())
}

/// What kubeadm's ClusterConfiguration in the snapshot says (defaults where it is absent).
#[derive(Debug, Default)]
struct ClusterConfig {
    control_plane_endpoint: Option<String>,
    dns_domain: Option<String>,
    service_subnet: Option<String>,
    cert_sans: Vec<String>,
}

fn cluster_configuration(snapshot: &Path, prefix: &str) -> ClusterConfig {
    read_cluster_configuration(snapshot, prefix).unwrap_or_else(|e| {
        tracing::warn!(error = %format!("{e:#}"), "kubeadm's ClusterConfiguration not read from the snapshot: the API server's names are kubeadm's defaults");
        ClusterConfig::default()
    })
}

fn read_cluster_configuration(snapshot: &Path, prefix: &str) -> anyhow::Result<ClusterConfig> {
    let file = std::fs::File::open(snapshot)?;
    // SAFETY: a private file of this restore; nothing writes it now.
    let map = unsafe { memmap2::Mmap::map(&file)? };
    let db = crate::snapshot::db::Db::open(&map)?;
    let ks = crate::snapshot::mvcc::keyspace(&db)?;
    let key = format!(
        "{}/configmaps/kube-system/kubeadm-config",
        prefix.trim_end_matches('/')
    );
    let live = ks
        .live
        .get(key.as_bytes())
        .context("no kube-system/kubeadm-config in the snapshot")?;
    let kv = crate::snapshot::mvcc::decode_kv(live.raw).map_err(anyhow::Error::msg)?;
    let decoder = crate::k8s::decode::Decoder::new(
        crate::k8s::schema::Schema::builtin()?,
        crate::k8s::encryption::Keyring::empty(),
    );
    let cm = decoder.decode(kv.key, kv.value)?;
    let text = cm.json["data"]["ClusterConfiguration"]
        .as_str()
        .context("kubeadm-config has no ClusterConfiguration")?;
    let v: serde_json::Value = serde_saphyr::from_str(text)?;
    let s = |p: &str| v.pointer(p).and_then(|x| x.as_str()).map(str::to_owned);
    Ok(ClusterConfig {
        control_plane_endpoint: s("/controlPlaneEndpoint").filter(|x| !x.is_empty()),
        dns_domain: s("/networking/dnsDomain"),
        service_subnet: s("/networking/serviceSubnet"),
        cert_sans: v
            .pointer("/apiServer/certSANs")
            .and_then(|x| x.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
    })
}

/// The first address of a service range (`10.96.0.0/12` → `10.96.0.1`): the `kubernetes`
/// service's ClusterIP.
fn service_ip(range: &str) -> Option<IpAddr> {
    let first = range.split(',').next()?.trim();
    let (net, _) = first.split_once('/')?;
    Some(match net.parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) => IpAddr::from((u32::from(v4).checked_add(1)?).to_be_bytes()),
        IpAddr::V6(v6) => IpAddr::from((u128::from(v6).checked_add(1)?).to_be_bytes()),
    })
}

fn san(s: &str) -> San {
    match s.parse::<IpAddr>() {
        Ok(ip) => San::Ip(ip),
        Err(_) => San::Dns(s.to_owned()),
    }
}

/// `want` plus what the old leaf named beyond the old host itself (names an operator added).
fn with_kept(want: Vec<San>, before: &[San], old: &OldHost) -> Vec<San> {
    let old_identity: BTreeSet<San> = old
        .addresses
        .iter()
        .chain(std::iter::once(&old.name))
        .map(|s| san(s))
        .collect();
    let mut all: BTreeSet<San> = want.into_iter().collect();
    all.extend(before.iter().filter(|s| !old_identity.contains(s)).cloned());
    all.into_iter().collect()
}

fn reissue_certificates(
    dir: &Beneath,
    old: &OldHost,
    new: &NewHost,
    config: &ClusterConfig,
    p: &mut Prepared,
) -> anyhow::Result<()> {
    let exists = |rel: &str| dir.read(rel, 1 << 20).is_ok();
    let loopback = [
        San::Ip("127.0.0.1".parse().expect("ip")),
        San::Ip("::1".parse().expect("ip")),
    ];
    // kubeadm: the node's name, localhost and its address, on the etcd server and peer leaves
    let mut etcd_names = vec![
        San::Dns(new.name.clone()),
        San::Dns("localhost".into()),
        San::Ip(new.ip),
    ];
    etcd_names.extend(loopback);
    let etcd_leaves = ["pki/etcd/server", "pki/etcd/peer"];
    if etcd_leaves.iter().any(|l| exists(&format!("{l}.crt"))) {
        let ca = certs::Authority::load(dir, "etcd/ca")?;
        for leaf in etcd_leaves.iter().filter(|l| exists(&format!("{l}.crt"))) {
            reissue_one(dir, &ca, "the etcd CA", leaf, etcd_names.clone(), old, p)?;
        }
    }
    if exists("pki/apiserver.crt") {
        let ca = certs::Authority::load(dir, "ca")?;
        let domain = config.dns_domain.as_deref().unwrap_or("cluster.local");
        let mut names = vec![
            San::Dns(new.name.clone()),
            San::Dns("kubernetes".into()),
            San::Dns("kubernetes.default".into()),
            San::Dns("kubernetes.default.svc".into()),
            San::Dns(format!("kubernetes.default.svc.{domain}")),
            San::Ip(new.ip),
        ];
        let range = old
            .service_range
            .as_deref()
            .or(config.service_subnet.as_deref())
            .unwrap_or("10.96.0.0/12");
        names.extend(service_ip(range).map(San::Ip));
        if let Some(cpe) = &config.control_plane_endpoint {
            let h = host_of(cpe);
            if !old.addresses.contains(h) {
                names.push(san(h));
            }
        }
        names.extend(config.cert_sans.iter().map(|s| san(s)));
        reissue_one(dir, &ca, "the cluster CA", "pki/apiserver", names, old, p)?;
    }
    Ok(())
}

fn reissue_one(
    dir: &Beneath,
    ca: &certs::Authority,
    ca_name: &str,
    leaf: &str,
    want: Vec<San>,
    old: &OldHost,
    p: &mut Prepared,
) -> anyhow::Result<()> {
    let (crt, key) = (format!("{leaf}.crt"), format!("{leaf}.key"));
    let before =
        certs::sans_in(&certs::read_text(dir, &crt)?).with_context(|| format!("reading {crt}"))?;
    let names = with_kept(want, &before, old);
    let r = certs::reissue(ca, dir, &crt, &key, &names)?;
    let list = |v: &[San]| {
        v.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    p.changes.push(format!(
        "{crt}: re-issued by {ca_name} with its own key, for one year: {} → {}",
        list(&r.before),
        list(&r.after)
    ));
    Ok(())
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
    let mut kubelet_ca = None;
    for conf in confs {
        let before = certs::read_text(dir, &conf)?;
        let mut after = before.clone();
        for a in old.addresses.iter().chain(std::iter::once(&old.name)) {
            after = rewrite::replace_on_server_lines(&after, a, &new_ip);
        }
        if conf == "kubelet.conf" && old.name != new.name {
            let ca = match kubelet_ca.take() {
                Some(ca) => ca,
                None => certs::Authority::load(dir, "ca")?,
            };
            let (cert, key) = certs::kubelet_client(&ca, &new.name)?;
            after = rewrite::kubelet_identity(&after, &old.name, &new.name, &cert, &key);
            kubelet_ca = Some(ca);
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
            after = etcd_manifest::with_flags(
                &after,
                &[
                    ("name", &new.name),
                    ("initial-cluster", &format!("{}={peer}", new.name)),
                ],
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

    #[test]
    fn hosts_of_urls() {
        assert_eq!(host_of("https://10.0.0.1:2379"), "10.0.0.1");
        assert_eq!(host_of("https://[fd00::1]:2380"), "fd00::1");
        assert_eq!(host_of("10.0.0.1:6443"), "10.0.0.1");
        assert_eq!(host_of("cp.example.com"), "cp.example.com");
        assert_eq!(host_of("fd00::1"), "fd00::1");
    }

    #[test]
    fn the_service_ip_is_the_first_of_the_range() {
        assert_eq!(
            service_ip("10.96.0.0/12"),
            Some("10.96.0.1".parse().unwrap())
        );
        assert_eq!(
            service_ip("fd00:10:96::/108,10.0.0.0/16"),
            Some("fd00:10:96::1".parse().unwrap())
        );
        assert_eq!(service_ip("nonsense"), None);
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
