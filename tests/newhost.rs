//! Restore onto a new machine: a kubeadm master with real certificates (kubeadm's layout, RSA
//! keys in PKCS#1) on loopback address A is backed up and lost; a fresh host root with another
//! name and address B is restored with `--new-host`. etcd serves on B to a client that trusts
//! only the original CA, the re-issued certificates name B and not A, the manifests and
//! kubeconfigs name B, the kubelet has a certificate for its new name, and the old master's
//! leases, Node and the `kubernetes` endpoints are gone from etcd and kept in the clean-up file.
//! Then a second fresh machine on address C joins the restored cluster as a master
//! (`--rejoin --new-host`), its files from the same backup.

use cpbackup_testkit as support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::*;

const V: Version = Version::V35;
const A: &str = "127.0.0.11";
const B: &str = "127.0.0.12";
const C: &str = "127.0.0.13";

fn wait_serving(pki: &Pki, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let o = etcdctl_tls(V, pki, url, &["get", "/health-probe"]);
        if o.status.success() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "etcd at {url} never served: {}",
            stderr(&o)
        );
        std::thread::sleep(Duration::from_millis(50)); // readiness poll
    }
}

fn put(pki: &Pki, url: &str, k: &str, v: &str, extra: &[&str]) {
    let mut args = vec!["put", k, v];
    args.extend_from_slice(extra);
    let o = etcdctl_tls(V, pki, url, &args);
    assert!(o.status.success(), "{}", stderr(&o));
}

fn sans(crt: &Path) -> String {
    let o = Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
        .arg(crt)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
}

fn restore(dir: &Path, root: &Path, args: &[&str]) -> std::process::Output {
    let mut c = cpbackup(dir);
    c.args(["--host-root", root.to_str().unwrap(), "restore"])
        .arg("--state-dir")
        .arg(root.join("var/lib/cpbackup"))
        .args(["--wait-timeout", "60"])
        .args(args);
    run(c)
}

