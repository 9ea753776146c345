//! `cpbackup backup` against real etcd members (3.4 and 3.5, mTLS), checked with the upstream
//! tools an operator would use on a bad day: the age CLI, GNU tar and etcdutl/etcdctl.

use cpbackup_testkit as support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use support::*;

/// Decrypts with the age CLI and unpacks with GNU tar into `out`; returns `tar -tv` lines.
fn age_and_tar(bundle: &Path, key: &Path, out: &Path) -> String {
    fs::create_dir_all(out).unwrap();
    let plain = out.with_extension("tar.zst");
    let st = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(key)
        .arg("-o")
        .arg(&plain)
        .arg(bundle)
        .status()
        .unwrap();
    assert!(st.success(), "age CLI could not decrypt the bundle");
    let list = Command::new("tar")
        .arg("--zstd")
        .arg("-tvf")
        .arg(&plain)
        .output()
        .unwrap();
    assert!(
        list.status.success(),
        "GNU tar could not list: {}",
        stderr(&list)
    );
    let x = Command::new("tar")
        .arg("--zstd")
        .arg("-xpf")
        .arg(&plain)
        .arg("-C")
        .arg(out)
        .output()
        .unwrap();
    assert!(
        x.status.success(),
        "GNU tar could not extract: {}",
        stderr(&x)
    );
    assert!(
        Command::new("zstd")
            .args(["-q", "-t"])
            .arg(&plain)
            .status()
            .unwrap()
            .success(),
        "zstd -t rejects the stream"
    );
    stdout(&list)
}

fn only_bundle(store: &Path) -> std::path::PathBuf {
    let files = files_under(store);
    let b: Vec<_> = files.iter().filter(|f| f.ends_with(".cpb")).collect();
    assert_eq!(b.len(), 1, "expected one bundle in {files:?}");
    store.join(b[0])
}

