//! Who the old host was, as the backup's own manifests (and its members' hashes) say: its
//! name and addresses, every old master, the etcd prefix and the service range; and the
//! refusal to take an address an old member still answers on.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::Context;

use super::NewHost;
use super::cleanup::OldMasters;
use crate::bundle::manifest::Manifest;
use crate::error::usage;
use crate::host::etcd_manifest;

/// What the bundle says the old host was.
pub(super) struct OldHost {
    pub(super) name: String,
    pub(super) addresses: BTreeSet<String>,
    /// Every old master.
    pub(super) masters: OldMasters,
    /// Client and peer URLs of every old member.
    pub(super) urls: Vec<String>,
    pub(super) etcd_prefix: String,
    pub(super) service_range: Option<String>,
}

pub(super) fn old_host(
    etcd_yaml: &str,
    api_yaml: Option<&str>,
    m: &Manifest,
) -> anyhow::Result<OldHost> {
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
pub(super) fn host_of(url: &str) -> &str {
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
pub(super) fn refuse_collision(old: &OldHost, new: &NewHost) -> anyhow::Result<()> {
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
}
