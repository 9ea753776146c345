//! The flags of a static pod manifest's command (kubeadm's `etcd.yaml`): kubeadm writes one
//! `- --flag=value` list item per line, which is all a restore needs (`--name`, `--data-dir`,
//! `--initial-advertise-peer-urls`, `--advertise-client-urls`). Not a YAML parser: a flag must
//! sit on its own list-item line to be seen.

use std::collections::BTreeMap;

/// `--flag=value` items of the manifest, by flag name (without dashes).
pub fn command_flags(manifest: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in manifest.lines() {
        let Some(item) = line.trim_start().strip_prefix("- ") else {
            continue;
        };
        let item = item.trim().trim_matches(|c| c == '"' || c == '\'');
        let Some(flag) = item.strip_prefix("--") else {
            continue;
        };
        if let Some((k, v)) = flag.split_once('=') {
            out.entry(k.to_owned()).or_insert_with(|| v.to_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeadm_style_flags() {
        let m = "spec:\n  containers:\n  - command:\n    - etcd\n    - --advertise-client-urls=https://10.0.0.5:2379\n    - --data-dir=/var/lib/etcd\n    - \"--name=cp-1\"\n    - --initial-cluster=cp-1=https://10.0.0.5:2380\n    image: registry.k8s.io/etcd:3.5.15-0\n";
        let f = command_flags(m);
        assert_eq!(f["name"], "cp-1");
        assert_eq!(f["data-dir"], "/var/lib/etcd");
        assert_eq!(f["initial-cluster"], "cp-1=https://10.0.0.5:2380");
        assert_eq!(f["advertise-client-urls"], "https://10.0.0.5:2379");
        assert!(!f.contains_key("image"));
    }
}