#[test]
fn openshift_backup_over_mtls_from_etcd35_is_readable_by_upstream_tools() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let ip = unique_loopback_ip();
    let pki = Pki::new(&dir.join("pki"), &[&ip]);
    let etcd = Etcd::start(Version::V35, dir, &ip, 2379, Some(&pki));
    etcd.seed("/registry/configmaps/shop/cm-", 300, 400);
    let rev = etcd.revision();
    let root = dir.join("host");
    fake_openshift_root(&root, "master-0.example.com", &ip, &pki, 3);
    let (k1, r1) = keygen(dir, "ops.key");
    let (k2, r2) = keygen(dir, "offline.key");
    let (s1, s2) = (dir.join("store1"), dir.join("store2"));

    let mut c = cpbackup(dir);
    c.arg("--host-root").arg(&root).args([
        "--output",
        "json",
        "backup",
        "--recipient",
        &r1,
        "--recipient",
        &r2,
    ]);
    c.arg("--store").arg(&s1).arg("--store").arg(&s2);
    let o = run(c);
    assert!(o.status.success(), "backup failed: {}", stderr(&o));
    let rep = json(&o);
    assert_eq!(rep["platform"], "openshift");
    assert_eq!(rep["etcd_revision"], rev);
    assert_eq!(
        rep["etcd_endpoint"],
        format!("https://{ip}:2379"),
        "the local member from NODE_<name>_IP"
    );
    assert!(
        rep["stores"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["ok"] == true)
    );
    let name = rep["name"].as_str().unwrap().to_owned();
    assert!(
        name.contains("/master-0.example.com/") && name.ends_with(&format!("-rev{rev}.cpb")),
        "{name}"
    );

    // list sees a complete backup in both stores, without any key
    for s in [&s1, &s2] {
        let mut c = cpbackup(dir);
        c.args(["list", "--output", "json", "--store"]).arg(s);
        let l = json(&run(c));
        assert_eq!(l.as_array().unwrap().len(), 1);
        assert_eq!(l[0]["state"], "complete");
        assert_eq!(l[0]["record"]["etcd_revision"], rev);
    }
    // both recipients can verify
    for k in [&k1, &k2] {
        let mut c = cpbackup(dir);
        c.args(["verify", "--latest", "--identity"])
            .arg(k)
            .arg("--store")
            .arg(&s1);
        let o = run(c);
        assert!(o.status.success(), "verify failed: {}", stderr(&o));
        assert!(stdout(&o).contains("OK "), "{}", stdout(&o));
    }
    let bundle = only_bundle(&s1);
    assert_eq!(
        fs::metadata(&bundle).unwrap().permissions().mode() & 0o777,
        0o400,
        "a published bundle is read-only"
    );
    assert_eq!(
        fs::metadata(format!("{}.json", bundle.display()))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    let out = dir.join("unpacked");
    let listing = age_and_tar(&bundle, &k2, &out);
    for want in [
        "etcd/snapshot.db",
        "static-pod-resources/kube-apiserver-pod-3/secrets/encryption-config/encryption-config",
        "static-pod-resources/etcd-pod-3/secrets/serving-cert/tls.key",
        "manifests/kube-scheduler-pod.yaml",
        "cpbackup/manifest.json",
    ] {
        assert!(listing.contains(want), "{want} missing from:\n{listing}");
    }
    assert!(
        !listing.contains("-pod-4"),
        "only the revision named in the manifests is taken:\n{listing}"
    );
    assert!(
        !listing.contains("etcd-certs"),
        "unrevisioned cert dirs are not part of the resources"
    );
    let key_line = listing
        .lines()
        .find(|l| l.contains("etcd-pod-3/secrets/serving-cert/tls.key"))
        .unwrap();
    assert!(key_line.starts_with("-rw-------"), "mode kept: {key_line}");
    let link = out.join("static-pod-resources/etcd-pod-3/configmaps/config/outside-link");
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink(),
        "symlink stored as a link"
    );
    assert_eq!(fs::read_link(&link).unwrap(), Path::new("/etc/passwd"));
    assert_eq!(
        fs::read_to_string(
            out.join("static-pod-resources/etcd-pod-3/configmaps/config/config.yaml")
        )
        .unwrap(),
        "rev: 3\n"
    );

    // upstream etcdutl accepts the snapshot unchanged, hash check included
    let snap = out.join("etcd/snapshot.db");
    let st = Command::new(Version::V35.bin("etcdutl"))
        .args(["snapshot", "status", "-w", "json"])
        .arg(&snap)
        .output()
        .unwrap();
    assert!(st.status.success(), "{}", stderr(&st));
    let st: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(st["revision"], rev);
    let r = Command::new(Version::V35.bin("etcdutl"))
        .args(["snapshot", "restore"])
        .arg(&snap)
        .arg("--data-dir")
        .arg(dir.join("restored"))
        .output()
        .unwrap();
    assert!(
        r.status.success(),
        "etcdutl snapshot restore refused it: {}",
        stderr(&r)
    );
    let m: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join("cpbackup/manifest.json")).unwrap()).unwrap();
    assert_eq!(m["node"], "master-0.example.com");
    assert_eq!(m["static_pod_revisions"]["etcd"], 3);
    assert_eq!(m["forced"], false);

    // OpenShift compatibility export: the files cluster-backup.sh would have written
    let export = |out: &Path| {
        let mut c = cpbackup(dir);
        c.args([
            "--output",
            "json",
            "export-openshift",
            "--latest",
            "--identity",
        ])
        .arg(&k1);
        c.arg("--store").arg(&s1).arg("--out").arg(out);
        let o = run(c);
        assert!(o.status.success(), "export failed: {}", stderr(&o));
        let v = json(&o);
        conforms("export-openshift", &v);
        (
            std::path::PathBuf::from(v["snapshot"].as_str().unwrap()),
            std::path::PathBuf::from(v["static_kuberesources"].as_str().unwrap()),
        )
    };
    let (snap_db, res_tgz) = export(&dir.join("export"));
    assert_eq!(
        fs::metadata(dir.join("export"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700,
        "the directory holding every control-plane key in plaintext is created 0700"
    );
    // revision.json beside them, as OpenShift's etcd-rev sidecar writes it, from the raft
    // indexes the backup recorded with every member's hash.
    let rj: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("export/revision.json")).unwrap()).unwrap();
    let max = rj["maxRaftIndex"].as_u64().unwrap();
    assert!(max > 0, "{rj}");
    assert_eq!(rj["raftIndex"].as_object().unwrap().len(), 1, "{rj}");
    assert_eq!(rj["clusterId"], m["etcd"]["cluster_id"]);
    assert_eq!(m["consistency"]["consistent"], true, "{}", m["consistency"]);
    assert_eq!(m["consistency"]["members"].as_array().unwrap().len(), 1);
    assert_eq!(m["consistency"]["max_raft_index"].as_u64(), Some(max));
    let (sn, rn) = (
        snap_db.file_name().unwrap().to_str().unwrap(),
        res_tgz.file_name().unwrap().to_str().unwrap(),
    );
    let ts = sn
        .strip_prefix("snapshot_")
        .and_then(|x| x.strip_suffix(".db"))
        .unwrap();
    assert_eq!(ts.len(), "2026-11-22_221005".len(), "{sn}");
    assert_eq!(rn, format!("static_kuberesources_{ts}.tar.gz"));
    for f in [&snap_db, &res_tgz] {
        assert_eq!(fs::metadata(f).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let listing = Command::new("tar")
        .arg("-tzf")
        .arg(&res_tgz)
        .output()
        .unwrap();
    let listing = stdout(&listing);
    assert!(
        listing
            .lines()
            .all(|l| l.starts_with("static-pod-resources/")),
        "{listing}"
    );
    for c in [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "etcd",
    ] {
        assert!(
            listing.contains(&format!(
                "static-pod-resources/{c}-pod-3/secrets/serving-cert/tls.key"
            )),
            "{listing}"
        );
    }
    let st = Command::new(Version::V35.bin("etcdutl"))
        .args(["snapshot", "status", "-w", "json"])
        .arg(&snap_db)
        .output()
        .unwrap();
    let st: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(st["revision"], rev);
    // a forced backup exports with cluster-backup.sh's dirty suffix
    etcd.put("/registry/namespaces/forced", "{}");
    let mut c = cpbackup(dir);
    c.arg("--host-root")
        .arg(&root)
        .args(["backup", "--force", "--recipient", &r1, "--store"])
        .arg(&s1);
    assert!(run(c).status.success());
    let (snap_db, res_tgz) = export(&dir.join("export-forced"));
    assert!(
        snap_db.to_str().unwrap().ends_with("__POSSIBLY_DIRTY__.db"),
        "{}",
        snap_db.display()
    );
    assert!(
        res_tgz
            .to_str()
            .unwrap()
            .ends_with("__POSSIBLY_DIRTY__.tar.gz"),
        "{}",
        res_tgz.display()
    );
}

#[test]
fn kubeadm_backup_from_etcd34_restores_with_its_etcdctl() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let ip = unique_loopback_ip();
    let pki = Pki::new(&dir.join("pki"), &[&ip]);
    let port = free_port();
    let etcd = Etcd::start(Version::V34, dir, &ip, port, Some(&pki));
    etcd.seed("/registry/secrets/kube-system/s-", 150, 300);
    let root = dir.join("host");
    fake_kubeadm_root(&root, &pki);
    let (k, r) = keygen(dir, "k");
    let store = dir.join("store");
    let mut c = cpbackup(dir);
    c.arg("--host-root").arg(&root);
    c.args([
        "backup",
        "--etcd-endpoint",
        &etcd.endpoint,
        "--recipient",
        &r,
        "--node-name",
        "cp-1",
        "--store",
    ])
    .arg(&store);
    let o = run(c);
    assert!(o.status.success(), "backup failed: {}", stderr(&o));
    let bundle = only_bundle(&store);
    let out = dir.join("unpacked");
    let listing = age_and_tar(&bundle, &k, &out);
    for want in [
        "pki/sa.key",
        "pki/etcd/ca.crt",
        "manifests/etcd.yaml",
        "admin.conf",
        "etcd/snapshot.db",
    ] {
        assert!(listing.contains(want), "{want} missing:\n{listing}");
    }
    let r = Command::new(Version::V34.bin("etcdctl"))
        .env("ETCDCTL_API", "3")
        .args(["snapshot", "restore"])
        .arg(out.join("etcd/snapshot.db"))
        .arg("--data-dir")
        .arg(dir.join("restored"))
        .output()
        .unwrap();
    assert!(
        r.status.success(),
        "etcd 3.4 etcdctl snapshot restore refused it: {}",
        stderr(&r)
    );
}

