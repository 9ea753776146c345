//! The offline snapshot reader cross-checked against real etcd 3.4 and 3.5: the live key/value
//! set equals `etcdctl get --prefix ""`, and revision, total keys, size and hash equal
//! `etcdutl snapshot status` (3.4: `etcdctl snapshot status`). Then `cpbackup inspect` on bare
//! files, data-dir copies, bundles and broken files.

use cpbackup_testkit as support;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;

use base64::Engine;
use cpbackup::snapshot::{db::Db, mvcc};
use support::*;

fn b64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

/// A history with everything the reader must get right.
fn build_history(etcd: &Etcd) {
    etcd.seed("/registry/configmaps/shop/cm-", 3000, 300); // multi-level B+tree
    etcd.put("/registry/secrets/shop/overwritten", "v1");
    etcd.put("/registry/secrets/shop/overwritten", "v2");
    etcd.put("/registry/secrets/shop/deleted", "gone soon");
    assert!(
        etcd.ctl(&["del", "/registry/secrets/shop/deleted"])
            .output()
            .unwrap()
            .status
            .success()
    );
    let big = "B".repeat(20_000); // larger than a page: overflow pages
    etcd.put("/registry/configmaps/shop/big", &big);
    let rev = etcd.revision();
    assert!(
        etcd.ctl(&["compact", &rev.to_string()])
            .output()
            .unwrap()
            .status
            .success()
    );
    etcd.put("/registry/secrets/shop/overwritten", "v3-after-compaction");
    assert!(
        etcd.ctl(&["del", "--prefix", "/registry/configmaps/shop/cm-29"])
            .output()
            .unwrap()
            .status
            .success()
    );
    let lease = etcd.ctl(&["lease", "grant", "3600"]).output().unwrap();
    let id = String::from_utf8_lossy(&lease.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned();
    assert!(
        etcd.ctl(&["put", "--lease", &id, "/registry/events/shop/e1", "event"])
            .output()
            .unwrap()
            .status
            .success()
    );
    etcd.put("/registry/namespaces/billing", "{}");
}

fn live_from_etcd(etcd: &Etcd) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let out = etcd
        .ctl(&["get", "", "--prefix", "-w", "json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["kvs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kv| {
            (
                b64(kv["key"].as_str().unwrap()),
                kv.get("value")
                    .and_then(|x| x.as_str())
                    .map(b64)
                    .unwrap_or_default(),
            )
        })
        .collect()
}

fn status(version: Version, snap: &Path) -> serde_json::Value {
    let out = match version {
        Version::V35 => Command::new(version.bin("etcdutl"))
            .args(["snapshot", "status", "-w", "json"])
            .arg(snap)
            .output(),
        Version::V34 => Command::new(version.bin("etcdctl"))
            .env("ETCDCTL_API", "3")
            .args(["snapshot", "status", "-w", "json"])
            .arg(snap)
            .output(),
    }
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn cross_check(version: Version) {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let etcd = Etcd::start(version, dir, "127.0.0.1", free_port(), None);
    build_history(&etcd);
    let snap = dir.join("snap.db");
    let o = etcd.ctl(&["snapshot", "save"]).arg(&snap).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let expected = live_from_etcd(&etcd);

    let data = fs::read(&snap).unwrap();
    let db = Db::open(&data).unwrap();
    let ks = mvcc::keyspace(&db).unwrap();
    let ours: BTreeMap<Vec<u8>, Vec<u8>> = ks
        .iter()
        .map(|kv| (kv.key.to_vec(), kv.value.to_vec()))
        .collect();
    assert_eq!(ours.len(), expected.len());
    assert!(
        ours == expected,
        "live key/value set differs from etcdctl get"
    );
    assert!(ks.compact_revision > 0, "compaction recorded");
    assert!(
        ks.revisions as usize > ours.len(),
        "history after compaction is kept"
    );

    let mut c = cpbackup(dir);
    c.args(["inspect", "--output", "json"]).arg(&snap);
    let o = run(c);
    assert!(o.status.success(), "{}", stderr(&o));
    let ins: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let st = status(version, &snap);
    assert_eq!(ins["revision"], st["revision"]);
    assert_eq!(ins["total_keys"], st["totalKey"]);
    assert_eq!(ins["total_size"], st["totalSize"]);
    assert_eq!(
        u32::from_str_radix(ins["hash"].as_str().unwrap(), 16).unwrap() as u64,
        st["hash"].as_u64().unwrap()
    );
    assert_eq!(ins["hash_trailer"], "valid");
    assert_eq!(ins["live_keys"], expected.len());
    assert_eq!(ins["revision"], etcd.revision());
    let shop = ins["by_namespace"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "shop")
        .unwrap();
    assert_eq!(
        shop["keys"].as_u64().unwrap() as usize,
        expected
            .keys()
            .filter(|k| k.starts_with(b"/registry/configmaps/shop/")
                || k.starts_with(b"/registry/secrets/shop/")
                || k.starts_with(b"/registry/events/shop/"))
            .count()
    );
}

#[test]
fn reader_matches_etcd_3_5() {
    cross_check(Version::V35);
}

#[test]
fn reader_matches_etcd_3_4() {
    cross_check(Version::V34);
}

#[test]
fn inspect_a_bundle_a_data_dir_copy_and_broken_files() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let etcd = Etcd::start(Version::V35, dir, "127.0.0.1", free_port(), None);
    etcd.seed("/registry/pods/shop/p-", 300, 200);
    etcd.seed("/kubernetes.io/secrets/billing/s-", 100, 200);
    let (key, r) = keygen(dir, "k");
    let store = dir.join("store");
    let mut c = cpbackup(dir);
    c.args([
        "backup",
        "--static-pods",
        "none",
        "--etcd-endpoint",
        &etcd.endpoint,
        "--recipient",
        &r,
        "--store",
    ])
    .arg(&store);
    assert!(run(c).status.success());

    // straight from the store, decrypting as it streams
    let mut c = cpbackup(dir);
    c.args(["inspect", "--latest", "--by", "namespace", "--identity"])
        .arg(&key)
        .arg("--store")
        .arg(&store);
    let o = run(c);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stdout(&o);
    assert!(
        s.contains("NAMESPACE") && s.contains("shop") && s.contains("billing"),
        "{s}"
    );
    assert!(s.contains("trailer valid"), "{s}");

    // a copied data directory has no trailer
    let snap = dir.join("s.db");
    assert!(
        etcd.ctl(&["snapshot", "save"])
            .arg(&snap)
            .output()
            .unwrap()
            .status
            .success()
    );
    let restored = dir.join("restored");
    assert!(
        Command::new(Version::V35.bin("etcdutl"))
            .args(["snapshot", "restore"])
            .arg(&snap)
            .arg("--data-dir")
            .arg(&restored)
            .output()
            .unwrap()
            .status
            .success()
    );
    let mut c = cpbackup(dir);
    c.args(["inspect", "--output", "json"])
        .arg(restored.join("member/snap/db"));
    let v: serde_json::Value = serde_json::from_slice(&run(c).stdout).unwrap();
    assert_eq!(v["hash_trailer"], "absent");
    assert_eq!(v["live_keys"], 400);

    // broken files: clear error, exit 1, no panic
    let data = fs::read(&snap).unwrap();
    for (name, bytes) in [
        ("truncated.db", data[..data.len() / 2].to_vec()),
        ("junk.db", b"definitely not bbolt".repeat(500)),
        ("empty.db", Vec::new()),
    ] {
        let p = dir.join(name);
        fs::write(&p, &bytes).unwrap();
        let mut c = cpbackup(dir);
        c.arg("inspect").arg(&p);
        let o = run(c);
        assert_eq!(o.status.code(), Some(1), "{name}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("not a readable etcd snapshot"),
            "{name}: {}",
            stderr(&o)
        );
    }
    // a flipped byte in the image: the trailer says so
    let mut flipped = data.clone();
    let at = data.len() - 100;
    flipped[at] ^= 1;
    let p = dir.join("flipped.db");
    fs::write(&p, &flipped).unwrap();
    let mut c = cpbackup(dir);
    c.args(["inspect", "--output", "json"]).arg(&p);
    let v: serde_json::Value = serde_json::from_slice(&run(c).stdout).unwrap();
    assert_eq!(v["hash_trailer"], "invalid");
}
