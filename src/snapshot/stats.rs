//! What a snapshot holds, in the terms people debugging a full etcd ask about: keys and bytes
//! per Kubernetes resource and per namespace, classified from the key path alone (values may be
//! encrypted). `/registry/…` (Kubernetes), `/kubernetes.io/…` and `/openshift.io/…` (OpenShift).

use rustc_hash::FxHashMap as HashMap;

/// Storage prefixes of the API servers.
const PREFIXES: [&str; 3] = ["registry", "kubernetes.io", "openshift.io"];
/// Resource prefixes that span two path segments.
const TWO_SEGMENT: [&str; 6] = [
    "services/specs",
    "services/endpoints",
    "oauth/accesstokens",
    "oauth/authorizetokens",
    "oauth/clients",
    "oauth/clientauthorizations",
];

/// A key path split into its parts; every part borrows from the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPath<'a> {
    /// `registry`, `kubernetes.io`, `openshift.io`, or `None` for keys outside any API server.
    pub prefix: Option<&'a str>,
    /// e.g. `pods`, `services/specs`, `monitoring.coreos.com/prometheuses`.
    pub resource: &'a str,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
}

/// Classifies a key (`/registry/pods/shop/web-1` → pods, shop, web-1) without allocating.
pub fn classify(key: &str) -> KeyPath<'_> {
    let body = key.strip_prefix('/').unwrap_or(key);
    let (prefix, rest) = body.split_once('/').unwrap_or((body, ""));
    if !PREFIXES.contains(&prefix) {
        return KeyPath {
            prefix: None,
            resource: "(non-kubernetes)",
            namespace: None,
            name: None,
        };
    }
    if rest.is_empty() {
        return KeyPath {
            prefix: Some(prefix),
            resource: "(none)",
            namespace: None,
            name: None,
        };
    }
    let first_end = rest.find('/').unwrap_or(rest.len());
    let two_segment = TWO_SEGMENT
        .iter()
        .find(|t| {
            rest.starts_with(**t) && matches!(rest.as_bytes().get(t.len()), None | Some(b'/'))
        })
        .map(|t| t.len())
        .or_else(|| {
            // group/resource (custom resources, CRDs, APIServices): the group has a dot
            (rest[..first_end].contains('.') && first_end < rest.len()).then(|| {
                first_end
                    + 1
                    + rest[first_end + 1..]
                        .find('/')
                        .unwrap_or(rest.len() - first_end - 1)
            })
        });
    let resource_end = two_segment.unwrap_or(first_end);
    let resource = &rest[..resource_end];
    let tail = rest.get(resource_end + 1..).unwrap_or("");
    let (namespace, name) = match tail.rsplit_once('/') {
        _ if tail.is_empty() => (None, None),
        None => (None, Some(tail)),
        Some((before, name)) => (
            Some(before.rsplit('/').next().unwrap_or(before)),
            Some(name),
        ),
    };
    KeyPath {
        prefix: Some(prefix),
        resource,
        namespace,
        name,
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Group {
    pub name: String,
    pub keys: u64,
    /// Key and value bytes of the live entries.
    pub bytes: u64,
}

/// Live keys grouped by resource and by namespace, largest first.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Breakdown {
    pub by_resource: Vec<Group>,
    pub by_namespace: Vec<Group>,
}

pub fn breakdown<'a>(live: impl Iterator<Item = (&'a [u8], usize)>) -> Breakdown {
    let mut res: HashMap<&'a str, (u64, u64)> = HashMap::default();
    let mut ns: HashMap<&'a str, (u64, u64)> = HashMap::default();
    for (key, value_len) in live {
        let bytes = (key.len() + value_len) as u64;
        let (resource, namespace) = match std::str::from_utf8(key) {
            Ok(k) => {
                let c = classify(k);
                let n = match (c.namespace, c.resource) {
                    (Some(n), _) => n,
                    (None, "namespaces") => c.name.unwrap_or("(cluster)"),
                    _ => "(cluster)",
                };
                (c.resource, n)
            }
            Err(_) => ("(non-utf8)", "(cluster)"),
        };
        let e = res.entry(resource).or_default();
        e.0 += 1;
        e.1 += bytes;
        let e = ns.entry(namespace).or_default();
        e.0 += 1;
        e.1 += bytes;
    }
    let sorted = |m: HashMap<&str, (u64, u64)>| {
        let mut v: Vec<Group> = m
            .into_iter()
            .map(|(name, (keys, bytes))| Group {
                name: name.to_owned(),
                keys,
                bytes,
            })
            .collect();
        v.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.name.cmp(&b.name)));
        v
    };
    Breakdown {
        by_resource: sorted(res),
        by_namespace: sorted(ns),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rnn(k: &str) -> (&str, Option<&str>, Option<&str>) {
        let c = classify(k);
        (c.resource, c.namespace, c.name)
    }

    #[test]
    fn kubernetes_and_openshift_key_paths() {
        assert_eq!(
            rnn("/registry/pods/shop/web-1"),
            ("pods", Some("shop"), Some("web-1"))
        );
        assert_eq!(
            rnn("/registry/namespaces/shop"),
            ("namespaces", None, Some("shop"))
        );
        assert_eq!(
            rnn("/registry/minions/node-1"),
            ("minions", None, Some("node-1"))
        );
        assert_eq!(
            rnn("/registry/services/specs/shop/web"),
            ("services/specs", Some("shop"), Some("web"))
        );
        assert_eq!(
            rnn("/registry/services/endpoints/shop/web"),
            ("services/endpoints", Some("shop"), Some("web"))
        );
        assert_eq!(
            rnn("/registry/apiextensions.k8s.io/customresourcedefinitions/x.example.com"),
            (
                "apiextensions.k8s.io/customresourcedefinitions",
                None,
                Some("x.example.com")
            )
        );
        assert_eq!(
            rnn("/registry/monitoring.coreos.com/prometheuses/mon/k8s"),
            (
                "monitoring.coreos.com/prometheuses",
                Some("mon"),
                Some("k8s")
            )
        );
        assert_eq!(
            rnn("/kubernetes.io/secrets/openshift-etcd/x"),
            ("secrets", Some("openshift-etcd"), Some("x"))
        );
        assert_eq!(
            rnn("/openshift.io/routes/shop/web"),
            ("routes", Some("shop"), Some("web"))
        );
        assert_eq!(
            rnn("/openshift.io/oauth/accesstokens/sha256~x"),
            ("oauth/accesstokens", None, Some("sha256~x"))
        );
        assert_eq!(rnn("compact_rev_key").0, "(non-kubernetes)");
        assert_eq!(
            rnn("/registry/ranges/serviceips"),
            ("ranges", None, Some("serviceips"))
        );
    }

    #[test]
    fn breakdown_counts_and_sorts() {
        let keys: Vec<(&[u8], usize)> = vec![
            (b"/registry/pods/shop/a", 100),
            (b"/registry/pods/shop/b", 100),
            (b"/registry/configmaps/billing/c", 10),
            (b"/registry/namespaces/shop", 5),
        ];
        let b = breakdown(keys.into_iter());
        assert_eq!(b.by_resource[0].name, "pods");
        assert_eq!(b.by_resource[0].keys, 2);
        assert_eq!(b.by_namespace[0].name, "shop");
        assert_eq!(
            b.by_namespace[0].keys, 3,
            "the namespace object counts for its namespace"
        );
    }
}