#[test]
fn members_that_disagree_refuse_the_backup_unless_forced_and_the_bundle_says_so() {
    // A two-member cluster whose second member advertises, as its client URL, a separate
    // etcd holding other data: asked for its hash at the same revision, it disagrees.
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    fs::create_dir_all(dir.join("other")).unwrap();
    let other = Etcd::start(
        Version::V35,
        &dir.join("other"),
        "127.0.0.1",
        free_port(),
        None,
    );
    let c = EtcdCluster::start_with(Version::V35, dir, 2, |i| match i {
        1 => vec!["--advertise-client-urls".into(), other.endpoint.clone()],
        _ => Vec::new(),
    });
    c.members[0].seed("/registry/configmaps/default/a-", 20, 50);
    other.seed("/registry/configmaps/default/b-", 40, 50);
    let (k, r) = keygen(dir, "k");
    let store = dir.join("store");
    let backup = |force: bool| {
        let mut cmd = cpbackup(dir);
        cmd.args(["backup", "--static-pods", "none", "--node-name", "m0"])
            .args(["--etcd-endpoint", &c.members[0].endpoint, "--recipient", &r])
            .arg("--store")
            .arg(&store);
        if force {
            cmd.arg("--force");
        }
        run(cmd)
    };
    let o = backup(false);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("members' data differ") && stderr(&o).contains("--force"),
        "{}",
        stderr(&o)
    );
    assert!(files_under(&store).is_empty(), "nothing is published");

    let o = backup(true);
    assert!(o.status.success(), "{}", stderr(&o));
    // both things a restore cannot rely on are said at once, and shown by list
    let err = stderr(&o);
    assert!(
        err.contains("was taken with --force (checks skipped)"),
        "{err}"
    );
    assert!(err.contains("holds the etcd snapshot only"), "{err}");
    let mut l = cpbackup(dir);
    l.arg("list").arg("--store").arg(&store);
    let text = stdout(&run(l));
    assert!(
        text.contains("NOTES") && text.contains("forced etcd-only"),
        "{text}"
    );
    let out = dir.join("plain");
    age_and_tar(&only_bundle(&store), &k, &out);
    let m: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join("cpbackup/manifest.json")).unwrap()).unwrap();
    assert_eq!(m["forced"], true);
    assert_eq!(
        m["consistency"]["consistent"], false,
        "{}",
        m["consistency"]
    );
    let hashes: Vec<_> = m["consistency"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["hash"].as_u64().unwrap())
        .collect();
    assert_eq!(hashes.len(), 2);
    assert_ne!(hashes[0], hashes[1]);
}

