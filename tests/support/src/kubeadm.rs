//! A kubeadm control-plane host as `kubeadm init` lays it out, with real certificates: the
//! cluster, etcd and front-proxy CAs, every leaf with kubeadm's names, subjects and usages, RSA
//! keys in kubeadm's PKCS#1 form (made by the openssl CLI), the four static pod manifests and
//! the kubeconfigs — for restores that must re-issue them.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::Pki;

/// One kubeadm master: its node name, address, and etcd's client and peer ports.
#[derive(Clone, Debug)]
pub struct KubeadmHost {
    pub name: String,
    pub ip: String,
    pub client: u16,
    pub peer: u16,
}

/// An RSA-2048 key: (PKCS#1 PEM as kubeadm writes it, the key pair to sign with).
fn rsa_key() -> (String, KeyPair) {
    let out = Command::new("openssl")
        .args(["genrsa", "-traditional", "2048"])
        .output()
        .expect("openssl runs");
    assert!(out.status.success(), "openssl genrsa failed");
    let pkcs1 = String::from_utf8(out.stdout).unwrap();
    let mut p8 = Command::new("openssl")
        .args(["pkcs8", "-topk8", "-nocrypt"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    p8.stdin
        .take()
        .unwrap()
        .write_all(pkcs1.as_bytes())
        .unwrap();
    let out = p8.wait_with_output().unwrap();
    let key = KeyPair::from_pem(&String::from_utf8(out.stdout).unwrap()).unwrap();
    (pkcs1, key)
}

fn write(path: &Path, text: &str, mode: u32) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
}

fn ca(pki: &Path, name: &str, cn: &str) -> Ca {
    let (pkcs1, key) = rsa_key();
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
        KeyUsagePurpose::KeyCertSign,
    ];
    let pem = p.self_signed(&key).unwrap().pem();
    write(&pki.join(format!("{name}.crt")), &pem, 0o644);
    write(&pki.join(format!("{name}.key")), &pkcs1, 0o600);
    Ca {
        params: p,
        key,
        pem,
    }
}

fn leaf(pki: &Path, name: &str, ca: &Ca, cn: &str, org: Option<&str>, sans: &[&str], server: bool) {
    let (pkcs1, key) = rsa_key();
    let mut p = CertificateParams::default();
    if let Some(o) = org {
        p.distinguished_name.push(DnType::OrganizationName, o);
    }
    p.distinguished_name.push(DnType::CommonName, cn);
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = if server && sans.contains(&"localhost") {
        vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ]
    } else if server {
        vec![ExtendedKeyUsagePurpose::ServerAuth]
    } else {
        vec![ExtendedKeyUsagePurpose::ClientAuth]
    };
    p.subject_alt_names = sans
        .iter()
        .map(|s| match s.parse() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName((*s).try_into().unwrap()),
        })
        .collect();
    p.use_authority_key_identifier_extension = true;
    let issuer = Issuer::new(ca.params.clone(), &ca.key);
    let pem = p.signed_by(&key, &issuer).unwrap().pem();
    write(&pki.join(format!("{name}.crt")), &pem, 0o644);
    write(&pki.join(format!("{name}.key")), &pkcs1, 0o600);
}

