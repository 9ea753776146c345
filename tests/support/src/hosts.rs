//! Fake control-plane host roots (OpenShift, kubeadm), a fake kubelet that runs the etcd of
//! a kubeadm manifest, and a digest of a whole tree.

use std::fs;

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::{Pki, Version, settled_api};

/// Lays out an OpenShift master under `root`: etcd.env naming `node`'s peer cert and IP, the
/// four manifests pointing at revision `rev`, a newer unreferenced revision, secrets with 0600,
/// and a symlink pointing out of the tree.
pub fn fake_openshift_root(root: &Path, node: &str, ip: &str, pki: &Pki, rev: u64) {
    settled_api().kubeconfig_for(root);
    let k = root.join("etc/kubernetes");
    let certs = k.join("static-pod-resources/etcd-certs");
    let scripts = certs.join("configmaps/etcd-scripts");
    fs::create_dir_all(&scripts).unwrap();
    fs::create_dir_all(certs.join("configmaps/etcd-all-bundles")).unwrap();
    fs::create_dir_all(certs.join("secrets/etcd-all-certs")).unwrap();
    fs::copy(
        &pki.ca,
        certs.join("configmaps/etcd-all-bundles/server-ca-bundle.crt"),
    )
    .unwrap();
    fs::copy(
        &pki.client_cert,
        certs.join(format!("secrets/etcd-all-certs/etcd-peer-{node}.crt")),
    )
    .unwrap();
    fs::copy(
        &pki.client_key,
        certs.join(format!("secrets/etcd-all-certs/etcd-peer-{node}.key")),
    )
    .unwrap();
    let var = node.replace(['-', '.'], "_");
    fs::write(
        scripts.join("etcd.env"),
        format!(
            "export ALL_ETCD_ENDPOINTS=\"https://{ip}:2379\"\n\
             export ETCDCTL_API=\"3\"\n\
             export ETCDCTL_CACERT=\"/etc/kubernetes/static-pod-certs/configmaps/etcd-all-bundles/server-ca-bundle.crt\"\n\
             export ETCDCTL_CERT=\"/etc/kubernetes/static-pod-certs/secrets/etcd-all-certs/etcd-peer-{node}.crt\"\n\
             export ETCDCTL_ENDPOINTS=\"https://{ip}:2379\"\n\
             export ETCDCTL_KEY=\"/etc/kubernetes/static-pod-certs/secrets/etcd-all-certs/etcd-peer-{node}.key\"\n\
             export NODE_{var}_IP=\"{ip}\"\n\
             export NODE_other_master_IP=\"10.9.9.9\"\n"
        ),
    )
    .unwrap();
    fs::create_dir_all(k.join("manifests")).unwrap();
    for c in [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "etcd",
    ] {
        for n in [rev, rev + 1] {
            let d = k.join(format!("static-pod-resources/{c}-pod-{n}"));
            fs::create_dir_all(d.join("secrets/serving-cert")).unwrap();
            fs::create_dir_all(d.join("configmaps/config")).unwrap();
            let key = d.join("secrets/serving-cert/tls.key");
            fs::write(&key, format!("{c} key rev {n}\n")).unwrap();
            fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
            fs::write(
                d.join("configmaps/config/config.yaml"),
                format!("rev: {n}\n"),
            )
            .unwrap();
            fs::write(d.join(format!("{c}-pod.yaml")), format!("pod {c} {n}\n")).unwrap();
            let _ = symlink("/etc/passwd", d.join("configmaps/config/outside-link"));
        }
        if c == "kube-apiserver" {
            let enc = k.join(format!(
                "static-pod-resources/{c}-pod-{rev}/secrets/encryption-config"
            ));
            fs::create_dir_all(&enc).unwrap();
            fs::write(
                enc.join("encryption-config"),
                "kind: EncryptionConfiguration\n",
            )
            .unwrap();
        }
        fs::write(
            k.join(format!("manifests/{c}-pod.yaml")),
            format!(
                "apiVersion: v1\nkind: Pod\nspec:\n  volumes:\n  - hostPath:\n      path: /etc/kubernetes/static-pod-resources/{c}-pod-{rev}\n    name: resource-dir\n  - hostPath:\n      path: /etc/kubernetes/static-pod-resources/etcd-certs\n"
            ),
        )
        .unwrap();
    }
}

