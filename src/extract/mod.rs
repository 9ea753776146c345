//! Namespace extraction, offline: from a snapshot's bytes to objects that re-apply cleanly.
//!
//! `select` picks the keys (one pass over the `key` bucket), `k8s::decode` turns values into
//! JSON (decrypting them when keys are given), `reapply` strips and fixes what the server set,
//! `deps` reports the cluster-scoped objects the namespace needs, `write` writes the result, and
//! `kubeapi::apply` applies it.

pub(crate) mod crd;
pub(crate) mod deps;
pub mod object;
pub mod reapply;
pub mod select;
pub mod version;
pub(crate) mod write;

use std::collections::HashSet;

use serde_json::Value;

use crate::k8s::decode::{Decoded, Decoder};
use crate::k8s::unknown::Unknown;
use crate::snapshot::db::Db;
use deps::Dependency;
use object::Object;
use reapply::{Options, Skipped};
use select::{Filter, Role};
use write::Undecoded;

/// What an extraction found.
#[derive(Debug)]
pub struct Extraction {
    /// The objects to write, in apply order.
    pub objects: Vec<Object>,
    /// Objects left out, and why (owned by a controller, auto-created, …).
    pub skipped: Vec<Skipped>,
    /// Values that could not be decoded, kept raw.
    pub undecoded: Vec<Undecoded>,
    /// The cluster-scoped objects the namespace needs.
    pub dependencies: Vec<Dependency>,
    /// Head revision of the snapshot.
    pub revision: i64,
    /// Everything else the user should know (retired API versions, mismatched namespaces, …).
    pub warnings: Vec<String>,
    /// The newest Kubernetes minor version the snapshot shows the cluster ran, and what said so.
    pub cluster_minor: Option<(u32, String)>,
}

/// An object written without fields the schema does not know.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Lossy {
    /// The etcd key.
    pub key: String,
    /// `deployment.apps/web`.
    pub object: String,
    /// Its protobuf message, the fields left out and how many more there were.
    #[serde(flatten)]
    pub unknown: Unknown,
}

impl Extraction {
    /// The objects that miss fields (written anyway, flagged).
    pub fn lossy(&self) -> Vec<Lossy> {
        self.objects
            .iter()
            .filter(|o| o.is_lossy())
            .map(|o| Lossy {
                key: o.key.clone(),
                object: o.display(),
                unknown: o.unknown.clone(),
            })
            .collect()
    }
}

/// Why a snapshot could not be read at all.
#[allow(missing_docs)] // the #[error] messages say what each variant and field means
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("not a readable etcd snapshot: {0}")]
    Snapshot(String),
}

/// API versions that newer clusters no longer serve: objects last written long ago keep them.
const RETIRED_VERSIONS: &[&str] = &[
    "extensions/v1beta1",
    "apps/v1beta1",
    "apps/v1beta2",
    "batch/v1beta1",
    "policy/v1beta1",
    "networking.k8s.io/v1beta1",
    "rbac.authorization.k8s.io/v1beta1",
    "storage.k8s.io/v1beta1",
    "apiextensions.k8s.io/v1beta1",
];

/// Extracts what `filter` selects from the snapshot `data`.
pub fn extract(
    data: &[u8],
    filter: &Filter,
    decoder: &Decoder,
    opts: &Options,
    with_cluster_deps: bool,
) -> Result<Extraction, ExtractError> {
    let db = Db::open(data).map_err(|e| ExtractError::Snapshot(e.to_string()))?;
    let scan = select::scan(&db, filter).map_err(|e| ExtractError::Snapshot(e.to_string()))?;
    let Selected {
        members,
        cluster,
        undecoded,
        mut warnings,
        cluster_minor,
    } = decode_all(&scan, filter, decoder);
    warnings.extend(members.iter().filter_map(retired));
    let Filter::Namespace(ns) = filter else {
        // a prefix dump is the objects as stored, in key order
        return Ok(Extraction {
            objects: members,
            skipped: Vec::new(),
            undecoded,
            dependencies: Vec::new(),
            revision: scan.revision,
            warnings,
            cluster_minor,
        });
    };
    let dependencies = deps::find(ns, &members, &cluster);
    let uids: HashSet<String> = members
        .iter()
        .filter_map(|o| o.uid().map(str::to_owned))
        .collect();
    let (mut objects, skipped) = reapply::prepare(members, opts);
    if with_cluster_deps {
        for i in dependencies.iter().filter_map(|d| d.found) {
            let mut o = cluster[i].clone();
            if !opts.raw {
                reapply::clean(&mut o, &uids, opts);
            }
            if let Some(to) = &opts.to_namespace {
                reapply::move_namespace_refs(&mut o, ns, to);
            }
            warnings.extend(retired(&o));
            objects.push(o);
        }
        reapply::sort_for_apply(&mut objects);
    }
    Ok(Extraction {
        objects,
        skipped,
        undecoded,
        dependencies,
        revision: scan.revision,
        warnings,
        cluster_minor,
    })
}

