//! `cpbackup restore` on a fake kubeadm host root with real etcd: the test plays the kubelet
//! (etcd runs while its manifest is in place). Back up, write more, restore, check what etcd
//! serves; dry run, failures before anything is touched, a kill at every step followed by
//! --continue and by --rollback; etcd 3.4 (etcdctl) and 3.5 (etcdutl).

use cpbackup_testkit as support;

use std::fs;
use std::path::{Path, PathBuf};

use support::*;

struct Node {
    _t: tempfile::TempDir,
    dir: PathBuf,
    root: PathBuf,
    store: PathBuf,
    key: PathBuf,
    endpoint: String,
    version: Version,
    _kubelet: FakeKubelet,
}

impl Node {
    /// A kubeadm node with etcd up, `a1..a3` written, a backup taken, then `b1` written and
    /// `a1` changed after it.
    fn new(version: Version) -> Node {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().to_path_buf();
        let root = dir.join("root");
        let (client, peer) = (free_port(), free_port());
        fake_kubeadm_node(&root, client, peer);
        let kubelet = FakeKubelet::start(&root, version);
        let endpoint = format!("http://127.0.0.1:{client}");
        wait_for_key(version, &endpoint, "/nothing", None);
        for k in ["a1", "a2", "a3"] {
            etcdctl(
                version,
                &endpoint,
                &["put", &format!("/registry/{k}"), "before"],
            );
        }
        let (key, r) = keygen(&dir, "k");
        let store = dir.join("store");
        let mut c = cpbackup(&dir);
        c.args(["--host-root", root.to_str().unwrap(), "backup"])
            .args([
                "--recipient",
                &r,
                "--node-name",
                "cp-1",
                "--etcd-endpoint",
                &endpoint,
            ])
            .arg("--store")
            .arg(&store);
        let o = run(c);
        assert!(o.status.success(), "{}", stderr(&o));
        etcdctl(version, &endpoint, &["put", "/registry/b1", "after"]);
        etcdctl(version, &endpoint, &["put", "/registry/a1", "after"]);
        Node {
            _t: t,
            dir,
            root,
            store,
            key,
            endpoint,
            version,
            _kubelet: kubelet,
        }
    }

    fn tool(&self) -> PathBuf {
        match self.version {
            Version::V34 => self.version.bin("etcdctl"),
            Version::V35 => self.version.bin("etcdutl"),
        }
    }

    fn restore(&self, extra: &[&str]) -> std::process::Command {
        let mut c = cpbackup(&self.dir);
        c.args(["--host-root", self.root.to_str().unwrap(), "restore"])
            .arg("--identity")
            .arg(&self.key)
            .arg("--store")
            .arg(&self.store)
            .arg("--etcdutl")
            .arg(self.tool())
            .args(["--wait-timeout", "60"])
            .args(extra);
        c
    }

    fn cmd(&self, args: &[&str]) -> std::process::Output {
        let mut c = cpbackup(&self.dir);
        c.args(["--host-root", self.root.to_str().unwrap(), "restore"])
            .args(["--wait-timeout", "60"])
            .args(args);
        run(c)
    }

    /// etcd serves the state as of the backup.
    fn assert_restored(&self) {
        wait_for_key(self.version, &self.endpoint, "/registry/a1", Some("before"));
        wait_for_key(self.version, &self.endpoint, "/registry/b1", None);
        wait_for_key(self.version, &self.endpoint, "/registry/a3", Some("before"));
    }

    /// etcd serves the node's own later data again.
    fn assert_original(&self) {
        wait_for_key(self.version, &self.endpoint, "/registry/b1", Some("after"));
        wait_for_key(self.version, &self.endpoint, "/registry/a1", Some("after"));
        assert_eq!(
            fs::read_to_string(self.root.join("etc/kubernetes/admin.conf")).unwrap(),
            "kind: Config # original\n"
        );
        assert!(
            self.root
                .join("etc/kubernetes/manifests/kube-apiserver.yaml")
                .is_file()
        );
    }

