//! The disaster, end to end: three kubeadm-shaped masters (own host roots, own members, mTLS on
//! 127.0.0.1-3, a stand-in kubelet each), objects written, a backup, more writes, two members
//! killed (quorum lost), then exactly the runbook's commands — `--disable-etcd` on the others,
//! the restore on the recovery node, `--rejoin` on the others — and a healthy three-member
//! cluster serving exactly the backup at a bumped revision on every member, with every old data
//! directory kept. Then a rejoin rolled back (the member removed, the node as before) and done
//! again. With etcd 3.4 (etcdctl restores) and 3.5 (etcdutl).

use cpbackup_testkit as support;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::*;

struct ControlPlane {
    _t: tempfile::TempDir,
    dir: PathBuf,
    version: Version,
    pki: Pki,
    masters: Vec<Master>,
    roots: Vec<PathBuf>,
    kubelets: Vec<Option<FakeKubelet>>,
}

impl ControlPlane {
    fn start(version: Version) -> ControlPlane {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().to_path_buf();
        let ips = ["127.0.0.1", "127.0.0.2", "127.0.0.3"];
        let pki = Pki::new(&dir.join("pki"), &ips);
        let masters: Vec<Master> = ips
            .iter()
            .enumerate()
            .map(|(i, ip)| Master {
                name: format!("cp-{}", i + 1),
                ip: ip.to_string(),
                client: free_port(),
                peer: free_port(),
            })
            .collect();
        let roots: Vec<PathBuf> = (1..=3).map(|i| dir.join(format!("cp-{i}"))).collect();
        for (m, root) in masters.iter().zip(&roots) {
            fake_kubeadm_master(root, &pki, m, &masters);
        }
        let kubelets = roots
            .iter()
            .map(|r| Some(FakeKubelet::start(r, version)))
            .collect();
        let cp = ControlPlane {
            _t: t,
            dir,
            version,
            pki,
            masters,
            roots,
            kubelets,
        };
        for i in 0..3 {
            cp.wait_healthy(i);
        }
        cp
    }

    fn ctl(&self, i: usize, args: &[&str]) -> std::process::Output {
        etcdctl_tls(self.version, &self.pki, &self.masters[i].client_url(), args)
    }

    fn put(&self, i: usize, k: &str, v: &str) {
        let o = self.ctl(i, &["put", k, v]);
        assert!(o.status.success(), "{}", stderr(&o));
    }

