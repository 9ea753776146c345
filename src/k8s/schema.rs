//! The protobuf schema of stored objects: Kubernetes 1.35's built-in types (compiled at build time
//! from the `.proto` files of the `k8s-rs-pb` crate, see `build.rs`), plus any `.proto` files the
//! user adds at run time with `--proto-path` (e.g. OpenShift's `route.openshift.io`), and the
//! lookup from a stored `apiVersion` + `kind` to its message.

use std::path::{Path, PathBuf};

use prost_reflect::{DescriptorPool, MessageDescriptor};

static BUILTIN: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/k8s-v1.35.fds"));

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
    #[error("no .proto files under {0}")]
    Empty(PathBuf),
    #[error("cannot read {dir}: {reason}")]
    Read { dir: PathBuf, reason: String },
}

/// Every message we can decode.
#[derive(Clone)]
pub struct Schema {
    pool: DescriptorPool,
}

impl Schema {
    /// The Kubernetes built-in types.
    pub fn builtin() -> Result<Self, SchemaError> {
        let pool =
            DescriptorPool::decode(BUILTIN).map_err(|e| SchemaError::Builtin(e.to_string()))?;
        Ok(Schema { pool })
    }

    /// Adds every `.proto` file under `dir` (but not under `vendor/`); they may import the
    /// built-in Kubernetes files (`k8s.io/api/…/generated.proto`, `k8s.io/apimachinery/…`).
    /// Returns how many files.
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
        let known = KnownFiles(self.pool.clone());
        let mut resolver = protox::file::ChainFileResolver::new();
        resolver.add(known);
        resolver.add(protox::file::IncludeFileResolver::new(dir.to_owned()));
        let mut compiler = protox::Compiler::with_file_resolver(resolver);
        compiler.include_imports(true);
        compiler.open_files(&files).map_err(|e| {
            compile_err(match e.file() {
                Some(file) => format!("{file}: {e}"),
                None => e.to_string(),
            })
        })?;
        let fds = compiler.file_descriptor_set();
        for file in fds.file {
            if self.pool.get_file_by_name(file.name()).is_none() {
                self.pool
                    .add_file_descriptor_proto(file)
                    .map_err(|e| compile_err(e.to_string()))?;
            }
        }
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
}