#[test]
fn unreachable_etcd_fails_within_the_timeout_and_leaves_nothing() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let (_, r) = keygen(dir, "k");
    let store = dir.join("store");
    let ep = format!("http://127.0.0.1:{}", free_port());
    let mut c = cpbackup(dir);
    c.args([
        "backup",
        "--static-pods",
        "none",
        "--etcd-endpoint",
        &ep,
        "--etcd-connect-timeout",
        "2",
    ]);
    c.args(["--recipient", &r, "--store"]).arg(&store);
    let started = std::time::Instant::now();
    let o = run(c);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "a dead etcd must not hang the backup"
    );
    assert!(
        stderr(&o).contains(&ep) && stderr(&o).contains("did not answer"),
        "{}",
        stderr(&o)
    );
    assert!(files_under(&store).is_empty());
}

#[test]
fn wrong_client_certificate_or_ca_is_refused_with_advice() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let ip = unique_loopback_ip();
    let pki = Pki::new(&dir.join("pki"), &[&ip]);
    let other = Pki::new(&dir.join("other"), &[&ip]);
    let etcd = Etcd::start(Version::V35, dir, &ip, free_port(), Some(&pki));
    let (_, r) = keygen(dir, "k");
    let store = dir.join("store");
    for (ca, cert, key) in [
        (&pki.ca, &other.client_cert, &other.client_key), // client cert from a CA etcd does not trust
        (&other.ca, &pki.client_cert, &pki.client_key),   // server cert not signed by our CA
    ] {
        let mut c = cpbackup(dir);
        c.args([
            "backup",
            "--static-pods",
            "none",
            "--etcd-endpoint",
            &etcd.endpoint,
            "--etcd-connect-timeout",
            "5",
        ]);
        c.arg("--etcd-cacert")
            .arg(ca)
            .arg("--etcd-cert")
            .arg(cert)
            .arg("--etcd-key")
            .arg(key);
        c.args(["--recipient", &r, "--store"]).arg(&store);
        let started = std::time::Instant::now();
        let o = run(c);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(started.elapsed() < std::time::Duration::from_secs(30));
        let e = stderr(&o);
        assert!(
            e.contains("signed its serving certificate") && e.contains("client certificate"),
            "{e}"
        );
        assert!(files_under(&store).is_empty());
    }
}

