//! Which keys of a snapshot an extraction reads: one pass over the `key` bucket in revision
//! order that keeps, per key, only the newest revision of the keys we want (a namespace's keys,
//! its Namespace object and the cluster-scoped kinds it may depend on, or a key prefix).
//! Nothing else is decoded or copied. The walk runs on every core (see [`scan`]).

use rustc_hash::FxHashMap as HashMap;

use crate::snapshot::db::{BucketRoot, Db, DbError};
use crate::snapshot::mvcc::{self, KeyValue, MvccError};
use crate::snapshot::stats;

/// What to extract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// A namespace: its objects, its Namespace object, and the cluster-scoped objects it may need.
    Namespace(String),
    /// Every key under an etcd key prefix.
    Prefix(String),
}

/// Cluster-scoped storage resources a namespace's objects can depend on.
pub const CLUSTER_DEPENDENCIES: &[&str] = &[
    "persistentvolumes",
    "apiextensions.k8s.io/customresourcedefinitions",
    "clusterrolebindings",
    "clusterroles",
    "storageclasses",
    "priorityclasses",
    "ingressclasses",
    "runtimeclasses",
    "mutatingwebhookconfigurations",
    "validatingwebhookconfigurations",
    "security.openshift.io/securitycontextconstraints",
];

/// Where a wanted key belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// In the namespace (by its key; confirmed later from `metadata.namespace`), or under the prefix.
    Member,
    /// The Namespace object itself.
    Namespace,
    /// A cluster-scoped object that may be a dependency.
    Cluster,
    /// An object that says which Kubernetes release the cluster ran (see `extract::version`).
    Version,
}

/// The newest revision of every wanted key.
pub struct Scan<'a> {
    /// Every live key selected, and why.
    pub entries: Vec<(Role, KeyValue<'a>)>,
    /// Head revision of the snapshot.
    pub revision: i64,
}

/// Whether a key is wanted, and as what. In namespace mode every key's path is classified once:
/// the namespace's keys, its Namespace object, and cluster-scoped kinds it may depend on.
fn role(filter: &Filter, key: &[u8]) -> Option<Role> {
    wanted_role(filter, key).or_else(|| super::version::source_of(key).map(|_| Role::Version))
}

fn wanted_role(filter: &Filter, key: &[u8]) -> Option<Role> {
    match filter {
        Filter::Prefix(p) => key.starts_with(p.as_bytes()).then_some(Role::Member),
        Filter::Namespace(ns) => {
            let path = stats::classify(std::str::from_utf8(key).ok()?);
            path.prefix?;
            match path.namespace {
                Some(n) if n == ns => Some(Role::Member),
                Some(_) => None,
                None if path.resource == "namespaces" && path.name == Some(ns.as_str()) => {
                    Some(Role::Namespace)
                }
                None => CLUSTER_DEPENDENCIES
                    .contains(&path.resource)
                    .then_some(Role::Cluster),
            }
        }
    }
}

/// A wanted key's change: `Some((role, encoded KeyValue))` is a put, `None` a deletion.
type Event<'a> = (&'a [u8], Option<(Role, &'a [u8])>);

/// What one thread saw in its run of the `key` bucket, in revision order.
#[derive(Default)]
struct Part<'a> {
    events: Vec<Event<'a>>,
    last_revision: i64,
    entries: u64,
}

fn scan_part<'a>(
    db: &Db<'a>,
    roots: &[BucketRoot<'a>],
    filter: &Filter,
) -> Result<Part<'a>, MvccError> {
    let mut part = Part::default();
    let mut failure = None;
    for root in roots {
        db.for_each(*root, |k, v, _| {
            let index = part.entries;
            part.entries += 1;
            let Some(rev) = mvcc::parse_revision(k) else {
                failure = Some(MvccError::BadRevision {
                    index,
                    len: k.len(),
                });
                return Err(DbError::BadBucket("key".into()));
            };
            part.last_revision = rev.main;
            if v.is_empty() {
                // written by `etcdutl snapshot restore --bump-revision`: not a key
                return Ok(());
            }
            let kv = match mvcc::decode_kv(v) {
                Ok(kv) => kv,
                Err(reason) => {
                    failure = Some(MvccError::BadKeyValue {
                        main: rev.main,
                        reason,
                    });
                    return Err(DbError::BadBucket("key".into()));
                }
            };
            if let Some(role) = role(filter, kv.key) {
                let put = (!rev.tombstone).then_some((role, v));
                part.events.push((kv.key, put));
            }
            Ok(())
        })
        .map_err(|e| failure.take().unwrap_or(MvccError::Db(e)))?;
    }
    Ok(part)
}

