//! `cpbackup doctor` on a kubeadm-shaped host with a real etcd 3.5 (mTLS, certificates laid out
//! as kubeadm does), a local store and moto S3: all OK when healthy, and each broken thing named
//! with its fix while the other checks still run.

use cpbackup_testkit as support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;
use support::*;

struct Node {
    _t: tempfile::TempDir,
    dir: PathBuf,
    root: PathBuf,
    pki: Pki,
    etcd: Etcd,
    recipient: String,
    store: PathBuf,
}

const ETCD_MANIFEST: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: etcd\nspec:\n  containers:\n  - command:\n    - etcd\n    - --name=cp-1\n    - --data-dir=/var/lib/etcd\n    - --initial-advertise-peer-urls=https://127.0.0.1:2380\n    - --quota-backend-bytes=8589934592\n    image: registry.k8s.io/etcd:3.5.15-0\n    name: etcd\n";

impl Node {
    /// A healthy node: etcd answers with the discovered certificates, a backup is in the
    /// store, the timer is enabled, etcdutl is on PATH.
    fn healthy() -> Node {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().to_path_buf();
        let ip = unique_loopback_ip();
        let pki = Pki::new(&dir.join("pki"), &[&ip]);
        let etcd = Etcd::start(Version::V35, &dir, &ip, free_port(), Some(&pki));
        etcd.put("/registry/namespaces/shop", "{}");
        let root = dir.join("host");
        fake_kubeadm_root(&root, &pki);
        fs::write(
            root.join("etc/kubernetes/manifests/etcd.yaml"),
            ETCD_MANIFEST,
        )
        .unwrap();
        let wants = root.join("etc/systemd/system/timers.target.wants");
        fs::create_dir_all(&wants).unwrap();
        std::os::unix::fs::symlink(
            "/etc/systemd/system/cpbackup-backup.timer",
            wants.join("cpbackup-backup.timer"),
        )
        .unwrap();
        let (_, recipient) = keygen(&dir, "k");
        let n = Node {
            _t: t,
            store: dir.join("store"),
            dir,
            root,
            pki,
            etcd,
            recipient,
        };
        let mut c = cpbackup(&n.dir);
        c.arg("--host-root").arg(&n.root).arg("backup");
        c.args(n.common())
            .arg("--metrics-textfile")
            .arg(n.dir.join("cpbackup.prom"));
        let o = run(c);
        assert!(o.status.success(), "backup: {}", stderr(&o));
        n
    }

    fn common(&self) -> Vec<String> {
        vec![
            "--etcd-endpoint".into(),
            self.etcd.endpoint.clone(),
            "--recipient".into(),
            self.recipient.clone(),
            "--node-name".into(),
            "cp-1".into(),
            "--cluster-name".into(),
            "c1".into(),
            "--store".into(),
            self.store.display().to_string(),
        ]
    }

    /// `doctor --output json` with the node's settings, `extra` (FLAG VALUE pairs) taking the
    /// place of the same flags there.
    fn doctor_with(&self, extra: &[&str], store: Option<&str>, env: &[(&str, &str)]) -> Output {
        let mut args = self.common();
        let mut extra: Vec<&str> = extra.to_vec();
        if let Some(s) = store {
            extra.extend(["--store", s]);
        }
        for pair in extra.chunks(2) {
            match args.iter().position(|a| a == pair[0]) {
                Some(i) => args[i + 1] = pair[1].to_owned(),
                None => args.extend(pair.iter().map(|a| a.to_string())),
            }
        }
        let mut c = cpbackup(&self.dir);
        c.arg("--host-root")
            .arg(&self.root)
            .args(["--output", "json", "doctor"])
            .args(args)
            .env(
                "PATH",
                path_with(Version::V35.bin("etcdutl").parent().unwrap()),
            );
        for (k, v) in env {
            c.env(k, v);
        }
        run(c)
    }

    fn doctor(&self, extra: &[&str]) -> Output {
        self.doctor_with(extra, None, &[])
    }
}

fn path_with(dir: &Path) -> String {
    format!("{}:/usr/bin:/bin", dir.display())
}

fn report(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("bad JSON ({e}): {}\n{}", stdout(o), stderr(o)))
}

/// The check whose name starts with `name`.
fn check<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str().unwrap().starts_with(name))
        .unwrap_or_else(|| panic!("no check {name} in {r:#}"))
}

/// `name` failed with a fix, and the command exited 1 naming it.
fn failed<'a>(o: &Output, r: &'a Value, name: &str) -> &'a Value {
    assert_eq!(o.status.code(), Some(1), "{}", stderr(o));
    assert!(stderr(o).contains(name), "{}", stderr(o));
    let c = check(r, name);
    assert_eq!(c["status"], "fail", "{c:#}");
    assert!(!c["fix"].as_str().unwrap_or("").is_empty(), "{c:#}");
    c
}

