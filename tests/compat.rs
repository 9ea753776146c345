//! Bundles written by the last release before zstd (commit 3ab8ad1: gzip members, no
//! `compression` key in the manifest or the record), kept in `tests/fixtures/pre-zstd` with
//! what that release itself answered about them (`make.sh` there wrote both, once). This
//! release must verify, inspect, extract, export and restore them exactly as it did: a user's
//! oldest locked backups are the ones a bad day may need.

use cpbackup_testkit as support;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};
use support::*;

fn fixtures(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/pre-zstd/{kind}"))
}

/// A copy of one fixture's store and key in a fresh directory (a checkout's files are 0644;
/// the identity is made 0600 as a real one is).
struct Old {
    _t: tempfile::TempDir,
    dir: PathBuf,
    store: PathBuf,
    key: PathBuf,
    src: PathBuf,
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            fs::copy(e.path(), &dest).unwrap();
        }
    }
}

fn old(kind: &str) -> Old {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().to_path_buf();
    let src = fixtures(kind);
    let store = dir.join("store");
    copy_tree(&src.join("store"), &store);
    let key = dir.join("key");
    fs::copy(src.join("key"), &key).unwrap();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    Old {
        _t: t,
        dir,
        store,
        key,
        src,
    }
}

impl Old {
    /// `cpbackup ARGS --store S --identity K --latest`.
    fn cmd(&self, args: &[&str]) -> std::process::Command {
        let mut c = cpbackup(&self.dir);
        c.args(args)
            .arg("--store")
            .arg(&self.store)
            .arg("--identity")
            .arg(&self.key)
            .arg("--latest");
        c
    }

    fn ok(&self, args: &[&str]) -> std::process::Output {
        let o = run(self.cmd(args));
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        o
    }
}

/// Every file under `dir` (relative path → content).
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    files_under(dir)
        .into_iter()
        .filter(|p| dir.join(p).is_file())
        .map(|p| {
            let data = fs::read(dir.join(&p)).unwrap();
            (p, data)
        })
        .collect()
}

#[test]
fn an_old_gzip_bundle_lists_and_verifies() {
    let o = old("kubeadm");
    let mut c = cpbackup(&o.dir);
    c.args(["list", "--output", "json", "--store"])
        .arg(&o.store);
    let l = json(&run(c));
    let l = l.as_array().unwrap();
    assert_eq!(l.len(), 1, "{l:?}");
    assert_eq!(l[0]["state"], "complete", "{}", l[0]);
    assert_eq!(l[0]["record"]["cluster"], "compat");
    assert!(
        l[0]["record"].get("compression").is_none(),
        "written before the field existed: {}",
        l[0]["record"]
    );

    let v = json(&o.ok(&["--output", "json", "verify"]));
    conforms("verify", &v);
    assert_eq!(v["kind"], "VerifyReport");
    assert_eq!(v["ok"], true);
    let d = &v["details"];
    assert_eq!(d["snapshot"]["trailer"], "valid");
    assert_eq!(d["manifest"]["cluster"], "compat");
    assert_eq!(
        d["manifest"]["compression"], "gzip",
        "an old manifest names no codec, and reads as gzip"
    );
    // The bundle really is what that release wrote: gzip, under age.
    let bundle = files_under(&o.store)
        .into_iter()
        .find(|p| p.ends_with(".cpb"))
        .unwrap();
    let out = std::process::Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(&o.key)
        .arg(o.store.join(bundle))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(&out.stdout[..2], &[0x1f, 0x8b], "gzip magic");
}

/// Every field the old release printed is printed alike (new fields may be added: the output
/// contract allows it).
fn assert_superset(old: &Value, new: &Value, at: &str) {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            for (k, v) in o {
                let there = n
                    .get(k)
                    .unwrap_or_else(|| panic!("{at}.{k} is gone: {new}"));
                assert_superset(v, there, &format!("{at}.{k}"));
            }
        }
        (Value::Array(o), Value::Array(n)) => {
            assert_eq!(o.len(), n.len(), "{at}: {old} vs {new}");
            for (i, (a, b)) in o.iter().zip(n).enumerate() {
                assert_superset(a, b, &format!("{at}[{i}]"));
            }
        }
        _ => assert_eq!(old, new, "{at}"),
    }
}

#[test]
fn an_old_bundle_inspects_as_the_old_release_did() {
    let o = old("kubeadm");
    let then: Value =
        serde_json::from_slice(&fs::read(o.src.join("inspect.json")).unwrap()).unwrap();
    let now = json(&o.ok(&["--output", "json", "inspect", "--by", "namespace"]));
    assert_superset(&then, &now, "inspect");
    assert!(
        now.to_string().contains("\"shop\""),
        "the namespace the fixture wrote: {now}"
    );
}

