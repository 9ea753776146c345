//! Builds the Kubernetes protobuf schema that `extract` decodes stored objects with.
//!
//! The `.proto` files come from the `k8s-rs-pb` crate's sources, every Kubernetes release it ships
//! (v1.30 … v1.35), joined into one schema (`src/k8s/schema_union.rs`): each message has the
//! fields of every release, so objects written by any of them decode whole. That crate is
//! listed as a dependency only so that Cargo locks and downloads it; it is never compiled (its
//! generated Rust takes minutes to build and we need only the schema). Here we find its sources
//! with `cargo metadata`, compile the files with protox (pure Rust, no protoc), put back the
//! upstream package names (`k8s.io.api.core.v1`, which the crate shortened to `api.core.v1`), so
//! that OpenShift's `.proto` files given with `--proto-path` can import them, and embed the
//! resulting FileDescriptorSet. `CPBACKUP_K8S_PROTO_DIR` points at such a directory instead (of
//! `v1_NN` release directories, or one release; offline and vendored builds).

use std::path::{Path, PathBuf};
use std::process::Command;

use prost::Message;

#[path = "src/k8s/schema_union.rs"]
#[allow(dead_code)]
mod schema_union;

const CRATE: &str = "k8s-rs-pb";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/k8s/schema_union.rs");
    println!("cargo:rerun-if-env-changed=CPBACKUP_K8S_PROTO_DIR");
    let root = match std::env::var_os("CPBACKUP_K8S_PROTO_DIR") {
        Some(d) => PathBuf::from(d),
        None => crate_dir().join("src"),
    };
    let mut releases = releases(&root);
    assert!(
        !releases.is_empty(),
        "no Kubernetes releases (v1_NN directories of .proto files) under {} \
         (set CPBACKUP_K8S_PROTO_DIR to the k8s-rs-pb src directory)",
        root.display()
    );
    // the newest release is the base: its definitions win, older ones add what it lacks
    releases.sort_by_key(|(minor, _)| std::cmp::Reverse(*minor));
    let mut union: Option<prost_types::FileDescriptorSet> = None;
    for (minor, dir) in &releases {
        let fds = compile(dir);
        match union.as_mut() {
            None => union = Some(fds),
            Some(base) => schema_union::union(base, fds).unwrap_or_else(|conflicts| {
                let lines: Vec<String> = conflicts.iter().map(|c| format!("  {c}")).collect();
                panic!(
                    "Kubernetes v1.{minor} conflicts with a newer release; the union schema \
                     cannot hold both:\n{}",
                    lines.join("\n")
                )
            }),
        }
    }
    let covered: Vec<String> = releases
        .iter()
        .rev()
        .map(|(m, _)| format!("1.{m}"))
        .collect();
    println!(
        "cargo:rustc-env=CPBACKUP_K8S_RELEASES={}",
        covered.join(",")
    );
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap()).join("k8s-union.fds");
    std::fs::write(&out, union.unwrap().encode_to_vec()).expect("write the descriptor set");
}

/// The `v1_NN` directories under `root` (minor, path); `root` itself when it is one release.
fn releases(root: &Path) -> Vec<(u32, PathBuf)> {
    let minor = |p: &Path| {
        p.file_name()?
            .to_str()?
            .strip_prefix("v1_")?
            .parse::<u32>()
            .ok()
    };
    if let Some(m) = minor(root) {
        return vec![(m, root.to_owned())];
    }
    let entries = std::fs::read_dir(root).unwrap_or_else(|e| panic!("{}: {e}", root.display()));
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .filter_map(|p| minor(&p).map(|m| (m, p)))
        .collect()
}

/// One release's `.proto` files, compiled, with upstream names.
fn compile(dir: &Path) -> prost_types::FileDescriptorSet {
    let mut files = Vec::new();
    collect_protos(dir, dir, &mut files);
    files.sort();
    assert!(!files.is_empty(), "no .proto files under {}", dir.display());
    let mut fds = protox::Compiler::new([dir])
        .expect("protox include path")
        .include_imports(true)
        .include_source_info(false)
        .open_files(&files)
        .unwrap_or_else(|e| panic!("compiling the .proto files of {}: {e}", dir.display()))
        .file_descriptor_set();
    for file in &mut fds.file {
        upstream_names(file);
    }
    fds
}

/// Where Cargo unpacked the `k8s-rs-pb` sources.
fn crate_dir() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").unwrap()).join("Cargo.toml");
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--locked",
            "--manifest-path",
        ])
        .arg(&manifest)
        .output()
        .expect("run cargo metadata");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&output.stdout).expect("metadata JSON");
    let path = meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == CRATE)
        .and_then(|p| p["manifest_path"].as_str())
        .unwrap_or_else(|| panic!("{CRATE} is not in the dependency graph"));
    Path::new(path).parent().unwrap().to_path_buf()
}

fn collect_protos(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_protos(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "proto") {
            let rel = path.strip_prefix(root).unwrap().to_string_lossy();
            // test-only API group of apimachinery: not a served type
            if !rel.contains("testapigroup") {
                out.push(rel.replace('\\', "/"));
            }
        }
    }
}

/// `api/core/v1/generated.proto` → `k8s.io/api/core/v1/generated.proto`, `.api.core.v1.Pod` →
/// `.k8s.io.api.core.v1.Pod`: the names every other Kubernetes `.proto` file uses.
fn upstream_names(file: &mut prost_types::FileDescriptorProto) {
    let prefix_path = |s: &mut String| {
        if !s.starts_with("k8s.io/") && !s.starts_with("google/") {
            *s = format!("k8s.io/{s}");
        }
    };
    if let Some(name) = file.name.as_mut() {
        prefix_path(name);
    }
    file.dependency.iter_mut().for_each(prefix_path);
    if let Some(package) = file.package.as_mut() {
        *package = format!("k8s.io.{package}");
    }
    for message in &mut file.message_type {
        message_names(message);
    }
}

fn message_names(message: &mut prost_types::DescriptorProto) {
    for field in &mut message.field {
        if let Some(t) = field.type_name.as_mut()
            && !t.starts_with(".k8s.io.")
            && !t.starts_with(".google.")
        {
            *t = format!(".k8s.io{t}");
        }
    }
    for nested in &mut message.nested_type {
        message_names(nested);
    }
}