/// A local-store backup frozen mid-snapshot; checks nothing in the store looks like a backup.
struct FrozenLocal {
    _t: tempfile::TempDir,
    f: Frozen,
    store: std::path::PathBuf,
}

fn frozen_backup_local() -> FrozenLocal {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().to_path_buf();
    let store = dir.join("store");
    let f = frozen_backup(&dir, cpbackup(&dir), &[store.to_str().unwrap()]);
    // Frozen mid-snapshot: only a hidden temp file exists, and list shows no backup.
    let partial = files_under(&store);
    assert!(
        partial.len() == 1 && partial[0].rsplit('/').next().unwrap().starts_with('.'),
        "{partial:?}"
    );
    let mut l = cpbackup(&dir);
    l.args(["list", "--store"]).arg(&store);
    assert_eq!(stdout(&run(l)).trim(), "no backups");
    FrozenLocal { _t: t, f, store }
}

#[test]
fn etcd_killed_mid_stream_leaves_no_bundle_and_no_temp_file() {
    let mut f = frozen_backup_local();
    f.f.etcd.kill();
    let o = f.f.child.wait_with_output().unwrap();
    fails_with(&o, 1, "snapshot stream");
    assert_eq!(
        files_under(&f.store),
        Vec::<String>::new(),
        "no bundle, no record, no temp file"
    );
}

#[test]
fn sigterm_mid_stream_aborts_and_publishes_nothing() {
    let f = frozen_backup_local();
    f.f.sigterm();
    let o = f.f.child.wait_with_output().unwrap();
    fails_with(&o, 1, "interrupted");
    assert_eq!(files_under(&f.store), Vec::<String>::new());
}

#[test]
fn missing_static_pod_revision_directory_is_named_before_etcd_is_touched() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let ip = unique_loopback_ip();
    let pki = Pki::new(&dir.join("pki"), &[&ip]);
    let root = dir.join("host");
    fake_openshift_root(&root, "m0", &ip, &pki, 5);
    fs::remove_dir_all(root.join("etc/kubernetes/static-pod-resources/kube-scheduler-pod-5"))
        .unwrap();
    let (_, r) = keygen(dir, "k");
    let store = dir.join("store");
    let mut c = cpbackup(dir);
    c.arg("--host-root")
        .arg(&root)
        .args(["backup", "--recipient", &r, "--store"])
        .arg(&store);
    let o = run(c);
    fails_with(&o, 1, "kube-scheduler-pod-5 does not exist");
    assert!(files_under(&store).is_empty());
}

#[test]
fn no_recipients_is_a_usage_error_with_the_fix() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let mut c = cpbackup(dir);
    c.args([
        "backup",
        "--static-pods",
        "none",
        "--etcd-endpoint",
        "http://127.0.0.1:1",
        "--store",
    ])
    .arg(dir.join("s"));
    let o = run(c);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("no recipients") && stderr(&o).contains("cpbackup keygen"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_broken_store_fails_the_run_but_the_good_store_keeps_its_backup() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let etcd = Etcd::start(Version::V35, dir, "127.0.0.1", free_port(), None);
    etcd.put("/registry/namespaces/shop", "{}");
    let (k, r) = keygen(dir, "k");
    let bad = dir.join("not-a-dir");
    fs::write(&bad, b"").unwrap();
    let good = dir.join("good");
    let mut c = cpbackup(dir);
    etcd_backup(&mut c, &etcd.endpoint, &r);
    c.arg("--store").arg(&bad).arg("--store").arg(&good);
    let o = run(c);
    fails_with(&o, 1, "not writable");
    assert!(stderr(&o).contains("1 of 2 stores"), "{}", stderr(&o));
    let mut c = cpbackup(dir);
    c.args(["verify", "--latest", "--identity"])
        .arg(&k)
        .arg("--store")
        .arg(&good);
    assert!(run(c).status.success());

    // only a bad store: nothing anywhere, exit 1
    let mut c = cpbackup(dir);
    etcd_backup(&mut c, &etcd.endpoint, &r);
    c.arg("--store").arg(&bad);
    let o = run(c);
    fails_with(&o, 1, "no store could take the backup");
}