    /// The restored member serves a revision a billion above what clients saw, older revisions
    /// are compacted, and the database etcd wrote on top of cpbackup's bump survives a restart
    /// and a defragmentation (which rewrites every page).
    fn assert_bumped(&self, seen: i64) {
        let (v, ep) = (self.version, self.endpoint.as_str());
        let served = served_revision(v, ep);
        assert!(
            served > seen + 999_000_000,
            "serves {served}, clients saw {seen}"
        );
        let old = etcdctl(v, ep, &["get", "/registry/a1", &format!("--rev={seen}")]);
        assert!(
            !old.status.success() && stderr(&old).contains("compacted"),
            "a read at an old revision must be refused as compacted: {}",
            stderr(&old)
        );
        let put = etcdctl(v, ep, &["put", "/registry/new", "x", "-w", "json"]);
        let header: serde_json::Value = serde_json::from_slice(&put.stdout).unwrap();
        assert_eq!(header["header"]["revision"].as_i64(), Some(served + 1));
        let manifest = self.root.join("etc/kubernetes/manifests/etcd.yaml");
        let aside = self.dir.join("etcd.yaml.restart");
        fs::rename(&manifest, &aside).unwrap();
        wait_until_down(v, ep);
        fs::rename(&aside, &manifest).unwrap();
        wait_for_key(v, ep, "/registry/new", Some("x"));
        assert_eq!(served_revision(v, ep), served + 1);
        ok(&etcdctl(v, ep, &["defrag"]));
        wait_for_key(v, ep, "/registry/a3", Some("before"));
        let _ = etcdctl(v, ep, &["del", "/registry/new"]);
    }

    fn journal(&self) -> serde_json::Value {
        serde_json::from_slice(&fs::read(self.dir.join("state/restore/journal.json")).unwrap())
            .unwrap()
    }

    fn digest(&self) -> String {
        tree_digest(&self.root, &["var/lib/etcd"])
    }
}

/// Polls until etcd at `ep` no longer answers.
fn wait_until_down(v: Version, ep: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while etcdctl(v, ep, &["endpoint", "health"]).status.success() {
        assert!(
            std::time::Instant::now() < deadline,
            "etcd at {ep} did not stop"
        );
    }
}

fn ok(o: &std::process::Output) {
    assert!(
        o.status.success(),
        "stdout: {}\nstderr: {}",
        stdout(o),
        stderr(o)
    );
}

