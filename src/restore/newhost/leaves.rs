//! Which leaf certificates a new host needs re-issued, for which names: etcd's server and peer
//! (the node name, localhost, the address, loopback), the API server's (the node name, the
//! `kubernetes` service names, its IP, the address, the control-plane endpoint and extra
//! SANs), each keeping what else the old leaf named beyond the old host itself.

use std::collections::BTreeSet;
use std::net::IpAddr;

use anyhow::Context;

use super::certs::{self, San};
use super::cluster_config::{ClusterConfig, service_ip};
use super::old_host::{OldHost, host_of};
use super::{NewHost, Prepared};
use crate::beneath::Beneath;

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

pub(super) fn reissue_certificates(
    dir: &Beneath,
    old: &OldHost,
    new: &NewHost,
    config: &ClusterConfig,
    p: &mut Prepared,
) -> anyhow::Result<()> {
    let exists = |rel: &str| dir.open_nofollow(rel).is_ok();
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