#[test]
fn a_second_concurrent_backup_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let state = dir.join("state");
    fs::create_dir_all(&state).unwrap();
    let held = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(state.join("backup.lock"))
        .unwrap();
    held.lock().unwrap();
    let (_, r) = keygen(dir, "k");
    let mut c = cpbackup(dir);
    c.args([
        "backup",
        "--static-pods",
        "none",
        "--etcd-endpoint",
        "http://127.0.0.1:1",
        "--recipient",
        &r,
        "--store",
    ]);
    c.arg(dir.join("s"));
    let o = run(c);
    fails_with(&o, 1, "another cpbackup backup is running");
    drop(held);
}

#[test]
fn openshift_backup_waits_for_rollouts_unless_forced() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let ip = unique_loopback_ip();
    let pki = Pki::new(&dir.join("pki"), &[&ip]);
    let _etcd = Etcd::start(Version::V35, dir, &ip, 2379, Some(&pki));
    let root = dir.join("host");
    fake_openshift_root(&root, "m0", &ip, &pki, 2);
    let api = FakeApi::start(&[("kube-scheduler", "True")]);
    api.kubeconfig_for(&root);
    let (_, r) = keygen(dir, "k");
    let store = dir.join("store");
    let backup = |force: bool| {
        let mut c = cpbackup(dir);
        c.arg("--host-root")
            .arg(&root)
            .args(["--output", "json", "backup", "--recipient", &r, "--store"])
            .arg(&store);
        if force {
            c.arg("--force");
        }
        run(c)
    };
    let o = backup(false);
    fails_with(&o, 1, "kube-scheduler (Progressing=True)");
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    assert!(files_under(&store).is_empty(), "nothing written");
    let asked = api.asked.lock().unwrap().clone();
    for op in [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "etcd",
    ] {
        assert!(
            asked
                .iter()
                .any(|p| p == &format!("/apis/config.openshift.io/v1/clusteroperators/{op}")),
            "{asked:?}"
        );
    }

    let o = backup(true);
    assert!(o.status.success(), "{}", stderr(&o));
    let rep: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        rep["forced"], true,
        "a forced backup is marked possibly dirty"
    );

    // The API gone: refused with what to do.
    fs::write(
        root.join("etc/kubernetes/static-pod-resources/kube-apiserver-certs/secrets/node-kubeconfigs/localhost.kubeconfig"),
        "apiVersion: v1\nkind: Config\nclusters:\n- name: x\n  cluster:\n    server: http://127.0.0.1:1\ncontexts:\n- name: x\n  context:\n    cluster: x\n    user: x\ncurrent-context: x\nusers:\n- name: x\n  user: {}\n",
    )
    .unwrap();
    let o = backup(false);
    fails_with(&o, 1, "is the API server running");
}