fn files_named(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == name) {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn a_kubeadm_cluster_comes_back_on_a_new_host_with_another_name_and_address() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let old = KubeadmHost {
        name: "cp-old".into(),
        ip: A.into(),
        client: free_port(),
        peer: free_port(),
    };
    let old_root = dir.join("old");
    let host_pki = kubeadm_init_root(&old_root, &old, "cp.example.test");
    // The operator's own copy of the CA and a client certificate, outside the lost host.
    let kept = dir.join("operator");
    fs::create_dir_all(&kept).unwrap();
    for (from, to) in [
        (&host_pki.ca, "etcd-ca.crt"),
        (&host_pki.client_cert, "client.crt"),
        (&host_pki.client_key, "client.key"),
    ] {
        fs::copy(from, kept.join(to)).unwrap();
    }
    fs::copy(
        old_root.join("etc/kubernetes/pki/ca.crt"),
        kept.join("ca.crt"),
    )
    .unwrap();
    let client = Pki {
        dir: kept.clone(),
        ca: kept.join("etcd-ca.crt"),
        server_cert: PathBuf::new(),
        server_key: PathBuf::new(),
        client_cert: kept.join("client.crt"),
        client_key: kept.join("client.key"),
    };
    let old_kubelet = FakeKubelet::start(&old_root, V);
    let a_url = format!("https://{A}:{}", old.client);
    wait_serving(&client, &a_url);

    // A cluster's worth of what matters here.
    let lease = etcdctl_tls(V, &client, &a_url, &["lease", "grant", "3600"]);
    let lease_id = stdout(&lease).split_whitespace().nth(1).unwrap().to_owned();
    let masterlease = format!(
        r#"{{"kind":"Endpoints","apiVersion":"v1","subsets":[{{"addresses":[{{"ip":"{A}"}}]}}]}}"#
    );
    put(
        &client,
        &a_url,
        &format!("/registry/masterleases/{A}"),
        &masterlease,
        &["--lease", &lease_id],
    );
    let endpoints = format!(
        r#"{{"kind":"Endpoints","apiVersion":"v1","metadata":{{"name":"kubernetes","namespace":"default"}},"subsets":[{{"addresses":[{{"ip":"{A}"}}],"ports":[{{"name":"https","port":6443}}]}}]}}"#
    );
    put(
        &client,
        &a_url,
        "/registry/services/endpoints/default/kubernetes",
        &endpoints,
        &[],
    );
    for n in ["cp-old", "worker-1"] {
        let node = format!(r#"{{"kind":"Node","apiVersion":"v1","metadata":{{"name":"{n}"}}}}"#);
        put(
            &client,
            &a_url,
            &format!("/registry/minions/{n}"),
            &node,
            &[],
        );
        let l = format!(
            r#"{{"kind":"Lease","apiVersion":"coordination.k8s.io/v1","metadata":{{"name":"{n}","namespace":"kube-node-lease"}}}}"#
        );
        put(
            &client,
            &a_url,
            &format!("/registry/leases/kube-node-lease/{n}"),
            &l,
            &[],
        );
    }
    let config = "apiServer:\\n  certSANs:\\n  - lb.example.test\\napiVersion: kubeadm.k8s.io/v1beta4\\ncontrolPlaneEndpoint: cp.example.test:6443\\nkind: ClusterConfiguration\\nkubernetesVersion: v1.31.2\\nnetworking:\\n  dnsDomain: cluster.local\\n  serviceSubnet: 10.96.0.0/12\\n";
    let cm = format!(
        r#"{{"kind":"ConfigMap","apiVersion":"v1","metadata":{{"name":"kubeadm-config","namespace":"kube-system"}},"data":{{"ClusterConfiguration":"{config}"}}}}"#
    );
    put(
        &client,
        &a_url,
        "/registry/configmaps/kube-system/kubeadm-config",
        &cm,
        &[],
    );
    let kubelet = r#"{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"kubelet-config","namespace":"kube-system"},"data":{"kubelet":"apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nstaticPodPath: /etc/kubernetes/manifests\n"}}"#;
    let kubelet_key = "/registry/configmaps/kube-system/kubelet-config";
    put(&client, &a_url, kubelet_key, kubelet, &[]);
    put(
        &client,
        &a_url,
        "/registry/deployments/shop/web",
        "the workload",
        &[],
    );

    let (key, recipient) = keygen(dir, "k");
    let store = dir.join("store");
    let mut c = cpbackup(dir);
    c.args(["--host-root", old_root.to_str().unwrap(), "backup"])
        .args(["--recipient", &recipient, "--node-name", "cp-old"])
        .args(["--etcd-endpoint", &a_url])
        .arg("--store")
        .arg(&store);
    let o = run(c);
    assert!(o.status.success(), "{}", stderr(&o));

    // A fresh host as the kubeadm and kubelet packages leave it: the kubelet has no config yet.
    let new_root = dir.join("new");
    fs::create_dir_all(new_root.join("etc/kubernetes/manifests")).unwrap();
    fs::create_dir_all(new_root.join("var/lib/kubelet")).unwrap();
    let etcdutl = V.bin("etcdutl");
    let from_backup = [
        "--identity",
        key.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
        "--latest",
        "--etcdutl",
        etcdutl.to_str().unwrap(),
        "--new-host",
        "--node-name",
        "cp-new-0",
    ];
    let with_ip = |ip: &str, more: &[&str]| -> Vec<String> {
        from_backup
            .iter()
            .chain(&["--node-ip", ip])
            .chain(more)
            .map(|s| s.to_string())
            .collect()
    };
    fn args(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }

    // The old member still answers at A: taking its address is refused, nothing changed.
    let before = tree_digest(&new_root, &["var/lib/cpbackup"]);
    let o = restore(dir, &new_root, &args(&with_ip(A, &["--dry-run"])));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("still answers"), "{}", stderr(&o));
    assert_eq!(tree_digest(&new_root, &["var/lib/cpbackup"]), before);

    // The old master is lost.
    drop(old_kubelet);

    // The dry run shows every change as a diff and changes nothing.
    let o = restore(dir, &new_root, &args(&with_ip(B, &["--dry-run"])));
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let plan = stdout(&o);
    for want in [
        format!("- --advertise-address={A}"),
        format!("+ - --advertise-address={B}"),
        "+ - --name=cp-new-0".to_owned(),
        format!("+ server: https://{B}:6443"),
        format!("/registry/masterleases/{A}"),
        "/registry/minions/cp-old".to_owned(),
        "pki/etcd/server.crt: re-issued".to_owned(),
        "client-key-data: <".to_owned(),
    ] {
        assert!(plan.contains(&want), "the plan lacks {want:?}:\n{plan}");
    }
    assert!(!plan.contains("S0VZ"), "a key is never shown");
    assert!(
        stderr(&o).contains("--trust-signer"),
        "an unsigned backup's pods run as written: said so"
    );
    assert_eq!(
        tree_digest(&new_root, &["var/lib/cpbackup"]),
        before,
        "the dry run changed the host"
    );
    // The same plan for machines, as docs/output.md documents it; --keep-old-nodes deletes nothing.
    let o = restore(
        dir,
        &new_root,
        &args(&with_ip(
            B,
            &["--dry-run", "-o", "json", "--keep-old-nodes"],
        )),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    conforms("restore --dry-run", &json);
    let changes = json["changes"].as_array().expect("changes");
    assert!(changes.iter().any(|c| {
        c.as_str()
            .unwrap()
            .starts_with("pki/apiserver.crt: re-issued")
    }));
    assert!(
        !changes
            .iter()
            .any(|c| c.as_str().unwrap().contains("masterleases")),
        "{changes:?}"
    );
    assert!(
        json["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s.get("remove").is_none())
    );

    // The restore.
    let _new_kubelet = FakeKubelet::start(&new_root, V);
    let o = restore(dir, &new_root, &args(&with_ip(B, &["--yes"])));
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));

    // etcd serves on B, to a client that trusts only the original etcd CA.
    let b_url = format!("https://{B}:{}", old.client);
    wait_serving(&client, &b_url);
    let keys = etcdctl_tls(
        V,
        &client,
        &b_url,
        &["get", "/registry", "--prefix", "--keys-only"],
    );
    let keys: Vec<String> = stdout(&keys)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    assert_eq!(
        keys,
        [
            "/registry/configmaps/kube-system/kubeadm-config",
            "/registry/configmaps/kube-system/kubelet-config",
            "/registry/deployments/shop/web",
            "/registry/leases/kube-node-lease/worker-1",
            "/registry/minions/worker-1",
        ],
        "the old master's objects are gone, everything else is there"
    );
    let members = etcdctl_tls(V, &client, &b_url, &["member", "list", "-w", "json"]);
    let m: serde_json::Value = serde_json::from_slice(&members.stdout).unwrap();
    assert_eq!(m["members"][0]["name"], "cp-new-0");
    assert_eq!(
        m["members"][0]["peerURLs"][0],
        format!("https://{B}:{}", old.peer)
    );

    // The certificates name B and the new node, not A or the old one; the CA is the original.
    let pki = new_root.join("etc/kubernetes/pki");
    for leaf in ["etcd/server.crt", "etcd/peer.crt"] {
        let s = sans(&pki.join(leaf));
        assert!(
            s.contains(&format!("IP Address:{B}")) && s.contains("DNS:cp-new-0"),
            "{leaf}: {s}"
        );
        assert!(!s.contains(A) && !s.contains("cp-old"), "{leaf}: {s}");
    }
    let s = sans(&pki.join("apiserver.crt"));
    for want in [
        format!("IP Address:{B}"),
        "IP Address:10.96.0.1".into(),
        "DNS:kubernetes.default.svc.cluster.local".into(),
        "DNS:cp.example.test".into(),
        "DNS:lb.example.test".into(),
        "DNS:cp-new-0".into(),
    ] {
        assert!(s.contains(&want), "apiserver.crt lacks {want}: {s}");
    }
    assert!(
        !s.contains(A) && !s.contains("cp-old"),
        "apiserver.crt: {s}"
    );
    for (ca, leaf) in [
        ("etcd-ca.crt", "etcd/server.crt"),
        ("ca.crt", "apiserver.crt"),
    ] {
        let o = Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(kept.join(ca))
            .arg(pki.join(leaf))
            .output()
            .unwrap();
        assert!(o.status.success(), "{leaf}: {}{}", stdout(&o), stderr(&o));
    }

    // Manifests and kubeconfigs name B; the kubelet has a certificate for its new name.
    let k = new_root.join("etc/kubernetes");
    let api = fs::read_to_string(k.join("manifests/kube-apiserver.yaml")).unwrap();
    assert!(
        api.contains(&format!("--advertise-address={B}")) && !api.contains(A),
        "{api}"
    );
    let etcd = fs::read_to_string(k.join("manifests/etcd.yaml")).unwrap();
    assert!(
        etcd.contains(&format!(
            "--initial-cluster=cp-new-0=https://{B}:{}",
            old.peer
        )),
        "{etcd}"
    );
    assert!(!etcd.contains(A) && !etcd.contains("cp-old"), "{etcd}");
    for c in ["kube-controller-manager", "kube-scheduler"] {
        assert!(
            k.join(format!("manifests/{c}.yaml")).is_file(),
            "{c} started"
        );
    }
    let kc = fs::read_to_string(new_root.join("var/lib/kubelet/config.yaml")).unwrap();
    assert!(
        kc.contains("staticPodPath: /etc/kubernetes/manifests"),
        "{kc}"
    );
    let cm = fs::read_to_string(k.join("controller-manager.conf")).unwrap();
    assert!(cm.contains(&format!("server: https://{B}:6443")), "{cm}");
    let kubelet = fs::read_to_string(k.join("kubelet.conf")).unwrap();
    assert!(kubelet.contains("user: system:node:cp-new-0"), "{kubelet}");
    let data = kubelet
        .lines()
        .find_map(|l| l.trim().strip_prefix("client-certificate-data: "))
        .expect("inline kubelet certificate");
    use base64::Engine;
    let pem = base64::engine::general_purpose::STANDARD
        .decode(data)
        .unwrap();
    let crt = dir.join("kubelet.crt");
    fs::write(&crt, pem).unwrap();
    let o = Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-in"])
        .arg(&crt)
        .output()
        .unwrap();
    let subject = stdout(&o);
    assert!(
        subject.contains("system:node:cp-new-0") && subject.contains("system:nodes"),
        "{subject}"
    );
    let o = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(kept.join("ca.crt"))
        .arg(&crt)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));

    // What was removed is kept, with its value, in the restore directory.
    let saved = files_named(&new_root.join("var/lib/cpbackup"), "removed-old-hosts.json");
    assert_eq!(saved.len(), 1, "{saved:?}");
    let doc: serde_json::Value = serde_json::from_slice(&fs::read(&saved[0]).unwrap()).unwrap();
    let removed: Vec<&str> = doc["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        removed,
        [
            "/registry/leases/kube-node-lease/cp-old",
            format!("/registry/masterleases/{A}").as_str(),
            "/registry/minions/cp-old",
            "/registry/services/endpoints/default/kubernetes",
        ]
    );
    let value = doc["removed"][1]["value_base64"].as_str().unwrap();
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(value)
            .unwrap(),
        masterlease.as_bytes()
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&saved[0]).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // A second fresh machine joins as a master on C, its files from the same backup.
    let third = dir.join("third");
    fs::create_dir_all(third.join("etc/kubernetes/manifests")).unwrap();
    fs::create_dir_all(third.join("var/lib/kubelet")).unwrap();
    let _third_kubelet = FakeKubelet::start(&third, V);
    let join: Vec<String> = [
        "--identity",
        key.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
        "--latest",
        "--rejoin",
        "--new-host",
        "--node-name",
        "cp-new-1",
        "--node-ip",
        C,
        "--etcd-endpoint",
        &b_url,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let before = tree_digest(&third, &["var/lib/cpbackup"]);
    let mut dry = join.clone();
    dry.push("--dry-run".into());
    let o = restore(dir, &third, &args(&dry));
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("add member cp-new-1"), "{}", stdout(&o));
    assert!(
        !stdout(&o).contains("key(s) of the old masters"),
        "a join deletes nothing"
    );
    assert_eq!(tree_digest(&third, &["var/lib/cpbackup"]), before);
    let mut real = join.clone();
    real.push("--yes".into());
    let o = restore(dir, &third, &args(&real));
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let c_url = format!("https://{C}:{}", old.client);
    wait_serving(&client, &c_url);
    let members = etcdctl_tls(V, &client, &b_url, &["member", "list", "-w", "json"]);
    let m: serde_json::Value = serde_json::from_slice(&members.stdout).unwrap();
    let mut names: Vec<(String, bool)> = m["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["name"].as_str().unwrap_or_default().to_owned(),
                x["isLearner"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ("cp-new-0".to_owned(), false),
            ("cp-new-1".to_owned(), false)
        ],
        "two voting members"
    );
    let on = |url: &str| {
        let o = etcdctl_tls(
            V,
            &client,
            url,
            &["get", "/registry", "--prefix", "--consistency=s"],
        );
        stdout(&o)
    };
    assert_eq!(
        on(&c_url),
        on(&b_url),
        "the new member holds the cluster's data"
    );
    let s = sans(&third.join("etc/kubernetes/pki/etcd/peer.crt"));
    assert!(
        s.contains(&format!("IP Address:{C}")) && s.contains("DNS:cp-new-1"),
        "{s}"
    );
    assert!(!s.contains(A) && !s.contains(B), "{s}");
    let etcd = fs::read_to_string(third.join("etc/kubernetes/manifests/etcd.yaml")).unwrap();
    assert!(etcd.contains("--initial-cluster-state=existing"), "{etcd}");
    assert!(third.join("var/lib/kubelet/config.yaml").is_file());

    // Rolled back: the member leaves the cluster and the host is as it was before the join.
    let o = restore(dir, &third, &["--rollback", "--yes"]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let members = etcdctl_tls(V, &client, &b_url, &["member", "list", "-w", "json"]);
    let m: serde_json::Value = serde_json::from_slice(&members.stdout).unwrap();
    assert_eq!(m["members"].as_array().unwrap().len(), 1, "{m}");
    assert_eq!(m["members"][0]["name"], "cp-new-0");
    for gone in [
        "etc/kubernetes/pki",
        "etc/kubernetes/manifests/etcd.yaml",
        "etc/kubernetes/kubelet.conf",
        "var/lib/kubelet/config.yaml",
    ] {
        assert!(
            !third.join(gone).exists(),
            "{gone} is still there after the rollback"
        );
    }
    wait_serving(&client, &b_url);
}

