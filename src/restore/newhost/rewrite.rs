//! The text of the bundle's static pod manifests and kubeconfigs rewritten for a new host: the
//! old host's addresses replaced where they stand as whole addresses, etcd's member name and
//! `--initial-cluster` set, `server:` lines that name the old host pointed at the new one, the
//! kubelet's identity replaced. Each rewrite keeps every other byte, and what changed is shown
//! line by line (secret values never printed).

/// Whether `c` can be part of an address or a host name (so a match must not touch it).
fn address_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '.' || c == ':' || c == '-' || c == '_'
}

/// `text` with every whole occurrence of `old` replaced by `new`: `10.0.0.1` is replaced in
/// `https://10.0.0.1:2379` and `10.0.0.1:6443`, never inside `10.0.0.12` or `110.0.0.1`.
pub fn replace_address(text: &str, old: &str, new: &str) -> String {
    if old.is_empty() {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(old) {
        let before = rest[..i].chars().last().or_else(|| out.chars().last());
        let after = rest[i + old.len()..].chars().next();
        // a port after an address is fine (`10.0.0.1:2379`), a longer address is not
        let after_ok = match after {
            None => true,
            Some(':') => !old.contains(':'),
            Some(c) => !address_char(c),
        };
        let before_ok = before.is_none_or(|c| !address_char(c));
        out.push_str(&rest[..i]);
        if before_ok && after_ok {
            out.push_str(new);
        } else {
            out.push_str(old);
        }
        rest = &rest[i + old.len()..];
    }
    out.push_str(rest);
    out
}

/// `text` with `old` replaced on `server:` lines only (kubeconfigs).
pub fn replace_on_server_lines(text: &str, old: &str, new: &str) -> String {
    map_lines(text, |l| {
        if l.trim_start().starts_with("server:") {
            replace_address(l, old, new)
        } else {
            l.to_owned()
        }
    })
}

/// The kubelet's kubeconfig for `node`: the user and context named `system:node:<node>`, its
/// client certificate and key inline (a fresh host has no rotated certificate file yet).
pub fn kubelet_identity(text: &str, old_node: &str, node: &str, cert: &str, key: &str) -> String {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let renamed = text.replace(
        &format!("system:node:{old_node}"),
        &format!("system:node:{node}"),
    );
    map_lines(&renamed, |l| {
        let indent = &l[..l.len() - l.trim_start().len()];
        let t = l.trim_start();
        if t.starts_with("client-certificate:") || t.starts_with("client-certificate-data:") {
            format!("{indent}client-certificate-data: {}", b64(cert))
        } else if t.starts_with("client-key:") || t.starts_with("client-key-data:") {
            format!("{indent}client-key-data: {}", b64(key))
        } else {
            l.to_owned()
        }
    })
}

fn map_lines(text: &str, f: impl Fn(&str) -> String) -> String {
    let mut out: String = text.lines().map(|l| f(l) + "\n").collect();
    if !text.ends_with('\n') {
        out.pop();
    }
    out
}

/// One changed line of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineChange {
    /// The line before (secrets shown by size only).
    pub before: String,
    /// The line after.
    pub after: String,
}

/// The lines that differ between `before` and `after` (rewrites keep the line count; when it
/// differs, the whole file is shown as replaced).
pub fn diff(before: &str, after: &str) -> Vec<LineChange> {
    let (b, a): (Vec<&str>, Vec<&str>) = (before.lines().collect(), after.lines().collect());
    if b.len() != a.len() {
        return vec![LineChange {
            before: format!("({} lines)", b.len()),
            after: format!("({} lines)", a.len()),
        }];
    }
    b.iter()
        .zip(&a)
        .filter(|(x, y)| x != y)
        .map(|(x, y)| LineChange {
            before: shown(x),
            after: shown(y),
        })
        .collect()
}

/// A line as the plan shows it: inline certificate and key data by size only.
fn shown(line: &str) -> String {
    let t = line.trim();
    match t.split_once("-data:") {
        Some((k, v)) if !v.trim().is_empty() => {
            format!("{k}-data: <{} bytes, not shown>", v.trim().len())
        }
        _ => t.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        // Manifests and kubeconfigs come from a bundle anyone with the recipient could write.
        #[test]
        fn any_text_is_rewritten_without_panic_and_only_where_the_address_stands(
            text in "\\PC{0,200}", old in "[0-9.:a-f]{1,12}", new in "[0-9.]{1,15}"
        ) {
            let out = replace_address(&text, &old, &new);
            if !text.contains(old.as_str()) {
                prop_assert_eq!(&out, &text);
            }
            let _ = replace_on_server_lines(&text, &old, &new);
            let _ = diff(&text, &out);
            let _ = kubelet_identity(&text, &old, "n", "c", "k");
        }
    }

    #[test]
    fn only_whole_addresses_are_replaced() {
        let t = "- --advertise-client-urls=https://10.0.0.1:2379\n- --x=10.0.0.12,110.0.0.1,10.0.0.1\nhost: 10.0.0.1\n";
        assert_eq!(
            replace_address(t, "10.0.0.1", "10.0.3.7"),
            "- --advertise-client-urls=https://10.0.3.7:2379\n- --x=10.0.0.12,110.0.0.1,10.0.3.7\nhost: 10.0.3.7\n"
        );
        assert_eq!(
            replace_address("[fd00::1]:2379 fd00::10", "fd00::1", "fd00::9"),
            "[fd00::9]:2379 fd00::10"
        );
        assert_eq!(replace_address("cp-10", "cp-1", "new"), "cp-10");
    }

    #[test]
    fn kubeconfigs_change_on_server_lines_only() {
        let t = "    server: https://10.0.0.1:6443\n  name: 10.0.0.1\n";
        assert_eq!(
            replace_on_server_lines(t, "10.0.0.1", "10.0.3.7"),
            "    server: https://10.0.3.7:6443\n  name: 10.0.0.1\n"
        );
    }

    #[test]
    fn the_kubelet_gets_its_new_name_and_inline_credentials_never_shown() {
        let t = "contexts:\n- context:\n    user: system:node:cp-0\n  name: system:node:cp-0@kubernetes\nusers:\n- name: system:node:cp-0\n  user:\n    client-certificate: /var/lib/kubelet/pki/kubelet-client-current.pem\n    client-key: /var/lib/kubelet/pki/kubelet-client-current.pem\n";
        let out = kubelet_identity(t, "cp-0", "cp-new-0", "CERT", "KEY");
        assert!(out.contains("user: system:node:cp-new-0\n"));
        assert!(out.contains("    client-certificate-data: Q0VSVA==\n"));
        assert!(out.contains("    client-key-data: S0VZ\n"));
        assert!(!out.contains("cp-0@") && !out.contains("/var/lib/kubelet"));
        let d = diff(t, &out);
        assert_eq!(d.len(), 5);
        assert!(d.iter().all(|c| !c.after.contains("S0VZ")), "{d:?}");
        assert_eq!(d[4].after, "client-key-data: <4 bytes, not shown>");
    }
}