#[test]
fn the_codec_is_a_property_of_the_bundle_and_gzip_stays_on_request() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let etcd = Etcd::start(Version::V35, dir, "127.0.0.1", free_port(), None);
    etcd.seed("/registry/configmaps/shop/cm-", 200, 500);
    let (key, recipient) = keygen(dir, "k");
    for (codec, flags) in [("zstd", &[][..]), ("gzip", &["--compression", "gzip"][..])] {
        let store = dir.join(format!("store-{codec}"));
        let mut c = cpbackup(dir);
        c.args(["--output", "json"]);
        etcd_backup(&mut c, &etcd.endpoint, &recipient);
        c.args(flags).arg("--store").arg(&store);
        let name = backed_up(c);
        let record: serde_json::Value =
            serde_json::from_slice(&fs::read(store.join(format!("{name}.json"))).unwrap()).unwrap();
        assert_eq!(record["compression"], codec, "the record names the codec");
        // The bytes say what they are, whatever the file is called.
        let plain = dir.join(format!("plain-{codec}"));
        let st = Command::new("age")
            .arg("-d")
            .arg("-i")
            .arg(&key)
            .arg("-o")
            .arg(&plain)
            .arg(store.join(&name))
            .status()
            .unwrap();
        assert!(st.success());
        let tool = if codec == "zstd" { "zstd" } else { "gzip" };
        let ok = Command::new(tool).arg("-t").arg(&plain).status().unwrap();
        assert!(ok.success(), "{tool} -t rejects a {codec} bundle");
        // Every reader reads both.
        let mut verify = cpbackup(dir);
        verify
            .args(["--output", "json", "verify", "--identity"])
            .arg(&key)
            .arg(store.join(&name));
        let o = run(verify);
        assert!(o.status.success(), "{}", stderr(&o));
        let report = json(&o);
        assert_eq!(report["details"]["manifest"]["compression"], codec);
        let mut inspect = cpbackup(dir);
        inspect
            .args(["--output", "json", "inspect", "--identity"])
            .arg(&key)
            .arg(store.join(&name));
        let o = run(inspect);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(json(&o)["live_keys"].as_u64().unwrap() >= 200, "{codec}");
        // A record (writable by anyone with PutObject) that names another codec is a forgery.
        let rec_path = store.join(format!("{name}.json"));
        let mut forged = record.clone();
        forged["compression"] = if codec == "zstd" { "gzip" } else { "zstd" }.into();
        fs::write(&rec_path, serde_json::to_vec(&forged).unwrap()).unwrap();
        let mut verify = cpbackup(dir);
        verify
            .args(["verify", "--identity"])
            .arg(&key)
            .arg(store.join(&name));
        fails_with(&run(verify), 1, "the record says compression");
        fs::write(&rec_path, serde_json::to_vec(&record).unwrap()).unwrap();
    }
    // As the README says: age, zstd and tar, one pipe.
    let store = dir.join("store-zstd");
    let bundle = only_bundle(&store);
    let piped = Command::new("sh")
        .arg("-c")
        .arg("age -d -i \"$1\" \"$2\" | zstd -dq | tar -t")
        .arg("sh")
        .arg(&key)
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(piped.status.success(), "{}", stderr(&piped));
    assert!(
        stdout(&piped).contains("etcd/snapshot.db"),
        "{}",
        stdout(&piped)
    );
    let mut bad = cpbackup(dir);
    etcd_backup(&mut bad, &etcd.endpoint, &recipient);
    bad.args([
        "--compression",
        "gzip",
        "--compression-level",
        "12",
        "--store",
    ])
    .arg(&store);
    fails_with(&run(bad), 2, "out of range for gzip");
}

/// Two backups of one node in a row, nothing written in between (same revision): two names, both
/// complete. (One name written twice would be a second version of an S3 key: "tampered".)
#[test]
fn back_to_back_backups_of_one_revision_get_two_names() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let etcd = Etcd::start(Version::V35, dir, "127.0.0.1", free_port(), None);
    etcd.seed("/registry/configmaps/shop/cm-", 10, 100);
    let (_, r) = keygen(dir, "k");
    let store = dir.join("store");
    let mut names = Vec::new();
    for _ in 0..2 {
        let mut c = cpbackup(dir);
        c.args(["--output", "json"]);
        etcd_backup(&mut c, &etcd.endpoint, &r);
        c.arg("--store")
            .arg(&store)
            .arg("--state-dir")
            .arg(dir.join("state"));
        names.push(backed_up(c));
    }
    assert_ne!(names[0], names[1]);
    // JSON logs carry numbers as numbers and names as the outputs write them
    let mut c = cpbackup(dir);
    c.args(["--log-format", "json"]);
    etcd_backup(&mut c, &etcd.endpoint, &r);
    c.arg("--store")
        .arg(&store)
        .arg("--state-dir")
        .arg(dir.join("state"));
    let o = run(c);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = stderr(&o)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let line = |msg: &str| {
        lines
            .iter()
            .find(|l| l["message"] == msg)
            .unwrap_or_else(|| panic!("no {msg:?} in {}", stderr(&o)))
            .clone()
    };
    assert!(
        line("backup finished")["seconds"].is_f64(),
        "{}",
        stderr(&o)
    );
    assert_eq!(line("starting backup")["platform"], "unknown");
    let mut c = cpbackup(dir);
    c.args(["--output", "json", "list", "--store"]).arg(&store);
    let l: serde_json::Value = serde_json::from_slice(&run(c).stdout).unwrap();
    let states: Vec<&str> = l
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["complete", "complete", "complete"], "{l:#}");
}
