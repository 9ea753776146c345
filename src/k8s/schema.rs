//! The protobuf schema of stored objects: Kubernetes' built-in types, the union of every release
//! the `k8s-rs-pb` crate ships (v1.30 … v1.35, compiled at build time, see `build.rs`), plus any `.proto` files the
//! user adds at run time with `--proto-path` (e.g. OpenShift's `route.openshift.io`), and the
//! lookup from a stored `apiVersion` + `kind` to its message.

use std::path::{Path, PathBuf};

use prost_reflect::{DescriptorPool, MessageDescriptor};

use crate::k8s::schema_union::union;

static BUILTIN: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/k8s-union.fds"));
/// The releases `build.rs` joined, oldest first.
const RELEASES: &str = env!("CPBACKUP_K8S_RELEASES");

/// Why a schema could not be loaded.
#[allow(missing_docs)] // the #[error] messages say what each variant and field means
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("the built-in Kubernetes schema is damaged: {0}")]
    Builtin(String),
    #[error(
        "cannot compile the .proto files under {dir}: {reason}\n\
         (a file must import Kubernetes types by their upstream path, e.g. \
         \"k8s.io/api/core/v1/generated.proto\")"
    )]
    Compile { dir: PathBuf, reason: String },
    #[error(
        "the .proto files under {dir} disagree with the schema they extend (the same field \
         number with another name or type):\n  {conflicts}\n(give files of one source only, e.g. \
         one checkout of openshift/api, or one Kubernetes release per directory)"
    )]
    Conflict { dir: PathBuf, conflicts: String },
    #[error("no .proto files under {0}")]
    Empty(PathBuf),
    #[error("cannot read {dir}: {reason}")]
    Read { dir: PathBuf, reason: String },
}

/// Every message we can decode.
#[derive(Clone)]
pub struct Schema {
    pool: DescriptorPool,
    /// The files behind `pool`, to join more releases into.
    files: prost_types::FileDescriptorSet,
}

impl Schema {
    /// The Kubernetes releases the built-in schema covers, oldest first (`1.30`, …, `1.35`).
    pub fn releases() -> &'static [&'static str] {
        static LIST: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
        LIST.get_or_init(|| RELEASES.split(',').collect())
    }

    /// The newest release covered, as its minor version (`35`).
    pub fn newest_minor() -> u32 {
        Self::releases()
            .iter()
            .filter_map(|r| r.strip_prefix("1.")?.parse().ok())
            .max()
            .unwrap_or(0)
    }

    /// The Kubernetes built-in types.
    pub fn builtin() -> Result<Self, SchemaError> {
        let damaged = |e: String| SchemaError::Builtin(e);
        let files = <prost_types::FileDescriptorSet as prost::Message>::decode(BUILTIN)
            .map_err(|e| damaged(e.to_string()))?;
        let pool = DescriptorPool::from_file_descriptor_set(files.clone())
            .map_err(|e| damaged(e.to_string()))?;
        Ok(Schema { pool, files })
    }

    /// Adds every `.proto` file under `dir` (but not under `vendor/`) by the union rule: new
    /// files and messages are added, and a file or message the schema already has gains the
    /// fields it lacks (so a newer Kubernetes release's `k8s.io/api/…/generated.proto`, or
    /// several releases of OpenShift's files, each add their fields). They may import the
    /// built-in files (`k8s.io/api/…/generated.proto`, `k8s.io/apimachinery/…`), which `dir`
    /// may also hold in newer versions. Returns how many files.
    pub fn add_proto_dir(&mut self, dir: &Path) -> Result<usize, SchemaError> {
        let mut files = Vec::new();
        collect(dir, dir, &mut files).map_err(|e| SchemaError::Read {
            dir: dir.to_owned(),
            reason: e.to_string(),
        })?;
        files.sort();
        if files.is_empty() {
            return Err(SchemaError::Empty(dir.to_owned()));
        }
        let compile_err = |reason: String| SchemaError::Compile {
            dir: dir.to_owned(),
            reason,
        };
        // the directory's own copy of a file goes first: it may be a newer release
        let mut resolver = protox::file::ChainFileResolver::new();
        resolver.add(protox::file::IncludeFileResolver::new(dir.to_owned()));
        resolver.add(KnownFiles(self.pool.clone()));
        let mut compiler = protox::Compiler::with_file_resolver(resolver);
        compiler.include_imports(true);
        compiler.open_files(&files).map_err(|e| {
            compile_err(match e.file() {
                Some(file) => format!("{file}: {e}"),
                None => e.to_string(),
            })
        })?;
        let mut joined = self.files.clone();
        union(&mut joined, compiler.file_descriptor_set()).map_err(|conflicts| {
            let lines: Vec<String> = conflicts.iter().map(ToString::to_string).collect();
            SchemaError::Conflict {
                dir: dir.to_owned(),
                conflicts: lines.join("\n  "),
            }
        })?;
        self.pool = DescriptorPool::from_file_descriptor_set(joined.clone())
            .map_err(|e| compile_err(e.to_string()))?;
        self.files = joined;
        Ok(files.len())
    }

    /// The message a stored object of `api_version` (`v1`, `apps/v1`) and `kind` is encoded as.
    pub fn message_for(&self, api_version: &str, kind: &str) -> Option<MessageDescriptor> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        for package in packages(group, version) {
            if let Some(m) = self.pool.get_message_by_name(&format!("{package}.{kind}")) {
                return Some(m);
            }
        }
        // a group whose package we do not know by rule: any package ending in <label>.<version>
        let label = group.split('.').next().unwrap_or(group).replace('-', "_");
        let suffix = format!(".{label}.{version}");
        self.pool
            .all_messages()
            .find(|m| m.name() == kind && m.package_name().ends_with(&suffix))
    }
}