/// Lays out a kubeadm master under `root` with the given etcd client certificates.
pub fn fake_kubeadm_root(root: &Path, pki: &Pki) {
    let k = root.join("etc/kubernetes");
    fs::create_dir_all(k.join("pki/etcd")).unwrap();
    fs::create_dir_all(k.join("manifests")).unwrap();
    fs::copy(&pki.ca, k.join("pki/etcd/ca.crt")).unwrap();
    fs::copy(&pki.client_cert, k.join("pki/apiserver-etcd-client.crt")).unwrap();
    fs::copy(&pki.client_key, k.join("pki/apiserver-etcd-client.key")).unwrap();
    fs::write(k.join("pki/sa.key"), "sa key\n").unwrap();
    fs::set_permissions(k.join("pki/sa.key"), fs::Permissions::from_mode(0o600)).unwrap();
    for m in [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
    ] {
        fs::write(
            k.join(format!("manifests/{m}.yaml")),
            format!("kind: Pod # {m}\n"),
        )
        .unwrap();
    }
    fs::write(k.join("admin.conf"), "kind: Config\n").unwrap();
}

/// A kubeadm-like control-plane host under `root` whose etcd static pod manifest runs a real
/// etcd on 127.0.0.1:`client` (plain HTTP), data in `/var/lib/etcd`.
pub fn fake_kubeadm_node(root: &Path, client: u16, peer: u16) {
    let k = root.join("etc/kubernetes");
    fs::create_dir_all(k.join("pki/etcd")).unwrap();
    fs::create_dir_all(k.join("manifests")).unwrap();
    fs::create_dir_all(root.join("var/lib")).unwrap();
    fs::write(k.join("pki/etcd/ca.crt"), "not used: plain HTTP in tests\n").unwrap();
    fs::write(k.join("pki/sa.key"), "the service account key\n").unwrap();
    fs::set_permissions(k.join("pki/sa.key"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(k.join("admin.conf"), "kind: Config # original\n").unwrap();
    fs::write(
        k.join("manifests/etcd.yaml"),
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: etcd\n  namespace: kube-system\nspec:\n  containers:\n  - command:\n    - etcd\n    - --name=cp-1\n    - --data-dir=/var/lib/etcd\n    - --listen-client-urls=http://127.0.0.1:{client}\n    - --advertise-client-urls=http://127.0.0.1:{client}\n    - --listen-peer-urls=http://127.0.0.1:{peer}\n    - --initial-advertise-peer-urls=http://127.0.0.1:{peer}\n    - --initial-cluster=cp-1=http://127.0.0.1:{peer}\n    - --heartbeat-interval=10\n    - --election-timeout=100\n    image: registry.k8s.io/etcd:3.5.15-0\n    name: etcd\n"
        ),
    )
    .unwrap();
    fs::write(
        k.join("manifests/kube-apiserver.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-apiserver\nspec:\n  containers:\n  - name: kube-apiserver\n    image: registry.k8s.io/kube-apiserver:v1.30.1\n",
    )
    .unwrap();
}

/// One member of a fake kubeadm control plane.
#[derive(Clone, Debug)]
pub struct Master {
    pub name: String,
    pub ip: String,
    pub client: u16,
    pub peer: u16,
}

impl Master {
    pub fn client_url(&self) -> String {
        format!("https://{}:{}", self.ip, self.client)
    }
    pub fn peer_url(&self) -> String {
        format!("https://{}:{}", self.ip, self.peer)
    }
}

/// A kubeadm master `me` of `all` under `root`: etcd with mTLS (clients and peers) from `pki`,
/// kubeadm's file names, an `--initial-cluster` of every master, a stand-in API server manifest.
pub fn fake_kubeadm_master(root: &Path, pki: &Pki, me: &Master, all: &[Master]) {
    let k = root.join("etc/kubernetes");
    fs::create_dir_all(k.join("pki/etcd")).unwrap();
    fs::create_dir_all(k.join("manifests")).unwrap();
    fs::create_dir_all(root.join("var/lib")).unwrap();
    for (from, to) in [
        (&pki.ca, "pki/etcd/ca.crt"),
        (&pki.server_cert, "pki/etcd/server.crt"),
        (&pki.server_key, "pki/etcd/server.key"),
        (&pki.server_cert, "pki/etcd/peer.crt"),
        (&pki.server_key, "pki/etcd/peer.key"),
        (&pki.client_cert, "pki/apiserver-etcd-client.crt"),
        (&pki.client_key, "pki/apiserver-etcd-client.key"),
    ] {
        fs::copy(from, k.join(to)).unwrap();
    }
    fs::write(k.join("pki/sa.key"), "the service account key\n").unwrap();
    fs::set_permissions(k.join("pki/sa.key"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(k.join("admin.conf"), "kind: Config # original\n").unwrap();
    let cluster: Vec<String> = all
        .iter()
        .map(|m| format!("{}={}", m.name, m.peer_url()))
        .collect();
    let p = "/etc/kubernetes/pki/etcd";
    let flags = [
        format!("--name={}", me.name),
        "--data-dir=/var/lib/etcd".into(),
        format!("--listen-client-urls={}", me.client_url()),
        format!("--advertise-client-urls={}", me.client_url()),
        format!("--listen-peer-urls={}", me.peer_url()),
        format!("--initial-advertise-peer-urls={}", me.peer_url()),
        format!("--initial-cluster={}", cluster.join(",")),
        "--initial-cluster-state=new".into(),
        "--initial-cluster-token=test-cluster".into(),
        format!("--cert-file={p}/server.crt"),
        format!("--key-file={p}/server.key"),
        format!("--trusted-ca-file={p}/ca.crt"),
        "--client-cert-auth=true".into(),
        format!("--peer-cert-file={p}/peer.crt"),
        format!("--peer-key-file={p}/peer.key"),
        format!("--peer-trusted-ca-file={p}/ca.crt"),
        "--peer-client-cert-auth=true".into(),
        "--heartbeat-interval=20".into(),
        "--election-timeout=200".into(),
    ];
    let items: String = flags.iter().map(|f| format!("    - {f}\n")).collect();
    fs::write(
        k.join("manifests/etcd.yaml"),
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: etcd\n  namespace: kube-system\nspec:\n  containers:\n  - command:\n    - etcd\n{items}    image: registry.k8s.io/etcd:3.5.15-0\n    name: etcd\n"
        ),
    )
    .unwrap();
    fs::write(
        k.join("manifests/kube-apiserver.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-apiserver\n",
    )
    .unwrap();
}

/// Plays the kubelet for etcd: while `<root>/etc/kubernetes/manifests/etcd.yaml` exists, an
/// etcd runs with the manifest's command (host paths mapped under `root`); when the manifest
/// goes, the process is stopped (SIGTERM). A `cpbackup-etcd-restore.yaml` (restartPolicy
/// Never) runs once to completion, its command's binary taken from the etcd release (the
/// "image"). Everything stops on drop.
pub struct FakeKubelet {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The `command:` list of a pod manifest, JSON-quoted items unquoted.
fn pod_command(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        let t = line.trim_start();
        if t == "command:" {
            inside = true;
            continue;
        }
        if !inside {
            continue;
        }
        let Some(item) = t.strip_prefix("- ") else {
            break;
        };
        out.push(serde_json::from_str::<String>(item).unwrap_or_else(|_| item.to_owned()));
    }
    out
}

/// A host path (or `--flag=/path`) as the fake root holds it.
fn under_root(root: &Path, arg: &str) -> String {
    if arg.starts_with('/') {
        return format!("{}{arg}", root.display());
    }
    match arg.split_once("=/") {
        Some((flag, p)) => format!("{flag}={}/{p}", root.display()),
        None => arg.to_owned(),
    }
}

/// Runs the restore pod's command once per manifest content.
fn run_restore_pod(root: &Path, version: Version, ran: &mut Option<String>) {
    let manifest = root.join("etc/kubernetes/manifests/cpbackup-etcd-restore.yaml");
    let Ok(text) = fs::read_to_string(&manifest) else {
        return;
    };
    if ran.as_deref() == Some(text.as_str()) {
        return;
    }
    *ran = Some(text.clone());
    let cmd = pod_command(&text);
    let Some(bin) = cmd.first().and_then(|c| Path::new(c).file_name()) else {
        return;
    };
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(root.with_extension("kubelet-restore-pod.log"))
        .unwrap();
    let _ = Command::new(version.bin(bin.to_str().unwrap()))
        .args(cmd[1..].iter().map(|a| under_root(root, a)))
        .env("ETCDCTL_API", "3")
        .stdout(Stdio::null())
        .stderr(log)
        .status();
}

fn manifest_command(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim_start)
        .filter_map(|l| l.strip_prefix("- "))
        .map(|l| l.trim().to_owned())
        .filter(|l| l == "etcd" || l.starts_with("--"))
        .collect()
}

impl FakeKubelet {
    pub fn start(root: &Path, version: Version) -> FakeKubelet {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (root, flag) = (root.to_path_buf(), stop.clone());
        let log = root.with_extension("kubelet-etcd.log");
        let thread = std::thread::spawn(move || {
            let manifest = root.join("etc/kubernetes/manifests/etcd.yaml");
            let mut child: Option<Child> = None;
            let mut restored = None;
            while !flag.load(Ordering::SeqCst) {
                run_restore_pod(&root, version, &mut restored);
                let wanted = manifest.is_file();
                if let Some(c) = child.as_mut()
                    && (!wanted || c.try_wait().ok().flatten().is_some())
                {
                    let pid = nix::unistd::Pid::from_raw(c.id() as i32);
                    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
                    let _ = c.wait();
                    child = None;
                }
                if wanted && child.is_none() {
                    let cmd = manifest_command(&fs::read_to_string(&manifest).unwrap_or_default());
                    let args: Vec<String> =
                        cmd.iter().skip(1).map(|a| under_root(&root, a)).collect();
                    let logf = fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&log)
                        .unwrap();
                    child = Command::new(version.bin("etcd"))
                        .args(&args)
                        .env("ETCD_UNSUPPORTED_ARCH", "")
                        .stdout(Stdio::null())
                        .stderr(logf)
                        .spawn()
                        .ok();
                }
                std::thread::sleep(Duration::from_millis(20)); // the kubelet's sync loop
            }
            if let Some(mut c) = child {
                let _ = c.kill();
                let _ = c.wait();
            }
        });
        FakeKubelet {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// SHA-256 of every file (path, mode, content) under `root`, except below the given relative
/// directories; symlinks by target.
pub fn tree_digest(root: &Path, except: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let mut stack = vec![root.to_path_buf()];
    let mut all = Vec::new();
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if except
                .iter()
                .any(|x| rel == *x || rel.starts_with(&format!("{x}/")))
            {
                continue;
            }
            let m = fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p.clone());
            }
            all.push((rel, p, m));
        }
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    for (rel, p, m) in all {
        use std::os::unix::fs::MetadataExt;
        h.update(format!("{rel}\0{:o}\0", m.mode()).as_bytes());
        if m.file_type().is_symlink() {
            h.update(fs::read_link(&p).unwrap().to_string_lossy().as_bytes());
        } else if m.is_file() {
            h.update(fs::read(&p).unwrap());
        }
    }
    hex::encode(h.finalize())
}