#[test]
fn a_healthy_kubeadm_node_is_all_ok() {
    let n = Node::healthy();
    let o = n.doctor(&[]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let r = report(&o);
    assert_eq!(r["status"], "ok", "{r:#}");
    for name in [
        "platform",
        "static pod resources",
        "etcd",
        "etcd database size",
        "certificates",
        "recipients",
        "store ",
        "newest backup",
        "free space",
        "restore tool",
        "schedule",
    ] {
        assert_eq!(check(&r, name)["status"], "ok", "{name}: {r:#}");
    }
    assert!(
        check(&r, "newest backup")["detail"]
            .as_str()
            .unwrap()
            .starts_with("c1/cp-1/")
    );
    assert!(
        check(&r, "etcd database size")["detail"]
            .as_str()
            .unwrap()
            .contains("8.0 GiB quota"),
        "{r:#}"
    );
    assert!(
        check(&r, "restore tool")["detail"]
            .as_str()
            .unwrap()
            .contains("etcdutl")
    );
    // The kubeadm certificates the backup carries, each with its expiry.
    let certs: Vec<&str> = r["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path"].as_str().unwrap())
        .collect();
    assert!(
        certs.iter().any(|p| p.ends_with("pki/etcd/ca.crt")),
        "{certs:?}"
    );
    assert!(
        certs
            .iter()
            .any(|p| p.ends_with("apiserver-etcd-client.crt"))
    );
    // The backup exported the same dates, by the host's own paths, for the expiry alerts.
    let ca = r["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["path"].as_str().unwrap().ends_with("pki/etcd/ca.crt"))
        .unwrap()["not_after"]
        .as_i64()
        .unwrap();
    let prom = fs::read_to_string(n.dir.join("cpbackup.prom")).unwrap();
    let want = format!(
        "cpbackup_certificate_expiry_timestamp_seconds{{path=\"/etc/kubernetes/pki/etcd/ca.crt\"}} {ca}"
    );
    assert!(prom.lines().any(|l| l == want), "{want} not in\n{prom}");
    // The write probe left nothing a listing shows.
    let leftovers: Vec<_> = walk(&n.store)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("probe"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // The text for people: one line per check, a summary, exit 0.
    let mut c = cpbackup(&n.dir);
    c.arg("--host-root")
        .arg(&n.root)
        .arg("doctor")
        .args(n.common());
    c.env(
        "PATH",
        path_with(Version::V35.bin("etcdutl").parent().unwrap()),
    );
    let o = run(c);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("OK    platform"), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("11 OK, 0 WARN, 0 FAIL"),
        "{}",
        stdout(&o)
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn expired_certificate() -> String {
    let mut p = rcgen::CertificateParams::new(vec!["kube-apiserver".into()]).unwrap();
    p.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(400);
    p.not_after = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    let key = rcgen::KeyPair::generate().unwrap();
    p.self_signed(&key).unwrap().pem()
}

#[test]
fn each_broken_thing_is_named_with_its_fix() {
    let n = Node::healthy();

    // etcd down: named, and the checks that do not need etcd still run.
    let down = format!("https://127.0.0.1:{}", free_port());
    let o = n.doctor(&["--etcd-endpoint", &down, "--etcd-connect-timeout", "3"]);
    let r = report(&o);
    let c = failed(&o, &r, "etcd");
    assert!(c["detail"].as_str().unwrap().contains(&down), "{c:#}");
    assert_eq!(check(&r, "certificates")["status"], "ok");
    assert_eq!(check(&r, "store ")["status"], "ok");

    // A CA that did not sign etcd's certificate.
    let other = Pki::new(&n.dir.join("other-pki"), &["127.0.0.1"]);
    let o = n.doctor(&[
        "--etcd-cacert",
        other.ca.to_str().unwrap(),
        "--etcd-connect-timeout",
        "3",
    ]);
    let r = report(&o);
    let c = failed(&o, &r, "etcd");
    assert!(
        c["detail"].as_str().unwrap().contains("other-pki/ca"),
        "{c:#}"
    );

    // An expired certificate among the static pod resources.
    let expired = n.root.join("etc/kubernetes/pki/apiserver.crt");
    fs::write(&expired, expired_certificate()).unwrap();
    let o = n.doctor(&[]);
    let r = report(&o);
    let c = failed(&o, &r, "certificates");
    assert!(
        c["detail"].as_str().unwrap().contains("pki/apiserver.crt"),
        "{c:#}"
    );
    assert!(c["detail"].as_str().unwrap().contains("1 of "), "{c:#}");
    fs::remove_file(&expired).unwrap();

    // A store that cannot be written.
    let file = n.dir.join("a-file");
    fs::write(&file, "").unwrap();
    let bad = file.join("store");
    let o = n.doctor_with(&[], Some(bad.to_str().unwrap()), &[]);
    let r = report(&o);
    let c = failed(&o, &r, "store ");
    assert!(
        c["detail"].as_str().unwrap().contains("not writable"),
        "{c:#}"
    );

    // No etcdutl or etcdctl anywhere, and no etcd image to take one from.
    fs::write(
        n.root.join("etc/kubernetes/manifests/etcd.yaml"),
        ETCD_MANIFEST.replace("    image: registry.k8s.io/etcd:3.5.15-0\n", ""),
    )
    .unwrap();
    let o = n.doctor_with(&[], None, &[("PATH", "/nonexistent")]);
    let r = report(&o);
    failed(&o, &r, "restore tool");
    // With the image named, the restore runs the image's tool: OK again.
    fs::write(
        n.root.join("etc/kubernetes/manifests/etcd.yaml"),
        ETCD_MANIFEST,
    )
    .unwrap();
    let o = n.doctor_with(&[], None, &[("PATH", "/nonexistent")]);
    let r = report(&o);
    assert!(o.status.success(), "{r:#}");
    assert!(
        check(&r, "restore tool")["detail"]
            .as_str()
            .unwrap()
            .contains("etcd's image registry.k8s.io/etcd:3.5.15-0"),
        "{r:#}"
    );
    // A planted backup dated 2099 (anyone with PutObject can write one) must not make the
    // newest backup look fresh forever: it counts for nothing, as for --latest.
    let node_dir = n.store.join("c1/cp-1");
    let real = walk(&node_dir)
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "cpb"))
        .unwrap();
    fs::copy(&real, node_dir.join("20991231T000000Z-rev999.cpb")).unwrap();
    fs::copy(
        real.with_extension("cpb.json"),
        node_dir.join("20991231T000000Z-rev999.cpb.json"),
    )
    .unwrap();
    let o = n.doctor(&[]);
    let r = report(&o);
    let c = check(&r, "newest backup");
    assert_eq!(c["status"], "ok", "{c:#}");
    let detail = c["detail"].as_str().unwrap();
    assert!(!detail.contains("2099"), "{c:#}");
    assert!(
        detail.contains(real.file_name().unwrap().to_str().unwrap()),
        "{c:#}"
    );
    let _ = &n.pki;
}

#[test]
fn s3_stores_are_checked_for_object_lock_and_the_clock() {
    let n = Node::healthy();
    let moto = Moto::start(&n.dir);
    moto.create_bucket("locked", true);
    moto.create_bucket("mutable", false);
    let s3_env = |endpoint: &str| {
        vec![
            ("AWS_ACCESS_KEY_ID", "test".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
            ("CPBACKUP_S3_ENDPOINT", endpoint.to_owned()),
            ("CPBACKUP_S3_PATH_STYLE", "true".to_owned()),
        ]
    };
    let doctor = |store: &str, endpoint: &str| {
        let env = s3_env(endpoint);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        n.doctor_with(&[], Some(store), &env)
    };

    let o = doctor("s3://locked/backups", &moto.endpoint);
    let r = report(&o);
    assert!(o.status.success(), "{r:#}\n{}", stderr(&o));
    let c = check(&r, "store s3://locked");
    assert_eq!(c["status"], "ok", "{c:#}");
    assert!(
        c["detail"].as_str().unwrap().contains("Object Lock on"),
        "{c:#}"
    );
    assert!(
        c["detail"].as_str().unwrap().contains("clock within"),
        "{c:#}"
    );
    // The probe is hidden behind a delete marker: nothing to list.
    let keys = moto
        .py("print([o['Key'] for o in s3.list_objects_v2(Bucket='locked').get('Contents', [])])");
    assert_eq!(keys.trim(), "[]");

    let o = doctor("s3://mutable/backups", &moto.endpoint);
    let r = report(&o);
    let c = failed(&o, &r, "store s3://mutable");
    assert!(
        c["detail"].as_str().unwrap().contains("no Object Lock"),
        "{c:#}"
    );

    // A store whose clock says 2024: the node's clock is named as off.
    let proxy = DateRewrite::start(
        moto.endpoint.trim_start_matches("http://"),
        "Mon, 01 Jan 2024 00:00:00 GMT",
    );
    let o = doctor("s3://locked/backups", &format!("http://{}", proxy.addr));
    let r = report(&o);
    let c = failed(&o, &r, "store s3://locked");
    assert!(
        c["detail"]
            .as_str()
            .unwrap()
            .contains("ahead of the store's"),
        "{c:#}"
    );
    assert!(c["fix"].as_str().unwrap().contains("time"), "{c:#}");
}
