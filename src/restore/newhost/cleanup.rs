//! What of the old masters the restored database must not keep when the cluster comes back on
//! new machines: their `masterleases` (the API server would advertise them as endpoints of the
//! `kubernetes` service), their Node objects and node Leases, and the `kubernetes`
//! Endpoints/EndpointSlice naming their addresses (the API server writes them again). Chosen
//! from the staged snapshot before anything changes, written with their values to a file in
//! the restore directory, then deleted offline (tombstones) before etcd starts.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::Context;
use base64::Engine;

use crate::snapshot::mvcc::Keyspace;

/// Who the old masters were.
#[derive(Debug, Clone, Default)]
pub struct OldMasters {
    /// Their node names (kubeadm names each etcd member after its node).
    pub names: BTreeSet<String>,
    /// Their addresses.
    pub addresses: BTreeSet<String>,
}

/// One key to delete, with why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Removal {
    /// The key (lossy UTF-8 for display; `key_base64` is exact).
    pub key: String,
    /// The exact key.
    pub key_base64: String,
    /// The value it held.
    pub value_base64: String,
    /// The revision that last wrote it.
    pub mod_revision: i64,
    /// Why it goes.
    pub reason: String,
}

/// The keys of the old masters among the snapshot's live keys `ks`, under the API server's
/// etcd `prefix` (`/registry`), except what names the new host (`keep_name`, `keep_address`).
pub fn select(
    ks: &Keyspace<'_>,
    prefix: &str,
    old: &OldMasters,
    keep_name: &str,
    keep_address: &str,
) -> Vec<Removal> {
    let p = prefix.trim_end_matches('/');
    let masterleases = format!("{p}/masterleases/");
    let leases = format!("{p}/leases/kube-node-lease/");
    let nodes = format!("{p}/minions/");
    let service = [
        format!("{p}/services/endpoints/default/kubernetes"),
        format!("{p}/endpointslices/default/kubernetes"),
    ];
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let mut out = Vec::new();
    for kv in ks.iter() {
        let Ok(key) = std::str::from_utf8(kv.key) else {
            continue;
        };
        let old_name = |rest: &str| old.names.contains(rest) && rest != keep_name;
        let reason = if let Some(ip) = key.strip_prefix(&masterleases) {
            (ip != keep_address).then(|| format!("an old master's API server lease ({ip})"))
        } else if let Some(n) = key.strip_prefix(&leases).filter(|n| old_name(n)) {
            Some(format!("the old master {n}'s node lease"))
        } else if let Some(n) = key.strip_prefix(&nodes).filter(|n| old_name(n)) {
            Some(format!("the old master {n}'s Node"))
        } else if service.iter().any(|s| s == key) {
            let names_old = old
                .addresses
                .iter()
                .filter(|a| a.as_str() != keep_address)
                .any(|a| memchr::memmem::find(kv.value, a.as_bytes()).is_some());
            names_old.then(|| {
                "the kubernetes service's endpoints at the old addresses (the API server writes them anew)"
                    .to_owned()
            })
        } else {
            None
        };
        if let Some(reason) = reason {
            out.push(Removal {
                key: key.to_owned(),
                key_base64: b64(kv.key),
                value_base64: b64(kv.value),
                mod_revision: kv.mod_revision,
                reason,
            });
        }
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out
}

/// Writes what will be removed (0600) to `path`, so nothing is lost: each value can be put
/// back with `base64 -d | etcdctl put KEY`.
pub fn save(path: &Path, removals: &[Removal]) -> anyhow::Result<()> {
    #[derive(serde::Serialize)]
    struct File<'a> {
        kind: &'static str,
        about: &'static str,
        removed: &'a [Removal],
    }
    let doc = File {
        kind: "cpbackup-removed-keys",
        about: "keys of the old control-plane hosts removed from the restored etcd before it started; \
                put one back with: echo VALUE_BASE64 | base64 -d | etcdctl put KEY",
        removed: removals,
    };
    let mut bytes = serde_json::to_vec_pretty(&doc)?;
    bytes.push(b'\n');
    crate::fsutil::write_atomically(path, &bytes, 0o600)
        .with_context(|| format!("writing {}", path.display()))
}
