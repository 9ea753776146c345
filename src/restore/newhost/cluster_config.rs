//! What kubeadm keeps in the snapshot's `kube-system` ConfigMaps: the ClusterConfiguration
//! (`kubeadm-config`: the API server's names — the control-plane endpoint, the DNS domain, the
//! service subnet and extra certificate SANs; kubeadm's defaults where it says nothing), and the
//! kubelet's configuration (`kubelet-config`, which `kubeadm join` writes to
//! `/var/lib/kubelet/config.yaml`).

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::snapshot::mvcc::Keyspace;

use anyhow::Context;

/// What kubeadm's ClusterConfiguration in the snapshot says (defaults where it is absent).
#[derive(Debug, Default)]
pub(super) struct ClusterConfig {
    pub(super) control_plane_endpoint: Option<String>,
    pub(super) dns_domain: Option<String>,
    pub(super) service_subnet: Option<String>,
    pub(super) cert_sans: Vec<String>,
    /// `kubelet-config`'s KubeletConfiguration, as text.
    pub(super) kubelet: Option<String>,
}

pub(super) fn cluster_configuration(ks: &Keyspace<'_>, prefix: &str) -> ClusterConfig {
    let mut maps = configmaps(ks, prefix, &["kubeadm-config", "kubelet-config"])
        .unwrap_or_else(|e| {
            tracing::warn!(error = %format!("{e:#}"), "the snapshot's kube-system ConfigMaps not read");
            BTreeMap::new()
        });
    let mut c = read_cluster_configuration(maps.remove("kubeadm-config")).unwrap_or_else(|e| {
        tracing::warn!(error = %format!("{e:#}"), "kubeadm's ClusterConfiguration not read from the snapshot: the API server's names are kubeadm's defaults");
        ClusterConfig::default()
    });
    c.kubelet = maps
        .remove("kubelet-config")
        .and_then(|d| d["kubelet"].as_str().map(str::to_owned));
    c
}

/// `data` of the ConfigMaps `kube-system/<name>` among the snapshot's live keys, by name.
fn configmaps(
    ks: &Keyspace<'_>,
    prefix: &str,
    names: &[&str],
) -> anyhow::Result<BTreeMap<String, serde_json::Value>> {
    let decoder = crate::k8s::decode::Decoder::new(
        crate::k8s::schema::Schema::builtin()?,
        crate::k8s::encryption::Keyring::empty(),
    );
    let mut out = BTreeMap::new();
    for name in names {
        let key = format!(
            "{}/configmaps/kube-system/{name}",
            prefix.trim_end_matches('/')
        );
        let Some(live) = ks.live.get(key.as_bytes()) else {
            continue;
        };
        let kv = crate::snapshot::mvcc::decode_kv(live.raw).map_err(anyhow::Error::msg)?;
        let mut cm = decoder.decode(kv.key, kv.value)?.json;
        out.insert((*name).to_owned(), cm["data"].take());
    }
    Ok(out)
}

fn read_cluster_configuration(data: Option<serde_json::Value>) -> anyhow::Result<ClusterConfig> {
    let data = data.context("no kube-system/kubeadm-config in the snapshot")?;
    let text = data["ClusterConfiguration"]
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
        kubelet: None,
    })
}

/// The first address of a service range (`10.96.0.0/12` → `10.96.0.1`): the `kubernetes`
/// service's ClusterIP.
pub(super) fn service_ip(range: &str) -> Option<IpAddr> {
    let first = range.split(',').next()?.trim();
    let (net, _) = first.split_once('/')?;
    Some(match net.parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) => IpAddr::from((u32::from(v4).checked_add(1)?).to_be_bytes()),
        IpAddr::V6(v6) => IpAddr::from((u128::from(v6).checked_add(1)?).to_be_bytes()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