/// The protobuf packages an API group's types live in, most likely first.
fn packages(group: &str, version: &str) -> Vec<String> {
    let k8s = |pkg: &str| format!("k8s.io.api.{pkg}.{version}");
    match group {
        // meta.k8s.io types (Status, DeleteOptions, …) are also served as plain `v1`
        "" => vec![
            k8s("core"),
            format!("k8s.io.apimachinery.pkg.apis.meta.{version}"),
        ],
        "apiextensions.k8s.io" => vec![format!(
            "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.{version}"
        )],
        "apiregistration.k8s.io" => vec![format!(
            "k8s.io.kube_aggregator.pkg.apis.apiregistration.{version}"
        )],
        "meta.k8s.io" => vec![format!("k8s.io.apimachinery.pkg.apis.meta.{version}")],
        "rbac.authorization.k8s.io" => vec![k8s("rbac")],
        "flowcontrol.apiserver.k8s.io" => vec![k8s("flowcontrol")],
        "internal.apiserver.k8s.io" => vec![k8s("apiserverinternal")],
        "metrics.k8s.io" => vec![format!("k8s.io.metrics.pkg.apis.metrics.{version}")],
        g if g.ends_with(".openshift.io") => {
            let label = g.trim_end_matches(".openshift.io").replace('.', "_");
            vec![format!("github.com.openshift.api.{label}.{version}")]
        }
        g => vec![k8s(g.split('.').next().unwrap_or(g))],
    }
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            // Go trees carry copies of the Kubernetes files under vendor/: ours are authoritative
            if path.file_name().is_some_and(|n| n != "vendor") {
                collect(root, &path, out)?;
            }
        } else if path.extension().is_some_and(|e| e == "proto") {
            let rel = path.strip_prefix(root).unwrap_or(&path);
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(())
}

/// Resolves imports of files already in the pool (the built-in Kubernetes types).
struct KnownFiles(DescriptorPool);