#[test]
fn an_old_bundle_extracts_the_same_files() {
    let o = old("kubeadm");
    // A namespace of JSON objects, and real protobuf objects by key prefix (they all name a
    // controller, which `--namespace` leaves out).
    let mut runs = vec![(
        "shop".to_owned(),
        vec!["--namespace".to_owned(), "shop".into()],
    )];
    for res in [
        "pods",
        "secrets",
        "configmaps",
        "services",
        "deployments",
        "cronjobs",
    ] {
        runs.push((
            format!("billing-system/{res}"),
            vec![
                "--prefix".into(),
                format!("/registry/{res}/billing-system/"),
            ],
        ));
    }
    for (ns, how) in runs {
        let out = o.dir.join(format!("extract-{ns}"));
        let mut c = o.cmd(&["extract"]);
        c.args(&how).arg("--out").arg(&out);
        let r = run(c);
        assert!(r.status.success(), "{}", stderr(&r));
        let then = files(&o.src.join(format!("extract-{ns}")));
        assert!(!then.is_empty(), "the fixture extracted {ns}");
        let now = files(&out);
        assert_eq!(
            now.keys().collect::<Vec<_>>(),
            then.keys().collect::<Vec<_>>(),
            "{ns}: the same files"
        );
        for (name, data) in &then {
            assert!(
                now[name] == *data,
                "{ns}/{name} differs:\n--- then\n{}\n--- now\n{}",
                String::from_utf8_lossy(data),
                String::from_utf8_lossy(&now[name])
            );
        }
    }
}

#[test]
fn an_old_openshift_bundle_exports_the_same_files() {
    let o = old("openshift");
    let out = o.dir.join("export");
    let mut c = o.cmd(&["export-openshift"]);
    c.arg("--out").arg(&out);
    let r = run(c);
    assert!(r.status.success(), "{}", stderr(&r));
    let mut now = Vec::new();
    for (name, data) in files(&out) {
        if name.starts_with("snapshot_") {
            now.push(format!("snapshot {}", hex::encode(Sha256::digest(&data))));
        } else if name.starts_with("static_kuberesources_") {
            let mut members = Vec::new();
            let gz = flate2::read::GzDecoder::new(&data[..]);
            let mut tar = tar::Archive::new(gz);
            for e in tar.entries().unwrap() {
                let mut e = e.unwrap();
                let path = e.path().unwrap().to_string_lossy().into_owned();
                let mode = e.header().mode().unwrap();
                let kind = e.header().entry_type().as_byte() as char;
                let mut content = Vec::new();
                std::io::Read::read_to_end(&mut e, &mut content).unwrap();
                members.push(format!(
                    "member {path} {mode:#o} {kind} {}",
                    hex::encode(Sha256::digest(&content))
                ));
            }
            members.sort();
            now.extend(members);
        }
    }
    let then: Vec<String> = fs::read_to_string(o.src.join("export.txt"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(then.len() > 3, "{then:?}");
    assert_eq!(now, then);
}

/// The kubeadm master of the fixture, again: same manifests, etcd on 127.1.0.1:2379 (the
/// address `make.sh` used; no other test binds it), with data written since.
#[test]
fn an_old_bundle_restores_the_whole_node() {
    let o = old("kubeadm");
    let root = o.dir.join("root");
    let k = root.join("etc/kubernetes");
    // A kubeadm node, then the fixture's own etcd manifest (its address) and a newer service
    // account key than the bundle's, which the restore must put back.
    fake_kubeadm_node(&root, 2379, 2380);
    fs::copy(o.src.join("etcd.yaml"), k.join("manifests/etcd.yaml")).unwrap();
    fs::write(k.join("pki/sa.key"), "a newer service account key\n").unwrap();
    let ep = "http://127.1.0.1:2379";
    let _kubelet = FakeKubelet::start(&root, Version::V35);
    wait_for_key(Version::V35, ep, "/nothing", None);
    etcdctl(Version::V35, ep, &["put", "/registry/written-later", "x"]);

    let mut c = o.cmd(&["--host-root", root.to_str().unwrap(), "restore", "--yes"]);
    c.arg("--etcdutl")
        .arg(Version::V35.bin("etcdutl"))
        .args(["--wait-timeout", "60"]);
    let r = run(c);
    assert!(r.status.success(), "{}\n{}", stdout(&r), stderr(&r));
    wait_for_key(Version::V35, ep, "/registry/written-later", None);

    let got = etcdctl(Version::V35, ep, &["get", "--prefix", "/", "-w", "json"]);
    let got: Value = serde_json::from_slice(&got.stdout).unwrap();
    let b64 = |v: &Value| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .unwrap()
    };
    let mut now: Vec<String> = got["kvs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kv| {
            format!(
                "{} {}",
                String::from_utf8(b64(&kv["key"])).unwrap(),
                hex::encode(Sha256::digest(b64(&kv["value"])))
            )
        })
        .collect();
    now.sort();
    let then: Vec<String> = fs::read_to_string(o.src.join("keys.txt"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(then.len() > 300, "{}", then.len());
    assert_eq!(
        now, then,
        "etcd serves every key and value of the backup, and only those"
    );
    assert_eq!(
        fs::read_to_string(k.join("pki/sa.key")).unwrap(),
        "the service account key\n",
        "the node's files came back from the bundle"
    );
}