/// What `--new-host` cannot do is refused before anything on the host changes, with what to
/// do instead: an OpenShift backup, an etcd-only backup, a backup without a CA key it needs.
#[test]
fn openshift_etcd_only_and_external_ca_backups_are_refused_with_nothing_changed() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let ip = unique_loopback_ip();
    let pki = Pki::new(&dir.join("pki"), &[&ip]);
    let etcd = Etcd::start(V, dir, &ip, 2379, Some(&pki));
    etcd.put("/registry/namespaces/shop", "{}");
    let (key, recipient) = keygen(dir, "k");
    let backup = |root: &Path, store: &Path, extra: &[&str]| {
        let mut c = cpbackup(dir);
        c.arg("--host-root")
            .arg(root)
            .args(["backup", "--recipient", &recipient, "--node-name", "m0"])
            .args(["--etcd-endpoint", &format!("https://{ip}:2379")])
            .arg("--etcd-cacert")
            .arg(&pki.ca)
            .arg("--etcd-cert")
            .arg(&pki.client_cert)
            .arg("--etcd-key")
            .arg(&pki.client_key)
            .arg("--store")
            .arg(store)
            .args(extra);
        let o = run(c);
        assert!(o.status.success(), "{}", stderr(&o));
    };
    let openshift = dir.join("openshift");
    fake_openshift_root(&openshift, "m0", &ip, &pki, 3);
    backup(&openshift, &dir.join("s-openshift"), &[]);
    let external_ca = dir.join("external-ca");
    let me = KubeadmHost {
        name: "m0".into(),
        ip: ip.clone(),
        client: 2379,
        peer: 2380,
    };
    kubeadm_init_root(&external_ca, &me, "cp.example.test");
    fs::remove_file(external_ca.join("etc/kubernetes/pki/etcd/ca.key")).unwrap();
    backup(&external_ca, &dir.join("s-external-ca"), &[]);
    backup(
        &external_ca,
        &dir.join("s-etcd-only"),
        &["--static-pods", "none"],
    );

    let fresh = dir.join("fresh");
    fs::create_dir_all(fresh.join("etc/kubernetes/manifests")).unwrap();
    fs::create_dir_all(fresh.join("var/lib")).unwrap();
    let before = tree_digest(&fresh, &["var/lib/cpbackup"]);
    for (store, says) in [
        ("s-openshift", "OpenShift's certificates"),
        ("s-etcd-only", "etcd snapshot only"),
        ("s-external-ca", "no usable CA key pki/etcd/ca.key"),
    ] {
        for mode in ["--dry-run", "--yes"] {
            let o = restore(
                dir,
                &fresh,
                &[
                    "--identity",
                    key.to_str().unwrap(),
                    "--store",
                    dir.join(store).to_str().unwrap(),
                    "--latest",
                    "--new-host",
                    "--node-name",
                    "cp-new-0",
                    "--node-ip",
                    "127.0.0.99",
                    mode,
                ],
            );
            assert_eq!(o.status.code(), Some(2), "{store} {mode}: {}", stderr(&o));
            assert!(stderr(&o).contains(says), "{store} {mode}: {}", stderr(&o));
            assert!(stderr(&o).contains("nothing was changed"), "{}", stderr(&o));
            assert_eq!(
                tree_digest(&fresh, &["var/lib/cpbackup"]),
                before,
                "{store} {mode}"
            );
        }
    }
    // and no decrypted copy is left behind
    assert!(files_named(&fresh.join("var/lib/cpbackup"), "snapshot.db").is_empty());
}