impl protox::file::FileResolver for KnownFiles {
    fn open_file(&self, name: &str) -> Result<protox::file::File, protox::Error> {
        match self.0.get_file_by_name(name) {
            Some(f) => Ok(protox::file::File::from_file_descriptor_proto(
                f.file_descriptor_proto().clone(),
            )),
            None => Err(protox::Error::file_not_found(name)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_types_by_api_version_and_kind() {
        let s = Schema::builtin().unwrap();
        let cases = [
            ("v1", "Pod", "k8s.io.api.core.v1.Pod"),
            ("apps/v1", "Deployment", "k8s.io.api.apps.v1.Deployment"),
            (
                "rbac.authorization.k8s.io/v1",
                "RoleBinding",
                "k8s.io.api.rbac.v1.RoleBinding",
            ),
            (
                "apiextensions.k8s.io/v1",
                "CustomResourceDefinition",
                "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition",
            ),
            (
                "apiregistration.k8s.io/v1",
                "APIService",
                "k8s.io.kube_aggregator.pkg.apis.apiregistration.v1.APIService",
            ),
            (
                "flowcontrol.apiserver.k8s.io/v1",
                "FlowSchema",
                "k8s.io.api.flowcontrol.v1.FlowSchema",
            ),
            (
                "internal.apiserver.k8s.io/v1alpha1",
                "StorageVersion",
                "k8s.io.api.apiserverinternal.v1alpha1.StorageVersion",
            ),
        ];
        for (av, kind, want) in cases {
            let m = s
                .message_for(av, kind)
                .unwrap_or_else(|| panic!("{av} {kind}"));
            assert_eq!(m.full_name(), want);
        }
        assert!(s.message_for("route.openshift.io/v1", "Route").is_none());
        assert!(s.message_for("v1", "NoSuchKind").is_none());
    }

    #[test]
    fn a_proto_dir_importing_kubernetes_types_adds_its_messages() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("github.com/example/api/widget/v1");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(
            sub.join("generated.proto"),
            r#"syntax = "proto2";
package github.com.example.api.widget.v1;
import "k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto";
import "k8s.io/api/core/v1/generated.proto";
message Widget {
  optional k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta metadata = 1;
  optional k8s.io.api.core.v1.ObjectReference target = 2;
}
"#,
        )
        .unwrap();
        let mut s = Schema::builtin().unwrap();
        assert_eq!(s.add_proto_dir(dir.path()).unwrap(), 1);
        let m = s.message_for("widget.example.com/v1", "Widget").unwrap();
        assert_eq!(m.full_name(), "github.com.example.api.widget.v1.Widget");
        std::fs::write(sub.join("broken.proto"), "message {").unwrap();
        let mut s = Schema::builtin().unwrap();
        let err = s.add_proto_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("broken.proto"), "{err}");
    }

    fn write(dir: &Path, rel: &str, text: &str) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn proto_dirs_join_by_the_union_rule_and_conflicts_are_refused() {
        const WIDGET: &str = "github.com/example/api/widget/v1/generated.proto";
        let head = "syntax = \"proto2\";\npackage github.com.example.api.widget.v1;\n";
        let (old, new, bad) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        write(
            old.path(),
            WIDGET,
            &format!(
                "{head}message Widget {{ optional string a = 1; optional string gone = 2; }}\n"
            ),
        );
        write(
            new.path(),
            WIDGET,
            &format!(
                "{head}message Widget {{ optional string a = 1; optional string added = 3; }}\nmessage Gadget {{}}\n"
            ),
        );
        write(
            bad.path(),
            WIDGET,
            &format!("{head}message Widget {{ optional int64 a = 1; }}\n"),
        );
        let mut s = Schema::builtin().unwrap();
        s.add_proto_dir(new.path()).unwrap();
        s.add_proto_dir(old.path()).unwrap();
        let w = s.message_for("widget.example.com/v1", "Widget").unwrap();
        let names: Vec<String> = w.fields().map(|f| f.name().to_owned()).collect();
        assert_eq!(names, ["a", "gone", "added"]);
        assert!(s.message_for("widget.example.com/v1", "Gadget").is_some());
        let err = s.add_proto_dir(bad.path()).unwrap_err().to_string();
        assert!(
            err.contains("github.com.example.api.widget.v1.Widget field 1"),
            "{err}"
        );
        // the refused directory changed nothing
        assert_eq!(
            s.message_for("widget.example.com/v1", "Widget")
                .unwrap()
                .fields()
                .count(),
            3
        );
    }

    #[test]
    fn a_newer_kubernetes_file_adds_its_fields_to_the_builtin_messages() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "k8s.io/api/apps/v1/generated.proto",
            "syntax = \"proto2\";\npackage k8s.io.api.apps.v1;\n\
             message DeploymentSpec { optional int32 replicas = 1; optional string rolloutPolicy = 999; }\n",
        );
        let mut s = Schema::builtin().unwrap();
        s.add_proto_dir(dir.path()).unwrap();
        let spec = s
            .message_for("apps/v1", "Deployment")
            .unwrap()
            .get_field_by_name("spec")
            .unwrap();
        let prost_reflect::Kind::Message(spec) = spec.kind() else {
            panic!("spec is a message")
        };
        assert!(spec.get_field_by_name("rolloutPolicy").is_some());
        // every field 1.35 has is still there
        assert!(spec.get_field_by_name("strategy").is_some());
        assert!(s.message_for("apps/v1", "StatefulSet").is_some());
    }
}
