//! `cpbackup prune` on a local store and on S3 buckets with and without Object Lock.

use cpbackup_testkit as support;

use std::path::Path;
use std::process::Command;

use support::*;

/// Takes `n` backups (a write between each, so names differ) with `base` commands.
fn backups(dir: &Path, etcd: &Etcd, n: usize, mut base: impl FnMut() -> Command, stores: &[&str]) {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let id = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let (_, r) = keygen(dir, &format!("k{id}"));
    for i in 0..n {
        let i = format!("{id}-{i}");
        etcd.put(&format!("/registry/configmaps/shop/c{i}"), "{}");
        let mut c = base();
        etcd_backup(&mut c, &etcd.endpoint, &r);
        for s in stores {
            c.args(["--store", s]);
        }
        let o = run(c);
        assert!(o.status.success(), "{}", stderr(&o));
    }
}

fn rows(o: &std::process::Output) -> Vec<(String, String)> {
    let v: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(o)));
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap().to_owned(),
                r["backup"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn local_prune_dry_run_then_keep_last() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let etcd = Etcd::start(Version::V35, dir, "127.0.0.1", free_port(), None);
    let store = dir.join("store");
    let s = store.to_str().unwrap();
    backups(dir, &etcd, 3, || cpbackup(dir), &[s]);
    let prune = |extra: &[&str]| {
        let mut c = cpbackup(dir);
        c.args([
            "--output",
            "json",
            "prune",
            "--store",
            s,
            "--keep-last",
            "1",
        ])
        .args(extra);
        run(c)
    };
    let o = prune(&["--dry-run"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = rows(&o);
    assert_eq!(r.iter().filter(|(a, _)| a == "delete").count(), 2, "{r:?}");
    assert_eq!(
        files_under(&store)
            .iter()
            .filter(|f| f.ends_with(".cpb"))
            .count(),
        3,
        "dry run changes nothing"
    );
    let o = prune(&[]);
    let r = rows(&o);
    assert_eq!(r.iter().filter(|(a, _)| a == "deleted").count(), 2, "{r:?}");
    let kept: Vec<_> = r
        .iter()
        .filter(|(a, _)| a == "keep")
        .map(|(_, b)| b.clone())
        .collect();
    let left = files_under(&store);
    assert_eq!(left.len(), 2, "one bundle and its record: {left:?}");
    assert!(left[0].ends_with(&kept[0]), "{left:?} vs {kept:?}");
    // no rule: nothing goes
    let mut c = cpbackup(dir);
    c.args(["--output", "json", "prune", "--store", s]);
    assert!(rows(&run(c)).iter().all(|(a, _)| a == "keep"));
}

#[test]
fn s3_prune_keeps_locked_versions_and_deletes_unlocked_ones() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let moto = Moto::start(dir);
    moto.create_bucket("locked", true);
    moto.create_bucket("plain", false);
    let etcd = Etcd::start(Version::V35, dir, "127.0.0.1", free_port(), None);
    backups(dir, &etcd, 2, || moto.cpbackup(dir), &["s3://locked/p"]);
    backups(
        dir,
        &etcd,
        2,
        || {
            let mut c = moto.cpbackup(dir);
            c.env("CPBACKUP_ALLOW_MUTABLE", "true");
            c
        },
        &["s3://plain/p"],
    );

    let prune = |store: &str| {
        let mut c = moto.cpbackup(dir);
        c.args([
            "--output",
            "json",
            "prune",
            "--store",
            store,
            "--keep-last",
            "1",
        ]);
        run(c)
    };
    let o = prune("s3://locked/p");
    assert!(o.status.success(), "{}\n{}", stderr(&o), stdout(&o));
    let r = rows(&o);
    assert_eq!(r.iter().filter(|(a, _)| a == "locked").count(), 1, "{r:?}");
    let count = |bucket: &str| {
        moto.py(&format!(
            "print(len(s3.list_object_versions(Bucket='{bucket}').get('Versions', [])))"
        ))
        .trim()
        .to_owned()
    };
    assert_eq!(
        count("locked"),
        "4",
        "locked bundles and records are all still there"
    );

    let o = prune("s3://plain/p");
    let r = rows(&o);
    assert_eq!(
        r.iter().filter(|(a, _)| a == "deleted").count(),
        1,
        "{}",
        stdout(&o)
    );
    assert_eq!(
        count("plain"),
        "2",
        "the deleted backup's versions are gone, not hidden by delete markers"
    );
    let mut c = moto.cpbackup(dir);
    c.args(["list", "--output", "json", "--store", "s3://plain/p"]);
    let l: serde_json::Value = serde_json::from_slice(&run(c).stdout).unwrap();
    assert_eq!(l.as_array().unwrap().len(), 1);
    assert_eq!(l[0]["state"], "complete");
}