fn restores_and_keeps_the_old_data(version: Version) {
    let n = Node::new(version);
    let before = n.digest();
    let etcd_files = files_under(&n.root.join("var/lib/etcd"));

    // A dry run verifies and plans, and changes nothing.
    let o = run(n.restore(&["--latest", "--dry-run", "--output", "json"]));
    ok(&o);
    let plan: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    conforms("restore --dry-run", &plan);
    let kinds: Vec<&str> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "stop-pod",
            "stop-pod",
            "move-aside",
            "place-files",
            "restore-snapshot",
            "start-pod",
            "remove-staged",
            "wait-serving",
            "start-pod"
        ]
    );
    assert_eq!(n.digest(), before, "the dry run changed the host");
    assert_eq!(files_under(&n.root.join("var/lib/etcd")), etcd_files);
    assert!(!n.dir.join("state/restore/journal.json").exists());

    let backup_rev = served_revision(version, &n.endpoint);
    // 3.5 reports as JSON (one document: the outcome), 3.4 as text.
    let json = version == Version::V35;
    let o = run(n.restore(if json {
        &["--latest", "--yes", "-o", "json"]
    } else {
        &["--latest", "--yes"]
    }));
    ok(&o);
    if json {
        let done: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        conforms("restore", &done);
        assert_eq!(done["outcome"], "completed");
        assert!(!done["next_steps"].as_array().unwrap().is_empty());
    } else {
        assert!(stdout(&o).contains("Next steps"), "{}", stdout(&o));
    }
    // Each step said once (here a log line: stderr is no terminal), not twice.
    assert_eq!(
        stderr(&o).matches("move the etcd data directory").count(),
        1,
        "{}",
        stderr(&o)
    );
    n.assert_restored();
    n.assert_bumped(backup_rev);
    let j = n.journal();
    assert_eq!(j["outcome"], "completed");
    // The old data directory sits intact where the journal says: an etcd started on a copy of
    // it serves the later writes.
    let aside = j["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "move-aside")
        .unwrap()["to"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(Path::new(&aside).join("member/snap/db").is_file());
    let copy = n.dir.join("old-copy");
    assert!(
        std::process::Command::new("cp")
            .args(["-a", &aside])
            .arg(&copy)
            .status()
            .unwrap()
            .success()
    );
    let port = free_port();
    let ep = format!("http://127.0.0.1:{port}");
    let mut old = std::process::Command::new(version.bin("etcd"))
        .arg(format!("--data-dir={}", copy.display()))
        .args(["--listen-client-urls", &ep, "--advertise-client-urls", &ep])
        .args([
            "--listen-peer-urls",
            &format!("http://127.0.0.1:{}", free_port()),
        ])
        .env("ETCD_UNSUPPORTED_ARCH", "")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_key(version, &ep, "/registry/b1", Some("after"));
    let _ = old.kill();
    let _ = old.wait();
    // The plaintext staging copy is gone; the replaced pki is kept in the work dir.
    let work = PathBuf::from(j["work_dir"].as_str().unwrap());
    assert!(!work.join("staged").exists());
    assert!(work.join("replaced/pki/sa.key").is_file());
}

#[test]
fn restore_etcd35_with_etcdutl() {
    restores_and_keeps_the_old_data(Version::V35);
}

#[test]
fn restore_etcd34_with_etcdctl() {
    restores_and_keeps_the_old_data(Version::V34);
}

#[test]
fn killed_at_every_step_continue_completes_and_rollback_restores() {
    let n = Node::new(Version::V35);
    let o = run(n.restore(&["--latest", "--dry-run", "--output", "json"]));
    ok(&o);
    let steps = serde_json::from_str::<serde_json::Value>(&stdout(&o)).unwrap()["steps"]
        .as_array()
        .unwrap()
        .len();
    for i in 1..=steps {
        // Killed as step i starts: rolled back to the original state.
        let mut c = n.restore(&["--latest", "--yes"]);
        c.env("CPBACKUP_RESTORE_FAILPOINT", format!("{i}:before"));
        assert_eq!(run(c).status.code(), Some(137), "step {i}");
        let again = run(n.restore(&["--latest", "--yes"]));
        assert_eq!(
            again.status.code(),
            Some(2),
            "a second restore is refused while one is unfinished"
        );
        assert!(stderr(&again).contains("--continue"), "{}", stderr(&again));
        ok(&n.cmd(&["--rollback", "--yes"]));
        n.assert_original();

        // Killed right after step i: --continue completes it.
        let mut c = n.restore(&["--latest", "--yes"]);
        c.env("CPBACKUP_RESTORE_FAILPOINT", format!("{i}:after"));
        assert_eq!(run(c).status.code(), Some(137), "step {i}");
        ok(&n.cmd(&["--continue"]));
        n.assert_restored();
        assert_eq!(n.journal()["outcome"], "completed");

        // And a completed restore can be rolled back too, for the next round.
        ok(&n.cmd(&["--rollback", "--yes"]));
        n.assert_original();
    }
}

/// The staged snapshot is not synced (etcdutl copies and syncs it at once), so a restore
/// continued by another process hashes it again: a copy torn by a crash is refused, never
/// restored, and the node can still be rolled back.
#[test]
fn a_continued_restore_refuses_a_staged_snapshot_that_changed() {
    let n = Node::new(Version::V35);
    let o = run(n.restore(&["--latest", "--dry-run", "--output", "json"]));
    ok(&o);
    let plan: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let before_restore = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .position(|s| s["kind"] == "restore-snapshot")
        .unwrap();
    let mut c = n.restore(&["--latest", "--yes"]);
    // Killed once the step before the snapshot restore is done.
    c.env(
        "CPBACKUP_RESTORE_FAILPOINT",
        format!("{before_restore}:after"),
    );
    assert_eq!(run(c).status.code(), Some(137));
    let work = PathBuf::from(n.journal()["work_dir"].as_str().unwrap());
    let staged = work.join("staged/etcd/snapshot.db");
    let mut bytes = fs::read(&staged).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    fs::write(&staged, &bytes).unwrap();

    let o = n.cmd(&["--continue"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    // The hints are the commands to copy: the host root and state directory in use kept.
    let rollback = format!(
        "cpbackup --host-root {} restore --state-dir {} --rollback",
        n.root.display(),
        n.dir.join("state").display()
    );
    assert!(
        stderr(&o).contains("no longer matches the backup") && stderr(&o).contains(&rollback),
        "{}",
        stderr(&o)
    );
    assert!(
        !n.root.join("var/lib/etcd/member").exists(),
        "nothing was restored from the changed copy"
    );
    // The undo list is numbered as the steps were.
    let o = n.cmd(&["--rollback", "--yes"]);
    ok(&o);
    let listed = format!("[undo {before_restore}/");
    assert!(stderr(&o).contains(&listed), "{}", stderr(&o));
    n.assert_original();
    // Nothing left to roll back: the journal looked at is named.
    let o = n.cmd(&["--rollback", "--yes"]);
    let journal = n.dir.join("state/restore/journal.json");
    fails_with(
        &o,
        2,
        &format!("{} says it was rolled back already", journal.display()),
    );
    let o = n.cmd(&["--continue"]);
    fails_with(&o, 2, "records no unfinished operation");
}

#[test]
fn continue_takes_the_etcd_flags_its_own_error_names() {
    let n = Node::new(Version::V35);
    let mut c = n.restore(&["--latest", "--yes"]);
    c.env("CPBACKUP_RESTORE_FAILPOINT", "7:after"); // remove-staged done, wait-serving next
    assert_eq!(run(c).status.code(), Some(137));
    // The journal reaches etcd where it does not answer (as when discovery got it wrong).
    let path = n.dir.join("state/restore/journal.json");
    let mut j = n.journal();
    let dead = format!("http://127.0.0.1:{}", free_port());
    let wait = j["steps"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|s| s["kind"] == "wait-serving")
        .unwrap();
    wait["target"]["endpoint"] = dead.clone().into();
    fs::write(&path, serde_json::to_vec(&j).unwrap()).unwrap();
    let mut c = cpbackup(&n.dir);
    c.args(["--host-root", n.root.to_str().unwrap(), "restore"])
        .args(["--continue", "--wait-timeout", "2"]);
    let o = run(c);
    fails_with(&o, 1, &dead);
    assert!(stderr(&o).contains("--etcd-endpoint"), "{}", stderr(&o));
    let o = n.cmd(&["--continue", "--etcd-endpoint", &n.endpoint]);
    ok(&o);
    n.assert_restored();
}

#[test]
fn bad_key_corrupt_bundle_or_missing_tool_stop_before_anything_is_touched() {
    let n = Node::new(Version::V35);
    let before = n.digest();
    let journal = n.dir.join("state/restore/journal.json");

    let (other, _) = keygen(&n.dir, "other");
    let mut c = cpbackup(&n.dir);
    c.args([
        "--host-root",
        n.root.to_str().unwrap(),
        "restore",
        "--latest",
        "--yes",
    ])
    .arg("--identity")
    .arg(&other)
    .arg("--store")
    .arg(&n.store)
    .arg("--etcdutl")
    .arg(n.tool());
    let o = run(c);
    fails_with(&o, 1, "nothing on this node was changed");

    // A flipped byte in the middle of the bundle.
    let bundle = files_under(&n.store)
        .into_iter()
        .find(|f| f.ends_with(".cpb"))
        .unwrap();
    let copy = n.dir.join("corrupt.cpb");
    let mut bytes = fs::read(n.store.join(&bundle)).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    fs::write(&copy, bytes).unwrap();
    let o = run(n.restore(&[copy.to_str().unwrap(), "--yes"]));
    fails_with(&o, 1, "nothing on this node was changed");

    let mut c = cpbackup(&n.dir);
    c.args([
        "--host-root",
        n.root.to_str().unwrap(),
        "restore",
        "--latest",
        "--yes",
    ])
    .arg("--identity")
    .arg(&n.key)
    .arg("--store")
    .arg(&n.store)
    .env("PATH", "/nonexistent");
    // No tool on the host, and an etcd manifest that names no image to take one from.
    let m = n.root.join("etc/kubernetes/manifests/etcd.yaml");
    let original = fs::read_to_string(&m).unwrap();
    let no_image: String = original
        .lines()
        .filter(|l| !l.contains("image:"))
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(&m, no_image).unwrap();
    let o = run(c);
    fs::write(&m, original).unwrap();
    fails_with(&o, 2, "etcdutl");

    // /etc/kubernetes reached through a symlink: nothing is placed through it.
    let k8s = n.root.join("etc/kubernetes");
    let moved = n.root.join("elsewhere-kubernetes");
    fs::rename(&k8s, &moved).unwrap();
    std::os::unix::fs::symlink("../elsewhere-kubernetes", &k8s).unwrap();
    let moved_before = tree_digest(&moved, &[]);
    let o = run(n.restore(&["--latest", "--yes"]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("must be a real directory")
            && stderr(&o).contains("nothing on this node was changed"),
        "{}",
        stderr(&o)
    );
    assert_eq!(tree_digest(&moved, &[]), moved_before);
    fs::remove_file(&k8s).unwrap();
    fs::rename(&moved, &k8s).unwrap();

    // No --yes and no terminal to ask on: refused before the bundle is fetched or decrypted
    // (a wrong key would otherwise be the error; here the identity does not matter).
    let mut c = cpbackup(&n.dir);
    c.args([
        "--host-root",
        n.root.to_str().unwrap(),
        "restore",
        "--latest",
    ])
    .arg("--identity")
    .arg(&other)
    .arg("--store")
    .arg(&n.store);
    let o = run(c);
    fails_with(&o, 2, "no terminal to ask on");
    assert!(!stderr(&o).contains("unpacking"), "{}", stderr(&o));

    assert_eq!(n.digest(), before, "the host was touched");
    assert!(!journal.exists());
    n.assert_original();
    assert!(
        fs::read_dir(n.dir.join("state/restore"))
            .map(|d| d.count())
            .unwrap_or(0)
            == 0,
        "no work directory left behind"
    );
}

#[test]
fn a_host_without_etcdutl_restores_with_etcds_own_image_as_a_static_pod() {
    // No etcdutl or etcdctl anywhere on PATH or in the host root: the restore runs the one of
    // the image the etcd manifest names (registry.k8s.io/etcd:3.5.15-0), as a static pod the
    // stand-in kubelet runs, and cpbackup bumps the revision of what it restored.
    let n = Node::new(Version::V35);
    let empty = n.dir.join("empty-path");
    fs::create_dir_all(&empty).unwrap();
    let seen = served_revision(n.version, &n.endpoint);
    let restore_in = |state: &Path, extra: &[&str]| {
        let mut c = cpbackup(&n.dir);
        c.env("PATH", &empty)
            .args([
                "--host-root",
                n.root.to_str().unwrap(),
                "restore",
                "--latest",
            ])
            .arg("--identity")
            .arg(&n.key)
            .arg("--store")
            .arg(&n.store)
            .args(["--wait-timeout", "60"])
            .arg("--state-dir")
            .arg(state)
            .args(extra);
        run(c)
    };
    let state = n.root.join("var/lib/cpbackup");
    let restore = |extra: &[&str]| restore_in(&state, extra);
    // The staging directory must be where the host (and so the pod) sees it.
    let outside = restore_in(&n.dir.join("elsewhere"), &["--dry-run"]);
    fails_with(&outside, 2, "pass --state-dir under the host root");
    let o = restore(&["--dry-run"]);
    ok(&o);
    assert!(
        stdout(&o).contains("in a static pod of etcd's image registry.k8s.io/etcd:3.5.15-0"),
        "{}",
        stdout(&o)
    );
    ok(&restore(&["--yes"]));
    n.assert_restored();
    n.assert_bumped(seen);
    let manifests = files_under(&n.root.join("etc/kubernetes/manifests"));
    assert!(
        !manifests
            .iter()
            .any(|f| f.contains("cpbackup-etcd-restore")),
        "the restore pod is gone: {manifests:?}"
    );
    let left: Vec<String> = fs::read_dir(n.root.join("var/lib"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|f| f.contains("cpbackup-restore"))
        .collect();
    assert!(left.is_empty(), "scratch left behind: {left:?}");
}

/// An etcd-only backup (`--static-pods none`) restores etcd's data alone, and the plan says so
/// instead of listing a step that would place nothing.
#[test]
fn an_etcd_only_backup_plans_no_static_pod_resources_and_says_so() {
    let n = Node::new(Version::V35);
    // the fixture's own backup, with the static pod resources, plans them
    let full = run(n.restore(&["--latest", "--dry-run"]));
    ok(&full);
    let plan = stdout(&full);
    assert!(
        plan.contains("put the backup's static pod resources"),
        "{plan}"
    );
    let (k2, r) = keygen(&n.dir, "k2");
    let mut c = cpbackup(&n.dir);
    c.args([
        "--host-root",
        n.root.to_str().unwrap(),
        "--output",
        "json",
        "backup",
    ])
    .args([
        "--static-pods",
        "none",
        "--node-name",
        "cp-1",
        "--etcd-endpoint",
        &n.endpoint,
    ])
    .args(["--recipient", &r])
    .arg("--store")
    .arg(&n.store);
    let name = backed_up(c);
    let mut c = n.restore(&[&name, "--dry-run", "--identity"]);
    c.arg(&k2);
    let o = run(c);
    let said = format!("{}{}", stdout(&o), stderr(&o));
    assert!(o.status.success(), "{said}");
    assert!(said.contains("holds the etcd snapshot only"), "{said}");
    assert!(!said.contains("static pod resources into"), "{said}");
}

#[test]
fn a_backup_of_a_newer_etcd_is_refused_and_another_kubernetes_minor_is_named() {
    let n = Node::new(Version::V35); // backed up from etcd 3.5.1, the API server at v1.30.1
    let m = n.root.join("etc/kubernetes/manifests/etcd.yaml");
    let api = n.root.join("etc/kubernetes/manifests/kube-apiserver.yaml");
    let original = fs::read_to_string(&m).unwrap();
    // The node now runs an older etcd minor than the backup's: etcd could not read its data.
    fs::write(&m, original.replace("etcd:3.5.15-0", "etcd:3.4.13-0")).unwrap();
    let o = run(n.restore(&["--latest", "--dry-run"]));
    fails_with(&o, 2, "cannot read a newer minor's data");
    assert!(stderr(&o).contains("etcd 3.5.1"), "{}", stderr(&o));
    fs::write(&m, &original).unwrap();
    // Another Kubernetes minor on the node: a warning, the dry run goes on.
    let api_text = fs::read_to_string(&api).unwrap();
    fs::write(&api, api_text.replace("v1.30.1", "v1.31.0")).unwrap();
    let o = run(n.restore(&["--latest", "--dry-run"]));
    ok(&o);
    assert!(
        stderr(&o)
            .contains("the backup is of Kubernetes v1.30.1, this node's API server is v1.31.0"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn bump_flags_go_to_an_etcdutl_that_has_them() {
    // An etcdutl whose help lists --bump-revision/--mark-compacted (3.5.13+): a shim that
    // records its arguments and runs the real 3.5.1 without them.
    let n = Node::new(Version::V35);
    let shim_dir = n.dir.join("shim");
    fs::create_dir_all(&shim_dir).unwrap();
    let shim = shim_dir.join("etcdutl");
    let real = Version::V35.bin("etcdutl");
    let log = n.dir.join("shim.args");
    fs::write(
        &shim,
        format!(
            "#!/bin/sh\nif [ \"$3\" = --help ]; then {real} \"$@\"; echo '      --bump-revision uint'; echo '      --mark-compacted'; exit 0; fi\n\
             echo \"$@\" >> {log}\nargs=''\nfor a in \"$@\"; do case \"$a\" in --bump-revision=*|--mark-compacted) ;; *) args=\"$args $a\";; esac; done\nexec {real} $args\n",
            real = real.display(),
            log = log.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&shim, fs::Permissions::from_mode(0o755)).unwrap();
    let mut c = cpbackup(&n.dir);
    c.args([
        "--host-root",
        n.root.to_str().unwrap(),
        "restore",
        "--latest",
        "--yes",
    ])
    .arg("--identity")
    .arg(&n.key)
    .arg("--store")
    .arg(&n.store)
    .arg("--etcdutl")
    .arg(&shim)
    .args(["--bump-revision", "12345"])
    // etcd serves the unbumped revision here, so do not wait for the bumped one
    .args(["--wait-timeout", "3"]);
    let _ = run(c);
    let args = fs::read_to_string(&log).unwrap();
    assert!(args.contains("--mark-compacted"), "{args}");
    assert!(
        args.contains("--initial-cluster=cp-1=http://127.0.0.1:"),
        "{args}"
    );
    assert!(args.contains("--initial-cluster-token=cpbackup-"), "{args}");
    let bump: u64 = args
        .split_whitespace()
        .find_map(|a| a.strip_prefix("--bump-revision="))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(bump, 12345, "{args}");
}

#[test]
fn openshift_stages_what_cluster_restore_sh_stages_and_rolls_back() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let ip = unique_loopback_ip();
    let pki = Pki::new(&dir.join("pki"), &[&ip]);
    let etcd = Etcd::start(Version::V35, dir, &ip, 2379, Some(&pki));
    etcd.put("/registry/namespaces/shop", "{}");
    let root = dir.join("host");
    fake_openshift_root(&root, "master-0", &ip, &pki, 3);
    let k = root.join("etc/kubernetes");
    let restore_pod =
        k.join("static-pod-resources/etcd-certs/configmaps/restore-etcd-pod/pod.yaml");
    fs::create_dir_all(restore_pod.parent().unwrap()).unwrap();
    fs::write(&restore_pod, "kind: Pod # restore-etcd-pod\n").unwrap();
    let data = root.join("var/lib/etcd");
    fs::create_dir_all(data.join("member/snap")).unwrap();
    fs::write(data.join("member/snap/db"), "the live database").unwrap();
    fs::write(data.join("revision.json"), r#"{"maxRaftIndex":1234}"#).unwrap();
    let (key, r) = keygen(dir, "k");
    let store = dir.join("store");
    let mut c = cpbackup(dir);
    c.arg("--host-root")
        .arg(&root)
        .args(["backup", "--recipient", &r, "--store"])
        .arg(&store);
    ok(&run(c));
    // After the backup, a revision's file changes on the host.
    let tls = k.join("static-pod-resources/kube-apiserver-pod-3/secrets/serving-cert/tls.key");
    fs::write(&tls, "changed after the backup\n").unwrap();
    let before = tree_digest(&root, &[]);

    let restore = |extra: &[&str]| {
        let mut c = cpbackup(dir);
        c.arg("--host-root")
            .arg(&root)
            .args(["restore", "--yes"])
            .args(extra);
        c
    };
    let latest = [
        "--latest",
        "--identity",
        key.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
    ];
    // Continued by another process, the staging step hashes the staged snapshot again: a copy
    // a crash cut short never reaches the restore pod.
    let mut c = restore(&latest);
    c.env("CPBACKUP_RESTORE_FAILPOINT", "3:after");
    assert_eq!(run(c).status.code(), Some(137));
    let j: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("state/restore/journal.json")).unwrap()).unwrap();
    let staged = Path::new(j["work_dir"].as_str().unwrap()).join("staged/etcd/snapshot.db");
    let mut bytes = fs::read(&staged).unwrap();
    bytes[100] ^= 1;
    fs::write(&staged, &bytes).unwrap();
    let o = run(restore(&["--continue"]));
    fails_with(&o, 1, "no longer matches the backup");
    assert!(!root.join("var/lib/etcd-backup/snapshot.db").exists());
    ok(&run(restore(&["--rollback"])));
    assert_eq!(tree_digest(&root, &["var/lib/etcd-backup"]), before);

    let mut c = restore(&latest);
    // Stop once everything is staged, before waiting for the (absent) restore pod to serve.
    c.env("CPBACKUP_RESTORE_FAILPOINT", "4:after");
    assert_eq!(run(c).status.code(), Some(137));
    let staged_snapshot = root.join("var/lib/etcd-backup/snapshot.db");
    let st = std::process::Command::new(Version::V35.bin("etcdutl"))
        .args(["snapshot", "status", "-w", "json"])
        .arg(&staged_snapshot)
        .output()
        .unwrap();
    assert!(st.status.success(), "{}", stderr(&st));
    assert_eq!(
        fs::read_to_string(root.join("var/lib/etcd-backup/revision.json")).unwrap(),
        r#"{"maxRaftIndex":1234}"#
    );
    assert!(
        fs::read_dir(&data).unwrap().next().is_none(),
        "/var/lib/etcd is empty for the restore pod"
    );
    assert_eq!(
        fs::read_to_string(k.join("manifests/etcd-pod.yaml")).unwrap(),
        "kind: Pod # restore-etcd-pod\n"
    );
    assert_eq!(
        fs::read_to_string(&tls).unwrap(),
        "kube-apiserver key rev 3\n",
        "the backup's revision is back"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&tls).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let j: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("state/restore/journal.json")).unwrap()).unwrap();
    let old = j["steps"][1]["to"].as_str().unwrap();
    assert_eq!(
        fs::read_to_string(Path::new(old).join("member/snap/db")).unwrap(),
        "the live database"
    );

    ok(&run(restore(&["--rollback"])));
    assert_eq!(
        tree_digest(&root, &["var/lib/etcd-backup"]),
        before,
        "rollback restores the tree"
    );
    assert!(!staged_snapshot.exists());
    drop(etcd);
}

#[test]
fn disable_etcd_stops_it_and_rollback_starts_it_again() {
    let n = Node::new(Version::V35);
    let o = n.cmd(&["--disable-etcd", "--yes"]);
    ok(&o);
    assert!(!n.root.join("etc/kubernetes/manifests/etcd.yaml").exists());
    assert!(
        !n.root
            .join("etc/kubernetes/manifests/kube-apiserver.yaml")
            .exists()
    );
    let o = etcdctl(n.version, &n.endpoint, &["get", "/registry/b1"]);
    assert!(!o.status.success(), "etcd is down");
    ok(&n.cmd(&["--rollback", "--yes"]));
    n.assert_original();
}