/// The selected keys, decoded.
struct Selected {
    /// The namespace's objects (or every object under the prefix).
    members: Vec<Object>,
    /// Cluster-scoped objects, for the dependency report.
    cluster: Vec<Object>,
    /// Values that could not be decoded, kept raw.
    undecoded: Vec<Undecoded>,
    warnings: Vec<String>,
    cluster_minor: Option<(u32, String)>,
}

fn decode_all(scan: &select::Scan<'_>, filter: &Filter, decoder: &Decoder) -> Selected {
    let mut d = Selected {
        members: Vec::new(),
        cluster: Vec::new(),
        undecoded: Vec::new(),
        warnings: Vec::new(),
        cluster_minor: None,
    };
    let mut nodes = 0;
    for (role, kv) in &scan.entries {
        // what says the cluster's release: every such key but the 17th Node on
        let mut source = version::source_of(kv.key);
        if source == Some(version::Source::Node) {
            nodes += 1;
            source = source.filter(|_| nodes <= version::MAX_NODES);
        }
        if *role == Role::Version && source.is_none() {
            continue;
        }
        // decoded once, for the release and (unless only a version source) as an object
        let decoded = decoder.decode(kv.key, kv.value);
        if let (Some(source), Ok(o)) = (source, &decoded) {
            let said = version::minor_from(source, &o.json);
            if said.as_ref().map(|s| s.0) > d.cluster_minor.as_ref().map(|s| s.0) {
                d.cluster_minor = said;
            }
        }
        if *role == Role::Version {
            continue;
        }
        let key = String::from_utf8_lossy(kv.key).into_owned();
        match decoded {
            Ok(Decoded { mut json, unknown }) => {
                // as the API server does on read: the object's version is the key's revision
                if let Some(meta) = json.get_mut("metadata").and_then(Value::as_object_mut) {
                    meta.insert(
                        "resourceVersion".into(),
                        Value::String(kv.mod_revision.to_string()),
                    );
                }
                let o = Object {
                    unknown,
                    ..Object::new(&key, json)
                };
                match (role, filter) {
                    (Role::Member, Filter::Namespace(ns)) if o.namespace() != Some(ns.as_str()) => {
                        d.warnings.push(format!(
                            "{key}: its key names namespace {ns} but the object says {:?}; left out",
                            o.namespace().unwrap_or("")
                        ));
                    }
                    (Role::Cluster, _) => d.cluster.push(o),
                    _ => d.members.push(o),
                }
            }
            Err(e) if *role == Role::Cluster => {
                d.warnings.push(format!(
                    "{key}: {e} (needed only for the dependency report)"
                ));
            }
            Err(e) => d.undecoded.push(Undecoded {
                key,
                reason: e.to_string(),
                value: kv.value.to_vec(),
            }),
        }
    }
    d
}

/// A warning for an object stored in an API version current clusters no longer serve.
fn retired(o: &Object) -> Option<String> {
    RETIRED_VERSIONS.contains(&o.api_version()).then(|| {
        format!(
            "{} is stored as {}, which current clusters do not serve; convert it before applying",
            o.display(),
            o.api_version()
        )
    })
}