    /// Polls until member `i` answers a linearizable read (it is part of a cluster with a
    /// leader and has caught up).
    fn wait_healthy(&self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let o = self.ctl(i, &["get", "/health-probe"]);
            if o.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "member {} never became healthy: {}",
                self.masters[i].name,
                stderr(&o)
            );
            std::thread::sleep(Duration::from_millis(50)); // readiness poll
        }
    }

    /// `cpbackup --host-root <node i> restore …`
    fn restore(&self, i: usize, args: &[&str]) -> std::process::Output {
        let mut c = cpbackup(&self.dir);
        c.args(["--host-root", self.roots[i].to_str().unwrap(), "restore"])
            .arg("--state-dir")
            .arg(self.dir.join(format!("state-{i}")))
            .args(["--wait-timeout", "60"])
            .args(args);
        run(c)
    }

    /// Every key under /registry and its value, as member `i` holds it (serializable read).
    fn keys_on(&self, i: usize) -> Vec<String> {
        let o = self.ctl(i, &["get", "/registry", "--prefix", "--consistency=s"]);
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o).lines().map(str::to_owned).collect()
    }

    fn members(&self, i: usize) -> serde_json::Value {
        let o = self.ctl(i, &["member", "list", "-w", "json"]);
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    }

    fn revision(&self, i: usize) -> i64 {
        let o = self.ctl(i, &["endpoint", "status", "-w", "json"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v[0]["Status"]["header"]["revision"].as_i64().unwrap()
    }

    /// Voting, started members (names), as member `i` lists them.
    fn voting(&self, i: usize) -> Vec<String> {
        let mut v: Vec<String> = self.members(i)["members"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["isLearner"].as_bool() != Some(true))
            .filter_map(|m| m["name"].as_str().filter(|n| !n.is_empty()))
            .map(str::to_owned)
            .collect();
        v.sort();
        v
    }
}

impl ControlPlane {
    /// Asserts success; a failure shows the end of every member's etcd log too.
    fn ok(&self, o: &std::process::Output) {
        if o.status.success() {
            return;
        }
        let mut logs = String::new();
        for r in &self.roots {
            let text = fs::read_to_string(r.with_extension("kubelet-etcd.log")).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(25).collect();
            logs.push_str(&format!("\n--- {}:\n", r.display()));
            for l in tail.into_iter().rev() {
                logs.push_str(l);
                logs.push('\n');
            }
        }
        panic!("stdout: {}\nstderr: {}{logs}", stdout(o), stderr(o));
    }
}

fn aside_dirs(root: &Path) -> Vec<PathBuf> {
    fs::read_dir(root.join("var/lib"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("etcd.before-restore-")
        })
        .collect()
}

fn disaster(version: Version) {
    let mut cp = ControlPlane::start(version);
    for k in ["a1", "a2", "a3"] {
        cp.put(0, &format!("/registry/{k}"), "before");
    }
    let (key, recipient) = keygen(&cp.dir, "k");
    let store = cp.dir.join("store");
    let mut c = cpbackup(&cp.dir);
    c.args(["--host-root", cp.roots[0].to_str().unwrap(), "backup"])
        .args(["--recipient", &recipient, "--node-name", "cp-1"])
        .args(["--etcd-endpoint", &cp.masters[0].client_url()])
        .arg("--store")
        .arg(&store);
    cp.ok(&run(c));
    let backup_keys = cp.keys_on(0);
    assert_eq!(backup_keys.len(), 6, "{backup_keys:?}");
    cp.put(0, "/registry/b1", "after");
    cp.put(0, "/registry/a1", "after");
    let seen = cp.revision(0);

    // Two masters die: quorum is lost.
    cp.kubelets[1] = None;
    cp.kubelets[2] = None;
    assert!(!cp.ctl(0, &["put", "/registry/x", "y"]).status.success());

    // The runbook. On the others: stop etcd. (The nodes are back, their kubelets running.)
    for i in [1, 2] {
        cp.ok(&cp.restore(i, &["--disable-etcd", "--yes"]));
        cp.kubelets[i] = Some(FakeKubelet::start(&cp.roots[i], version));
    }
    // On the recovery node: the restore.
    let tool = match version {
        Version::V34 => version.bin("etcdctl"),
        Version::V35 => version.bin("etcdutl"),
    };
    let o = cp.restore(
        0,
        &[
            "--identity",
            key.to_str().unwrap(),
            "--store",
            store.to_str().unwrap(),
            "--etcdutl",
            tool.to_str().unwrap(),
            "--latest",
            "--yes",
        ],
    );
    cp.ok(&o);
    let via = cp.masters[0].client_url();
    assert!(
        stdout(&o).contains(&format!("--rejoin --etcd-endpoint {via} --dry-run")),
        "the next steps give the rejoin to copy: {}",
        stdout(&o)
    );
    // A dry run on a rejoining node shows the plan and changes nothing.
    let before = tree_digest(&cp.roots[1], &[]);
    let o = cp.restore(1, &["--rejoin", "--etcd-endpoint", &via, "--dry-run"]);
    cp.ok(&o);
    assert!(stdout(&o).contains("add member cp-2"), "{}", stdout(&o));
    assert_eq!(
        tree_digest(&cp.roots[1], &[]),
        before,
        "the dry run changed the node"
    );
    assert_eq!(cp.voting(0), ["cp-1"]);
    // On the others: rejoin.
    for i in [1, 2] {
        cp.ok(&cp.restore(i, &["--rejoin", "--etcd-endpoint", &via, "--yes"]));
    }

    // Three started, voting, healthy members, each with exactly the backup's data, bumped.
    for i in 0..3 {
        cp.wait_healthy(i);
        assert_eq!(cp.voting(i), ["cp-1", "cp-2", "cp-3"]);
        assert_eq!(cp.keys_on(i), backup_keys, "member {} data", i + 1);
        assert!(
            cp.revision(i) > seen + 999_000_000,
            "member {} revision",
            i + 1
        );
    }
    // Every old data directory is kept.
    for root in &cp.roots {
        let kept = aside_dirs(root);
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert!(kept[0].join("member/snap/db").is_file());
    }
    // The cluster takes writes, replicated to every member.
    cp.put(2, "/registry/c1", "new");
    for i in 0..3 {
        let o = cp.ctl(i, &["get", "/registry/c1", "--print-value-only"]);
        assert_eq!(stdout(&o).trim(), "new");
    }

    // A rejoin rolled back: the member is removed and the node is as before (its etcd stopped,
    // its own old data back); then rejoined again.
    cp.ok(&cp.restore(2, &["--rollback", "--yes"]));
    assert_eq!(cp.voting(0), ["cp-1", "cp-2"]);
    assert!(
        cp.roots[2]
            .join("etc/kubernetes/manifests/etcd.yaml")
            .is_file()
    );
    assert!(
        aside_dirs(&cp.roots[2]).is_empty(),
        "the old data is back in place"
    );
    cp.ok(&cp.restore(2, &["--disable-etcd", "--yes"]));
    // Killed right after the member was added; --continue finishes the rejoin.
    let mut c = cpbackup(&cp.dir);
    c.args(["--host-root", cp.roots[2].to_str().unwrap(), "restore"])
        .arg("--state-dir")
        .arg(cp.dir.join("state-2"))
        .args(["--rejoin", "--etcd-endpoint", &via, "--yes"])
        .env("CPBACKUP_RESTORE_FAILPOINT", "4:after");
    assert_eq!(run(c).status.code(), Some(137));
    let pending: Vec<String> = cp.members(0)["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["name"].as_str().is_none_or(str::is_empty))
        .map(|m| m["peerURLs"][0].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(pending, [cp.masters[2].peer_url()], "added, not started");
    cp.ok(&cp.restore(2, &["--continue"]));
    cp.wait_healthy(2);
    assert_eq!(cp.voting(0), ["cp-1", "cp-2", "cp-3"]);
    let o = cp.ctl(
        2,
        &[
            "get",
            "/registry/c1",
            "--print-value-only",
            "--consistency=s",
        ],
    );
    assert_eq!(stdout(&o).trim(), "new");
}

#[test]
fn three_masters_quorum_lost_restored_and_rejoined_etcd35() {
    disaster(Version::V35);
}

#[test]
fn three_masters_quorum_lost_restored_and_rejoined_etcd34() {
    disaster(Version::V34);
}