/// Reads the wanted keys at the snapshot's head revision. The `key` bucket is walked by one
/// thread per core, each over runs of subtrees; their findings are replayed in key order.
pub fn scan<'a>(db: &Db<'a>, filter: &Filter) -> Result<Scan<'a>, MvccError> {
    let bucket = db.bucket(b"key")?.ok_or(MvccError::NoKeyBucket)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runs = db.split(bucket, threads * 4)?;
    let parts: Vec<Result<Part<'a>, MvccError>> = if runs.len() == 1 {
        vec![scan_part(db, &runs[0], filter)]
    } else {
        // thread t takes runs t, t + threads, …; results are put back in run order
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let runs = &runs;
                    s.spawn(move || {
                        runs.iter()
                            .enumerate()
                            .filter(|(i, _)| i % threads == t)
                            .map(|(i, r)| (i, scan_part(db, r, filter)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            let mut all: Vec<(usize, Result<Part<'a>, MvccError>)> = Vec::new();
            for h in handles {
                match h.join() {
                    Ok(done) => all.extend(done),
                    // never a silent gap: a reader that died fails the whole scan
                    Err(_) => all.push((
                        usize::MAX,
                        Err(MvccError::Db(DbError::BadBucket(
                            "key (a reader thread failed)".into(),
                        ))),
                    )),
                }
            }
            all.sort_by_key(|(i, _)| *i);
            all.into_iter().map(|(_, p)| p).collect()
        })
    };
    let mut wanted: HashMap<&'a [u8], (Role, &'a [u8])> = HashMap::default();
    let mut revision = 0i64;
    for part in parts {
        let part = part?;
        for (key, put) in part.events {
            match put {
                Some(entry) => {
                    wanted.insert(key, entry);
                }
                None => {
                    wanted.remove(key);
                }
            }
        }
        if part.entries > 0 {
            revision = part.last_revision;
        }
    }
    let mut entries: Vec<(Role, KeyValue<'a>)> = wanted
        .into_values()
        .filter_map(|(role, raw)| mvcc::decode_kv(raw).ok().map(|kv| (role, kv)))
        .collect();
    entries.sort_by(|a, b| a.1.key.cmp(b.1.key));
    Ok(Scan { entries, revision })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_by_key() {
        let ns = Filter::Namespace("shop".into());
        let r = |k: &str| role(&ns, k.as_bytes());
        assert_eq!(r("/registry/pods/shop/web-1"), Some(Role::Member));
        assert_eq!(r("/registry/services/specs/shop/web"), Some(Role::Member));
        assert_eq!(
            r("/registry/example.com/widgets/shop/w1"),
            Some(Role::Member)
        );
        assert_eq!(r("/kubernetes.io/secrets/shop/s"), Some(Role::Member));
        assert_eq!(r("/openshift.io/routes/shop/web"), Some(Role::Member));
        assert_eq!(r("/registry/namespaces/shop"), Some(Role::Namespace));
        assert_eq!(r("/registry/pods/shopping/web-1"), None);
        // a cluster-scoped object named like the namespace is a dependency candidate, not a member
        assert_eq!(r("/registry/clusterroles/shop"), Some(Role::Cluster));
        assert_eq!(r("/other/pods/shop/x"), None);
        assert_eq!(r("/registry/persistentvolumes/pv-1"), Some(Role::Cluster));
        assert_eq!(
            r("/registry/apiextensions.k8s.io/customresourcedefinitions/widgets.example.com"),
            Some(Role::Cluster)
        );
        assert_eq!(r("/registry/pods/other/x"), None);
        let p = Filter::Prefix("/registry/configmaps/".into());
        assert_eq!(role(&p, b"/registry/configmaps/a/b"), Some(Role::Member));
        assert_eq!(role(&p, b"/registry/secrets/a/b"), None);
        assert_eq!(role(&p, b"/registry/minions/cp-0"), Some(Role::Version));
        assert_eq!(r("/registry/minions/cp-0"), Some(Role::Version));
    }
}
