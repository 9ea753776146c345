//! The flags of a static pod manifest's command (kubeadm's `etcd.yaml`): kubeadm writes one
//! `- --flag=value` list item per line, which is all a restore needs (`--name`, `--data-dir`,
//! `--initial-advertise-peer-urls`, `--advertise-client-urls`). Not a YAML parser: a flag must
//! sit on its own list-item line to be seen. [`with_flags`] rewrites flags the same way, for
//! the manifest of a member that rejoins a restored cluster.

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

/// The manifest's first `image:` reference.
pub fn image(manifest: &str) -> Option<String> {
    let image = manifest
        .lines()
        .map(|l| l.trim_start())
        .find_map(|l| l.strip_prefix("- ").unwrap_or(l).strip_prefix("image:"))?
        .trim()
        .trim_matches(|c| c == '"' || c == '\'');
    (!image.is_empty()).then(|| image.to_owned())
}

/// The tag of the manifest's first `image:` (`registry.k8s.io/etcd:3.5.15-0` → `3.5.15-0`);
/// `None` for an image named by digest only.
pub fn image_tag(manifest: &str) -> Option<String> {
    let image = image(manifest)?;
    let image = image.split('@').next()?;
    let (_, tag) = image.rsplit_once(':')?;
    (!tag.contains('/') && !tag.is_empty()).then(|| tag.to_owned())
}

/// `(major, minor)` of a version such as `v1.31.2`, `3.5.15-0` or `3.4.23`.
pub fn minor_of(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.trim_start_matches('v').split(['.', '-', '+']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Refuses a value that could break out of a manifest's flag line (a newline, a quote, a
/// comment, a shell character): names and URLs that come from a cluster or a bundle.
pub fn plain_flag_value(v: &str) -> anyhow::Result<()> {
    match v
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || "\"'#`$\\".contains(*c))
    {
        Some(c) => anyhow::bail!("{v:?} holds {c:?} in a name or URL"),
        None => Ok(()),
    }
}

/// The manifest with each `(flag, value)` set: a flag's list-item line rewritten in place
/// (indentation and quoting kept), a missing flag added after the last flag line. Every other
/// byte is unchanged.
pub fn with_flags(manifest: &str, flags: &[(&str, &str)]) -> String {
    let mut lines: Vec<String> = manifest.lines().map(str::to_owned).collect();
    let mut last_flag = None;
    let mut seen = vec![false; flags.len()];
    for (i, line) in lines.iter_mut().enumerate() {
        let indent = &line[..line.len() - line.trim_start().len()];
        let Some(item) = line.trim_start().strip_prefix("- ") else {
            continue;
        };
        let quote = item
            .trim()
            .chars()
            .next()
            .filter(|c| *c == '"' || *c == '\'');
        let bare = item.trim().trim_matches(|c| c == '"' || c == '\'');
        let Some(flag) = bare.strip_prefix("--") else {
            continue;
        };
        last_flag = Some((i, indent.to_owned()));
        let name = flag.split_once('=').map_or(flag, |(k, _)| k);
        if let Some(j) = flags.iter().position(|(k, _)| *k == name) {
            let q = quote.map(String::from).unwrap_or_default();
            *line = format!("{indent}- {q}--{name}={}{q}", flags[j].1);
            seen[j] = true;
        }
    }
    if let Some((at, indent)) = last_flag {
        let added = flags
            .iter()
            .zip(&seen)
            .filter(|(_, s)| !**s)
            .map(|((k, v), _)| format!("{indent}- --{k}={v}"));
        let tail = lines.split_off(at + 1);
        lines.extend(added);
        lines.extend(tail);
    }
    let mut out = lines.join("\n");
    if manifest.ends_with('\n') {
        out.push('\n');
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

    #[test]
    fn flags_are_rewritten_in_place_or_added_after_the_last() {
        let m = "spec:\n  containers:\n  - command:\n    - etcd\n    - --name=cp-2\n    - \"--initial-cluster=cp-2=https://10.0.0.6:2380\"\n    - --data-dir=/var/lib/etcd\n    image: registry.k8s.io/etcd:3.5.15-0\n";
        let all = "cp-1=https://10.0.0.5:2380,cp-2=https://10.0.0.6:2380";
        let out = with_flags(
            m,
            &[
                ("initial-cluster", all),
                ("initial-cluster-state", "existing"),
            ],
        );
        assert_eq!(
            out,
            format!(
                "spec:\n  containers:\n  - command:\n    - etcd\n    - --name=cp-2\n    - \"--initial-cluster={all}\"\n    - --data-dir=/var/lib/etcd\n    - --initial-cluster-state=existing\n    image: registry.k8s.io/etcd:3.5.15-0\n"
            )
        );
        let f = command_flags(&out);
        assert_eq!(f["initial-cluster"], all);
        assert_eq!(f["initial-cluster-state"], "existing");
        assert_eq!(
            with_flags(&out, &[("initial-cluster-state", "existing")]),
            out
        );
    }

    #[test]
    fn image_tags_and_minors() {
        let m = "spec:\n  containers:\n  - image: registry.k8s.io/kube-apiserver:v1.31.2\n";
        assert_eq!(image_tag(m).as_deref(), Some("v1.31.2"));
        assert_eq!(minor_of("v1.31.2"), Some((1, 31)));
        assert_eq!(minor_of("3.5.15-0"), Some((3, 5)));
        assert_eq!(image_tag("  image: quay.io/x/etcd@sha256:abcd\n"), None);
        assert_eq!(image_tag("  image: localhost:5000/etcd\n"), None);
        assert_eq!(minor_of("latest"), None);
    }
}
