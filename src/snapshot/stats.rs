//! What a snapshot holds, in the terms people debugging a full etcd ask about: keys and bytes
//! per Kubernetes resource and per namespace, classified from the key path alone (values may be
//! encrypted). `/registry/…` (Kubernetes), `/kubernetes.io/…` and `/openshift.io/…` (OpenShift).

use std::collections::HashMap;

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

/// A key path split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPath<'a> {
    /// `registry`, `kubernetes.io`, `openshift.io`, or `None` for keys outside any API server.
    pub prefix: Option<&'a str>,
    /// e.g. `pods`, `services/specs`, `monitoring.coreos.com/prometheuses`, or the whole key.
    pub resource: String,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
}

/// Classifies a key (`/registry/pods/shop/web-1` → pods, shop, web-1).
pub fn classify(key: &str) -> KeyPath<'_> {
    let segs: Vec<&str> = key.trim_start_matches('/').split('/').collect();
    let Some(prefix) = segs.first().copied().filter(|p| PREFIXES.contains(p)) else {
        return KeyPath {
            prefix: None,
            resource: "(non-kubernetes)".into(),
            namespace: None,
            name: None,
        };
    };
    let rest = &segs[1..];
    if rest.is_empty() || rest[0].is_empty() {
        return KeyPath {
            prefix: Some(prefix),
            resource: "(none)".into(),
            namespace: None,
            name: None,
        };
    }
    let two = rest.len() >= 2
        && (TWO_SEGMENT.contains(&format!("{}/{}", rest[0], rest[1]).as_str())
            || rest[0].contains('.'));
    let (resource, tail) = if two {
        (format!("{}/{}", rest[0], rest[1]), &rest[2..])
    } else {
        (rest[0].to_owned(), &rest[1..])
    };
    let (namespace, name) = match tail {
        [] => (None, None),
        [name] => (None, Some(*name)),
        [.., ns, name] => (Some(*ns), Some(*name)),
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
    let mut res: HashMap<String, (u64, u64)> = HashMap::new();
    let mut ns: HashMap<String, (u64, u64)> = HashMap::new();
    for (key, value_len) in live {
        let k = String::from_utf8_lossy(key);
        let c = classify(&k);
        let bytes = (key.len() + value_len) as u64;
        let e = res.entry(c.resource.clone()).or_default();
        e.0 += 1;
        e.1 += bytes;
        let n = match (c.namespace, c.resource.as_str()) {
            (Some(n), _) => n.to_owned(),
            (None, "namespaces") => c.name.unwrap_or("(cluster)").to_owned(),
            _ => "(cluster)".into(),
        };
        let e = ns.entry(n).or_default();
        e.0 += 1;
        e.1 += bytes;
    }
    let sorted = |m: HashMap<String, (u64, u64)>| {
        let mut v: Vec<Group> = m
            .into_iter()
            .map(|(name, (keys, bytes))| Group { name, keys, bytes })
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

    fn rnn(k: &str) -> (String, Option<&str>, Option<&str>) {
        let c = classify(k);
        (c.resource, c.namespace, c.name)
    }

    #[test]
    fn kubernetes_and_openshift_key_paths() {
        assert_eq!(
            rnn("/registry/pods/shop/web-1"),
            ("pods".into(), Some("shop"), Some("web-1"))
        );
        assert_eq!(
            rnn("/registry/namespaces/shop"),
            ("namespaces".into(), None, Some("shop"))
        );
        assert_eq!(
            rnn("/registry/minions/node-1"),
            ("minions".into(), None, Some("node-1"))
        );
        assert_eq!(
            rnn("/registry/services/specs/shop/web"),
            ("services/specs".into(), Some("shop"), Some("web"))
        );
        assert_eq!(
            rnn("/registry/services/endpoints/shop/web"),
            ("services/endpoints".into(), Some("shop"), Some("web"))
        );
        assert_eq!(
            rnn("/registry/apiextensions.k8s.io/customresourcedefinitions/x.example.com"),
            (
                "apiextensions.k8s.io/customresourcedefinitions".into(),
                None,
                Some("x.example.com")
            )
        );
        assert_eq!(
            rnn("/registry/monitoring.coreos.com/prometheuses/mon/k8s"),
            (
                "monitoring.coreos.com/prometheuses".into(),
                Some("mon"),
                Some("k8s")
            )
        );
        assert_eq!(
            rnn("/kubernetes.io/secrets/openshift-etcd/x"),
            ("secrets".into(), Some("openshift-etcd"), Some("x"))
        );
        assert_eq!(
            rnn("/openshift.io/routes/shop/web"),
            ("routes".into(), Some("shop"), Some("web"))
        );
        assert_eq!(
            rnn("/openshift.io/oauth/accesstokens/sha256~x"),
            ("oauth/accesstokens".into(), None, Some("sha256~x"))
        );
        assert_eq!(rnn("compact_rev_key").0, "(non-kubernetes)");
        assert_eq!(
            rnn("/registry/ranges/serviceips"),
            ("ranges".into(), None, Some("serviceips"))
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