/// Lays out `<root>/etc/kubernetes` as `kubeadm init` would on `me` (one master), with
/// `controlPlaneEndpoint` `cpe`; returns etcd's CA and the API server's etcd client
/// certificate, for etcdctl.
pub fn kubeadm_init_root(root: &Path, me: &KubeadmHost, cpe: &str) -> Pki {
    let k = root.join("etc/kubernetes");
    let pki = k.join("pki");
    fs::create_dir_all(root.join("var/lib")).unwrap();
    let cluster = ca(&pki, "ca", "kubernetes");
    let etcd = ca(&pki, "etcd/ca", "etcd-ca");
    let front = ca(&pki, "front-proxy-ca", "front-proxy-ca");
    let (n, ip) = (me.name.as_str(), me.ip.as_str());
    leaf(
        &pki,
        "apiserver",
        &cluster,
        "kube-apiserver",
        None,
        &[
            n,
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
            "10.96.0.1",
            ip,
            cpe,
        ],
        true,
    );
    leaf(
        &pki,
        "apiserver-kubelet-client",
        &cluster,
        "kube-apiserver-kubelet-client",
        Some("kubeadm:cluster-admins"),
        &[],
        false,
    );
    leaf(
        &pki,
        "front-proxy-client",
        &front,
        "front-proxy-client",
        None,
        &[],
        false,
    );
    let etcd_sans = [n, "localhost", ip, "127.0.0.1", "::1"];
    leaf(&pki, "etcd/server", &etcd, n, None, &etcd_sans, true);
    leaf(&pki, "etcd/peer", &etcd, n, None, &etcd_sans, true);
    leaf(
        &pki,
        "etcd/healthcheck-client",
        &etcd,
        "kube-etcd-healthcheck-client",
        None,
        &[],
        false,
    );
    leaf(
        &pki,
        "apiserver-etcd-client",
        &etcd,
        "kube-apiserver-etcd-client",
        None,
        &[],
        false,
    );
    let (sa, _) = rsa_key();
    write(&pki.join("sa.key"), &sa, 0o600);
    let (c, p) = (me.client, me.peer);
    let e = "/etc/kubernetes/pki/etcd";
    let etcd_flags = [
        format!("--advertise-client-urls=https://{ip}:{c}"),
        format!("--cert-file={e}/server.crt"),
        "--client-cert-auth=true".into(),
        "--data-dir=/var/lib/etcd".into(),
        format!("--initial-advertise-peer-urls=https://{ip}:{p}"),
        format!("--initial-cluster={n}=https://{ip}:{p}"),
        format!("--key-file={e}/server.key"),
        // kubeadm also listens on 127.0.0.1: left out so that hosts on one machine do not clash
        format!("--listen-client-urls=https://{ip}:{c}"),
        format!("--listen-peer-urls=https://{ip}:{p}"),
        format!("--name={n}"),
        format!("--peer-cert-file={e}/peer.crt"),
        "--peer-client-cert-auth=true".into(),
        format!("--peer-key-file={e}/peer.key"),
        format!("--peer-trusted-ca-file={e}/ca.crt"),
        format!("--trusted-ca-file={e}/ca.crt"),
        "--heartbeat-interval=20".into(),
        "--election-timeout=200".into(),
    ];
    let items: String = etcd_flags.iter().map(|f| format!("    - {f}\n")).collect();
    write(
        &k.join("manifests/etcd.yaml"),
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  annotations:\n    kubeadm.kubernetes.io/etcd.advertise-client-urls: https://{ip}:{c}\n  labels:\n    component: etcd\n    tier: control-plane\n  name: etcd\n  namespace: kube-system\nspec:\n  containers:\n  - command:\n    - etcd\n{items}    image: registry.k8s.io/etcd:3.5.15-0\n    name: etcd\n"
        ),
        0o600,
    );
    write(
        &k.join("manifests/kube-apiserver.yaml"),
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  annotations:\n    kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint: {ip}:6443\n  name: kube-apiserver\n  namespace: kube-system\nspec:\n  containers:\n  - command:\n    - kube-apiserver\n    - --advertise-address={ip}\n    - --etcd-servers=https://127.0.0.1:{c}\n    - --service-cluster-ip-range=10.96.0.0/12\n    image: registry.k8s.io/kube-apiserver:v1.31.2\n    livenessProbe:\n      httpGet:\n        host: {ip}\n        path: /livez\n        port: 6443\n    name: kube-apiserver\n"
        ),
        0o600,
    );
    for c in ["kube-controller-manager", "kube-scheduler"] {
        write(
            &k.join(format!("manifests/{c}.yaml")),
            &format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {c}\n  namespace: kube-system\nspec:\n  containers:\n  - command:\n    - {c}\n    image: registry.k8s.io/{c}:v1.31.2\n    name: {c}\n"
            ),
            0o600,
        );
    }
    let conf = |user: &str, server: &str, creds: &str| {
        format!(
            "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: Q0E=\n    server: https://{server}:6443\n  name: kubernetes\ncontexts:\n- context:\n    cluster: kubernetes\n    user: {user}\n  name: {user}@kubernetes\ncurrent-context: {user}@kubernetes\nkind: Config\nusers:\n- name: {user}\n  user:\n{creds}"
        )
    };
    let inline = "    client-certificate-data: Q0VSVA==\n    client-key-data: S0VZ\n";
    write(
        &k.join("admin.conf"),
        &conf("kubernetes-admin", cpe, inline),
        0o600,
    );
    write(
        &k.join("controller-manager.conf"),
        &conf("system:kube-controller-manager", ip, inline),
        0o600,
    );
    write(
        &k.join("scheduler.conf"),
        &conf("system:kube-scheduler", ip, inline),
        0o600,
    );
    let files = "    client-certificate: /var/lib/kubelet/pki/kubelet-client-current.pem\n    client-key: /var/lib/kubelet/pki/kubelet-client-current.pem\n";
    write(
        &k.join("kubelet.conf"),
        &conf(&format!("system:node:{n}"), cpe, files),
        0o600,
    );
    let _ = cluster.pem;
    Pki {
        dir: pki.clone(),
        ca: pki.join("etcd/ca.crt"),
        server_cert: pki.join("etcd/server.crt"),
        server_key: pki.join("etcd/server.key"),
        client_cert: pki.join("apiserver-etcd-client.crt"),
        client_key: pki.join("apiserver-etcd-client.key"),
    }
}
