//! `cpbackup extract` end to end: a real etcd holding Kubernetes objects as kube-apiserver stores
//! them (protobuf envelopes, JSON custom resources, CBOR, values encrypted at rest by
//! independent implementations: Python `cryptography` for AES-CBC/GCM and PyNaCl for secretbox),
//! snapshotted with `etcdctl`, then extracted offline from the bare file and from a backup.

use cpbackup_testkit as support;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use prost::Message;
use serde_json::{Value, json};
use support::*;

#[derive(Clone, PartialEq, Message)]
struct Time {
    #[prost(int64, optional, tag = "1")]
    seconds: Option<i64>,
    #[prost(int32, optional, tag = "2")]
    nanos: Option<i32>,
}

#[derive(Clone, PartialEq, Message)]
struct OwnerReference {
    #[prost(string, optional, tag = "1")]
    kind: Option<String>,
    #[prost(string, optional, tag = "3")]
    name: Option<String>,
    #[prost(string, optional, tag = "4")]
    uid: Option<String>,
    #[prost(string, optional, tag = "5")]
    api_version: Option<String>,
    #[prost(bool, optional, tag = "6")]
    controller: Option<bool>,
}

#[derive(Clone, PartialEq, Message)]
struct ObjectMeta {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(string, optional, tag = "3")]
    namespace: Option<String>,
    #[prost(string, optional, tag = "5")]
    uid: Option<String>,
    #[prost(string, optional, tag = "6")]
    resource_version: Option<String>,
    #[prost(int64, optional, tag = "7")]
    generation: Option<i64>,
    #[prost(message, optional, tag = "8")]
    creation_timestamp: Option<Time>,
    #[prost(btree_map = "string, string", tag = "11")]
    labels: BTreeMap<String, String>,
    #[prost(message, repeated, tag = "13")]
    owner_references: Vec<OwnerReference>,
}

#[derive(Clone, PartialEq, Message)]
struct ConfigMap {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
    #[prost(btree_map = "string, string", tag = "2")]
    data: BTreeMap<String, String>,
}

#[derive(Clone, PartialEq, Message)]
struct Secret {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
    #[prost(btree_map = "string, bytes", tag = "2")]
    data: BTreeMap<String, Vec<u8>>,
    #[prost(string, optional, tag = "3")]
    r#type: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
struct TypeMeta {
    #[prost(string, optional, tag = "1")]
    api_version: Option<String>,
    #[prost(string, optional, tag = "2")]
    kind: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
struct Unknown {
    #[prost(message, optional, tag = "1")]
    type_meta: Option<TypeMeta>,
    #[prost(bytes = "vec", optional, tag = "2")]
    raw: Option<Vec<u8>>,
    #[prost(string, optional, tag = "3")]
    content_encoding: Option<String>,
    #[prost(string, optional, tag = "4")]
    content_type: Option<String>,
}

/// `k8s\0` + runtime.Unknown, as kube-apiserver writes it.
fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let mut v = b"k8s\0".to_vec();
    Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    }
    .encode(&mut v)
    .unwrap();
    v
}

fn meta(name: &str, ns: &str, uid: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(ns.into()),
        uid: Some(uid.into()),
        resource_version: Some(String::new()),
        generation: Some(0),
        creation_timestamp: Some(Time {
            seconds: Some(1_700_000_000),
            nanos: Some(0),
        }),
        ..Default::default()
    }
}

fn configmap(name: &str, ns: &str, data: &[(&str, &str)]) -> Vec<u8> {
    let cm = ConfigMap {
        metadata: Some(meta(name, ns, &format!("uid-{name}"))),
        data: data
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect(),
    };
    envelope("v1", "ConfigMap", cm.encode_to_vec())
}

fn secret(name: &str, ns: &str, ty: &str, data: &[(&str, &[u8])]) -> Vec<u8> {
    let s = Secret {
        metadata: Some(meta(name, ns, &format!("uid-{name}"))),
        data: data
            .iter()
            .map(|(k, v)| ((*k).into(), v.to_vec()))
            .collect(),
        r#type: Some(ty.into()),
    };
    envelope("v1", "Secret", s.encode_to_vec())
}

const AESCBC_KEY: &str = "dGhpcyBpcyBhIDMyIGJ5dGUga2V5IGZvciBhZXNjYmM=";
const AESGCM_KEY: &str = "c2l4dGVlbiBieXRlIGtleQ==";
const SECRETBOX_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// Encrypts like kube-apiserver's providers, with Python's cryptography / PyNaCl.
fn encrypt(provider: &str, key_name: &str, key_b64: &str, etcd_key: &str, plain: &[u8]) -> Vec<u8> {
    let code = r#"
import sys, os, base64
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
provider, name, key, etcd_key = sys.argv[1], sys.argv[2], base64.b64decode(sys.argv[3]), sys.argv[4].encode()
plain = sys.stdin.buffer.read()
if provider == "aescbc":
    iv = os.urandom(16)
    p = padding.PKCS7(128).padder(); data = p.update(plain) + p.finalize()
    e = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    body = iv + e.update(data) + e.finalize()
elif provider == "aesgcm":
    nonce = os.urandom(12)
    body = nonce + AESGCM(key).encrypt(nonce, plain, etcd_key)
else:
    import nacl.secret, nacl.utils
    nonce = nacl.utils.random(24)
    sealed = nacl.secret.SecretBox(key).encrypt(plain, nonce)
    body = nonce + sealed.ciphertext  # libsodium: tag ‖ ciphertext
sys.stdout.buffer.write(b"k8s:enc:" + provider.encode() + b":v1:" + name.encode() + b":" + body)
"#;
    let mut child = Command::new("python3")
        .args(["-c", code, provider, key_name, key_b64, etcd_key])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(plain).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python encryption failed");
    out.stdout
}

fn encryption_config() -> String {
    format!(
        "apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
      - aescbc:
          keys:
            - name: key1
              secret: {AESCBC_KEY}
      - aesgcm:
          keys:
            - name: gcm1
              secret: {AESGCM_KEY}
      - secretbox:
          keys:
            - name: box1
              secret: {SECRETBOX_KEY}
      - kms:
          apiVersion: v2
          name: vault
          endpoint: unix:///var/run/kms.sock
      - identity: {{}}
"
    )
}

const ROUTE_PROTO: &str = r#"syntax = "proto2";
package github.com.openshift.api.route.v1;
import "k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto";
message Route {
  optional k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta metadata = 1;
  optional RouteSpec spec = 2;
}
message RouteSpec {
  optional string host = 1;
  optional string path = 2;
}
"#;

#[derive(Clone, PartialEq, Message)]
struct RouteSpec {
    #[prost(string, optional, tag = "1")]
    host: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
struct Route {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
    #[prost(message, optional, tag = "2")]
    spec: Option<RouteSpec>,
}

fn json_bytes(v: Value) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap()
}

/// Fills etcd with a namespace `shop` and neighbours; returns the snapshot path.
fn cluster_snapshot(dir: &Path) -> (std::path::PathBuf, Etcd) {
    let etcd = Etcd::start(Version::V35, dir, "127.0.0.1", free_port(), None);
    let key = |k: &str| k.to_owned();
    let db_secret = secret("db", "shop", "Opaque", &[("password", b"hunter2")]);
    let api_secret = secret("api", "shop", "Opaque", &[("token", b"gcm-token")]);
    let box_secret = secret("boxed", "shop", "Opaque", &[("k", b"boxed-value")]);
    let route = envelope(
        "route.openshift.io/v1",
        "Route",
        Route {
            metadata: Some(meta("web", "shop", "uid-route")),
            spec: Some(RouteSpec {
                host: Some("shop.example.com".into()),
            }),
        }
        .encode_to_vec(),
    );
    let kvs: Vec<(String, Vec<u8>)> = vec![
        (
            key("/registry/namespaces/shop"),
            json_bytes(json!({"apiVersion":"v1","kind":"Namespace",
            "metadata":{"name":"shop","uid":"uid-ns","labels":{"kubernetes.io/metadata.name":"shop"}},
            "spec":{"finalizers":["kubernetes"]},"status":{"phase":"Active"}})),
        ),
        (
            key("/registry/configmaps/shop/settings"),
            configmap("settings", "shop", &[("mode", "old")]),
        ),
        (
            key("/registry/configmaps/shop/settings"),
            configmap("settings", "shop", &[("mode", "new")]),
        ),
        (
            key("/registry/configmaps/shop/gone"),
            configmap("gone", "shop", &[]),
        ),
        (
            key("/registry/configmaps/shop/kube-root-ca.crt"),
            configmap("kube-root-ca.crt", "shop", &[("ca.crt", "x")]),
        ),
        (
            key("/registry/configmaps/shop/misfiled"),
            configmap("misfiled", "elsewhere", &[]),
        ),
        (
            key("/registry/configmaps/other/settings"),
            configmap("settings", "other", &[("mode", "other")]),
        ),
        (
            key("/registry/secrets/shop/db"),
            encrypt(
                "aescbc",
                "key1",
                AESCBC_KEY,
                "/registry/secrets/shop/db",
                &db_secret,
            ),
        ),
        (
            key("/registry/secrets/shop/api"),
            encrypt(
                "aesgcm",
                "gcm1",
                AESGCM_KEY,
                "/registry/secrets/shop/api",
                &api_secret,
            ),
        ),
        (
            key("/registry/secrets/shop/boxed"),
            encrypt(
                "secretbox",
                "box1",
                SECRETBOX_KEY,
                "/registry/secrets/shop/boxed",
                &box_secret,
            ),
        ),
        (
            key("/registry/secrets/shop/sa-token"),
            secret(
                "sa-token",
                "shop",
                "kubernetes.io/service-account-token",
                &[("token", b"t")],
            ),
        ),
        (
            key("/registry/secrets/shop/vaulted"),
            b"k8s:enc:kms:v2:vault:\x0a\x03abc".to_vec(),
        ),
        (
            key("/registry/deployments/shop/web"),
            json_bytes(json!({"apiVersion":"apps/v1","kind":"Deployment",
            "metadata":{"name":"web","namespace":"shop","uid":"uid-dep","generation":3,"resourceVersion":""},
            "spec":{"replicas":0,"template":{"spec":{"priorityClassName":"high","containers":[{"name":"web","image":"nginx"}]}}},
            "status":{"replicas":2}})),
        ),
        (
            key("/registry/replicasets/shop/web-5d"),
            json_bytes(json!({"apiVersion":"apps/v1","kind":"ReplicaSet",
            "metadata":{"name":"web-5d","namespace":"shop","uid":"uid-rs",
            "ownerReferences":[{"apiVersion":"apps/v1","kind":"Deployment","name":"web","uid":"uid-dep","controller":true}]}})),
        ),
        (
            key("/registry/services/specs/shop/web"),
            json_bytes(json!({"apiVersion":"v1","kind":"Service",
            "metadata":{"name":"web","namespace":"shop","uid":"uid-svc"},
            "spec":{"clusterIP":"10.96.0.7","clusterIPs":["10.96.0.7"],"ports":[{"port":80}],"selector":{"app":"web"}}})),
        ),
        (
            key("/registry/persistentvolumeclaims/shop/data"),
            json_bytes(json!({"apiVersion":"v1","kind":"PersistentVolumeClaim",
            "metadata":{"name":"data","namespace":"shop","annotations":{"pv.kubernetes.io/bind-completed":"yes"}},
            "spec":{"volumeName":"pv-1","storageClassName":"fast"}})),
        ),
        (
            key("/registry/persistentvolumes/pv-1"),
            json_bytes(json!({"apiVersion":"v1","kind":"PersistentVolume",
            "metadata":{"name":"pv-1","uid":"uid-pv"},
            "spec":{"claimRef":{"namespace":"shop","name":"data","uid":"uid-pvc"},"storageClassName":"fast"}})),
        ),
        (
            key("/registry/example.com/widgets/shop/w1"),
            json_bytes(json!({"apiVersion":"example.com/v1","kind":"Widget",
            "metadata":{"name":"w1","namespace":"shop","uid":"uid-w1"},"spec":{"size":3}})),
        ),
        (
            key("/registry/example.com/gadgets/shop/g1"),
            vec![0xd9, 0xd9, 0xf7, 0xa1, 0x61, 0x61, 0x01],
        ),
        (key("/openshift.io/routes/shop/web"), route),
        (
            key("/registry/events/shop/web.1"),
            json_bytes(json!({"apiVersion":"v1","kind":"Event",
            "metadata":{"name":"web.1","namespace":"shop"}})),
        ),
    ];
    put_all(&etcd.endpoint, &kvs, &["/registry/configmaps/shop/gone"]);
    let snap = dir.join("snapshot.db");
    let o = etcd.ctl(&["snapshot", "save"]).arg(&snap).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (snap, etcd)
}

fn yaml_docs(text: &str) -> Vec<Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

#[test]
fn a_namespace_from_a_snapshot_file_re_applies_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (snap, _etcd) = cluster_snapshot(dir);
    let enc = dir.join("encryption.yaml");
    fs::write(&enc, encryption_config()).unwrap();
    let protos = dir.join("protos/github.com/openshift/api/route/v1");
    fs::create_dir_all(&protos).unwrap();
    fs::write(protos.join("generated.proto"), ROUTE_PROTO).unwrap();

    // a YAML stream on stdout, the report on stderr
    let mut c = cpbackup(dir);
    c.arg("extract")
        .arg(&snap)
        .args(["--namespace", "shop", "--encryption-config"])
        .arg(&enc)
        .arg("--proto-path")
        .arg(dir.join("protos"));
    let o = run(c);
    assert!(o.status.success(), "{}", stderr(&o));
    let docs = yaml_docs(&stdout(&o));
    let names: Vec<String> = docs
        .iter()
        .map(|d| {
            format!(
                "{}/{}",
                d["kind"].as_str().unwrap(),
                d["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            "Namespace/shop",
            "Secret/api",
            "Secret/boxed",
            "Secret/db",
            "ConfigMap/settings",
            "PersistentVolumeClaim/data",
            "Service/web",
            "Deployment/web",
            "Route/web",
            "Widget/w1",
        ],
        "{}",
        stderr(&o)
    );
    let by = |kind: &str, name: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap()
            .clone()
    };
    // decrypted by three independent implementations' layouts; newest revision wins
    assert_eq!(by("Secret", "db")["data"]["password"], "aHVudGVyMg==");
    assert_eq!(by("Secret", "api")["data"]["token"], "Z2NtLXRva2Vu");
    assert_eq!(by("Secret", "boxed")["data"]["k"], "Ym94ZWQtdmFsdWU=");
    assert_eq!(
        by("ConfigMap", "settings"),
        json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"settings","namespace":"shop"},"data":{"mode":"new"}})
    );
    assert_eq!(
        by("Deployment", "web"),
        json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"shop"},
            "spec":{"replicas":0,"template":{"spec":{"priorityClassName":"high","containers":[{"name":"web","image":"nginx"}]}}}})
    );
    assert_eq!(
        by("Service", "web")["spec"],
        json!({"ports":[{"port":80}],"selector":{"app":"web"}})
    );
    assert_eq!(by("Route", "web")["spec"]["host"], "shop.example.com");
    assert_eq!(
        by("Namespace", "shop"),
        json!({"apiVersion":"v1","kind":"Namespace",
        "metadata":{"name":"shop","labels":{"kubernetes.io/metadata.name":"shop"}}})
    );
    let report = stderr(&o);
    for want in [
        "replicaset.apps/web-5d: recreated by its controller deployment/web",
        "event/web.1: events are not restored",
        "configmap/kube-root-ca.crt",
        "secret/sa-token: service account token",
        "/registry/secrets/shop/vaulted: encrypted at rest with kms key \"vault\"",
        "/registry/example.com/gadgets/shop/g1: CBOR",
        "persistentvolume/pv-1: bound to persistentvolumeclaim/data",
        "customresourcedefinition/widgets.example.com (not in the snapshot)",
        "priorityclass/high (not in the snapshot)",
        "misfiled",
        "the output contains 3 Secret(s)",
    ] {
        assert!(report.contains(want), "report lacks {want:?}:\n{report}");
    }
    assert!(!stdout(&o).contains("other"), "another namespace leaked");

    // without the key and the route schema: reported and kept raw, never dropped
    let out = dir.join("shop-out");
    let mut c = cpbackup(dir);
    c.arg("extract")
        .arg(&snap)
        .args([
            "--namespace",
            "shop",
            "--with-cluster-deps",
            "--format",
            "json",
            "--output",
            "json",
            "--out",
        ])
        .arg(&out);
    let o = run(c);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let undecoded: Vec<&str> = report["undecoded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        undecoded,
        [
            "/openshift.io/routes/shop/web",
            "/registry/example.com/gadgets/shop/g1",
            "/registry/secrets/shop/api",
            "/registry/secrets/shop/boxed",
            "/registry/secrets/shop/db",
            "/registry/secrets/shop/vaulted",
        ]
    );
    assert!(
        report["undecoded"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("--proto-path")
    );
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&out), 0o700);
    let mut files: Vec<String> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "001-namespace-shop.json",
            "002-configmap-settings.json",
            "003-persistentvolume-pv-1.json",
            "004-persistentvolumeclaim-data.json",
            "005-service-web.json",
            "006-deployment-web.json",
            "007-widget-w1.json",
            "undecoded",
        ]
    );
    let pv: Value =
        serde_json::from_slice(&fs::read(out.join("003-persistentvolume-pv-1.json")).unwrap())
            .unwrap();
    assert_eq!(
        pv["spec"]["claimRef"],
        json!({"namespace":"shop","name":"data"})
    );
    let raw = out.join("undecoded/registry~secrets~shop~db");
    assert_eq!(mode(&raw), 0o600);
    assert!(
        fs::read(&raw)
            .unwrap()
            .starts_with(b"k8s:enc:aescbc:v1:key1:")
    );
    // an existing, non-empty directory is never mixed into
    let mut c = cpbackup(dir);
    c.arg("extract")
        .arg(&snap)
        .args(["--namespace", "shop", "--out"])
        .arg(&out);
    let o = run(c);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("is not empty"), "{}", stderr(&o));

    // Secrets in a directory are 0600
    let out2 = dir.join("secrets-out");
    let mut c = cpbackup(dir);
    c.arg("extract")
        .arg(&snap)
        .args([
            "--namespace",
            "shop",
            "--to-namespace",
            "shop-restored",
            "--encryption-config",
        ])
        .arg(&enc)
        .arg("--out")
        .arg(&out2);
    let o = run(c);
    assert!(o.status.success(), "{}", stderr(&o));
    let secret_file = out2.join("002-secret-api.yaml");
    assert_eq!(mode(&secret_file), 0o600);
    assert_eq!(mode(&out2.join("005-configmap-settings.yaml")), 0o644);
    let moved = yaml_docs(&fs::read_to_string(&secret_file).unwrap());
    assert_eq!(moved[0]["metadata"]["namespace"], "shop-restored");
    let ns = yaml_docs(&fs::read_to_string(out2.join("001-namespace-shop-restored.yaml")).unwrap());
    assert_eq!(ns[0]["metadata"]["name"], "shop-restored");
}

#[test]
fn raw_prefix_dump_and_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (snap, etcd) = cluster_snapshot(dir);
    let mut c = cpbackup(dir);
    c.arg("extract")
        .arg(&snap)
        .args(["--prefix", "/registry/configmaps/", "--format", "json"]);
    let o = run(c);
    assert!(o.status.success(), "{}", stderr(&o));
    let list: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(list["kind"], "List");
    let items = list["items"].as_array().unwrap();
    let keys: Vec<String> = items
        .iter()
        .map(|i| {
            format!(
                "{}/{}",
                i["metadata"]["namespace"].as_str().unwrap(),
                i["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    // as stored, in key order, the deleted key gone, nothing skipped
    assert_eq!(
        keys,
        [
            "other/settings",
            "shop/kube-root-ca.crt",
            "elsewhere/misfiled",
            "shop/settings"
        ]
    );
    let settings = &items[3];
    assert_eq!(settings["metadata"]["uid"], "uid-settings");
    assert_eq!(
        settings["metadata"]["creationTimestamp"],
        "2023-11-14T22:13:20Z"
    );
    // the API server reports the key's mod revision as resourceVersion
    let rev = etcdctl(
        Version::V35,
        &etcd.endpoint,
        &["get", "/registry/configmaps/shop/settings", "-w", "json"],
    );
    let got: Value = serde_json::from_slice(&rev.stdout).unwrap();
    assert_eq!(
        settings["metadata"]["resourceVersion"],
        got["kvs"][0]["mod_revision"].as_i64().unwrap().to_string()
    );

    // a namespace that is not there, a broken file, a wrong encryption config, no filter, a
    // target namespace that cannot exist
    let s = snap.as_os_str();
    refused(
        dir,
        &[s, "--namespace".as_ref(), "nope".as_ref()],
        Some(1),
        "inspect --by namespace",
    );
    let junk = dir.join("junk.db");
    fs::write(&junk, vec![7u8; 8192]).unwrap();
    refused(
        dir,
        &[junk.as_os_str(), "--namespace".as_ref(), "shop".as_ref()],
        Some(1),
        "not a readable etcd snapshot",
    );
    let bad = dir.join("bad-enc.yaml");
    fs::write(&bad, "kind: EncryptionConfiguration\nresources:\n  - providers:\n      - aescbc:\n          keys:\n            - name: k\n              secret: c2hvcnQ=\n").unwrap();
    refused(
        dir,
        &[
            s,
            "--namespace".as_ref(),
            "shop".as_ref(),
            "--encryption-config".as_ref(),
            bad.as_os_str(),
        ],
        None,
        "not a valid key size",
    );
    refused(dir, &[s], Some(2), "--namespace NS or --prefix");
    refused(
        dir,
        &[
            s,
            "--namespace".as_ref(),
            "shop".as_ref(),
            "--to-namespace".as_ref(),
            "Shop_Restored".as_ref(),
        ],
        Some(2),
        "not a valid namespace name",
    );
}

/// `cpbackup extract ARGS` fails (with `code`, or any failure when `None`) saying `needle`.
fn refused(dir: &Path, args: &[&std::ffi::OsStr], code: Option<i32>, needle: &str) {
    let mut c = cpbackup(dir);
    c.arg("extract").args(args);
    let o = run(c);
    match code {
        Some(code) => assert_eq!(o.status.code(), Some(code), "{}", stderr(&o)),
        None => assert!(!o.status.success()),
    }
    assert!(stderr(&o).contains(needle), "{}", stderr(&o));
}

#[test]
fn a_namespace_from_a_backup_uses_the_bundled_encryption_config() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (_snap, etcd) = cluster_snapshot(dir);
    let pki = Pki::new(dir, &["127.0.0.1"]);
    let root = dir.join("host");
    fake_kubeadm_root(&root, &pki);
    let k = root.join("etc/kubernetes");
    fs::write(
        k.join("manifests/kube-apiserver.yaml"),
        "spec:\n  containers:\n  - command:\n    - kube-apiserver\n    - --encryption-provider-config=/etc/kubernetes/pki/encryption.yaml\n",
    )
    .unwrap();
    fs::write(k.join("pki/encryption.yaml"), encryption_config()).unwrap();
    let (key, recipient) = keygen(dir, "k");
    let store = dir.join("store");
    let mut c = cpbackup(dir);
    c.arg("--host-root").arg(&root);
    c.args([
        "backup",
        "--static-pods",
        "kubeadm",
        "--etcd-endpoint",
        &etcd.endpoint,
        "--recipient",
        &recipient,
        "--node-name",
        "cp-1",
        "--store",
    ])
    .arg(&store);
    let o = run(c);
    assert!(o.status.success(), "backup failed: {}", stderr(&o));
    let mut c = cpbackup(dir);
    c.args(["extract", "--latest", "--namespace", "shop", "--identity"])
        .arg(&key)
        .arg("--store")
        .arg(&store);
    let o = run(c);
    assert!(o.status.success(), "{}", stderr(&o));
    let docs = yaml_docs(&stdout(&o));
    let db = docs
        .iter()
        .find(|d| d["kind"] == "Secret" && d["metadata"]["name"] == "db")
        .expect("the secret decrypted with the bundle's own key");
    assert_eq!(db["data"]["password"], "aHVudGVyMg==");
    // a wrong identity stops with a clear error
    let (other, _) = keygen(dir, "other");
    let mut c = cpbackup(dir);
    c.args(["extract", "--latest", "--namespace", "shop", "--identity"])
        .arg(&other)
        .arg("--store")
        .arg(&store);
    let o = run(c);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).to_lowercase().contains("key"), "{}", stderr(&o));
}

#[test]
fn apply_from_the_command_line_reports_each_object_and_exits_1_on_a_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (_snap, etcd) = cluster_snapshot(dir);
    put_all(
        &etcd.endpoint,
        &[(
            "/registry/configmaps/shop/refuse-me".to_owned(),
            configmap("refuse-me", "shop", &[("a", "b")]),
        )],
        &[],
    );
    let snap = dir.join("snapshot2.db");
    let o = etcd.ctl(&["snapshot", "save"]).arg(&snap).output().unwrap();
    assert!(o.status.success());
    let api = FakeApi::start(&[]);
    let root = dir.join("kc");
    api.kubeconfig_for(&root);
    let kc = root.join("etc/kubernetes/static-pod-resources/kube-apiserver-certs/secrets/node-kubeconfigs/localhost.kubeconfig");
    let mut c = cpbackup(dir);
    c.arg("extract")
        .arg(&snap)
        .args([
            "--namespace",
            "shop",
            "--apply",
            "--to-namespace",
            "shop-restored",
            "--dry-run=server",
            "--kubeconfig",
        ])
        .arg(&kc);
    let o = run(c);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("namespace/shop-restored: applied (server dry run)"),
        "{out}"
    );
    assert!(
        out.contains("configmap/refuse-me -n shop-restored: failed: refused by the test (Invalid)"),
        "{out}"
    );
    assert!(
        out.contains("configmap/settings -n shop-restored: applied (server dry run)"),
        "{out}"
    );
    assert!(
        out.contains("widget.example.com/w1 -n shop-restored: applied (server dry run)"),
        "{out}"
    );
    assert!(
        stderr(&o).contains("1 of 7 objects failed to apply"),
        "{}",
        stderr(&o)
    );
    // before applying: what is left out and what the cluster must already have
    assert!(
        stderr(&o).contains("replicaset.apps/web-5d: recreated by its controller"),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("persistentvolume/pv-1: bound to persistentvolumeclaim/data"),
        "{}",
        stderr(&o)
    );
    // what could not be decoded (no key, no schema) is said, not silently left unapplied
    assert!(
        stderr(&o).contains("not applied, not decoded: /openshift.io/routes/shop/web"),
        "{}",
        stderr(&o)
    );
    let asked = api.asked.lock().unwrap().clone();
    let q = "?&dryRun=All&force=true&fieldManager=cpbackup";
    assert_eq!(
        asked,
        [
            // the API server is checked once, before anything is sent
            "/version".to_owned(),
            format!("PATCH /api/v1/namespaces/shop-restored{q}"),
            format!("PATCH /api/v1/namespaces/shop-restored/configmaps/refuse-me{q}"),
            format!("PATCH /api/v1/namespaces/shop-restored/configmaps/settings{q}"),
            format!("PATCH /api/v1/namespaces/shop-restored/persistentvolumeclaims/data{q}"),
            format!("PATCH /api/v1/namespaces/shop-restored/services/web{q}"),
            format!("PATCH /apis/apps/v1/namespaces/shop-restored/deployments/web{q}"),
            format!("PATCH /apis/example.com/v1/namespaces/shop-restored/widgets/w1{q}"),
        ]
    );
}

/// A keyspace big enough that the `key` bucket's root is a branch page (so the walk runs in
/// parallel runs of subtrees), with keys rewritten and deleted across those runs: the
/// extraction sees exactly what etcd serves at the head revision.
#[test]
fn parallel_walk_sees_the_head_revision_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let etcd = Etcd::start(Version::V35, dir, "127.0.0.1", free_port(), None);
    let pad = "x".repeat(900);
    let obj = |ns: &str, name: &str, round: u32| {
        json_bytes(json!({"apiVersion":"v1","kind":"ConfigMap",
            "metadata":{"name":name,"namespace":ns},"data":{"round":round.to_string(),"pad":pad}}))
    };
    let mut kvs = Vec::new();
    for i in 0..3000u32 {
        let ns = format!("ns-{}", i % 7);
        kvs.push((
            format!("/registry/configmaps/{ns}/cm-{i}"),
            obj(&ns, &format!("cm-{i}"), 0),
        ));
    }
    // rewrite every 5th key late (its newest revision sits in a later run), delete every 11th
    for i in (0..3000u32).step_by(5) {
        let ns = format!("ns-{}", i % 7);
        kvs.push((
            format!("/registry/configmaps/{ns}/cm-{i}"),
            obj(&ns, &format!("cm-{i}"), 1),
        ));
    }
    let deletes: Vec<String> = (0..3000u32)
        .step_by(11)
        .map(|i| format!("/registry/configmaps/ns-{}/cm-{i}", i % 7))
        .collect();
    let deletes: Vec<&str> = deletes.iter().map(String::as_str).collect();
    put_all(&etcd.endpoint, &kvs, &deletes);
    let snap = dir.join("big.db");
    let o = etcd.ctl(&["snapshot", "save"]).arg(&snap).output().unwrap();
    assert!(o.status.success());
    let truth = etcdctl(
        Version::V35,
        &etcd.endpoint,
        &[
            "get",
            "--prefix",
            "/registry/configmaps/ns-3/",
            "-w",
            "json",
        ],
    );
    let truth: Value = serde_json::from_slice(&truth.stdout).unwrap();
    let want: BTreeMap<String, String> = truth["kvs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kv| {
            let key = String::from_utf8(
                base64::Engine::decode(
                    &base64::engine::general_purpose::STANDARD,
                    kv["key"].as_str().unwrap(),
                )
                .unwrap(),
            )
            .unwrap();
            (key, kv["mod_revision"].as_i64().unwrap().to_string())
        })
        .collect();
    assert!(want.len() > 300, "{}", want.len());
    let mut c = cpbackup(dir);
    c.arg("extract")
        .arg(&snap)
        .args(["--namespace", "ns-3", "--raw", "--format", "json"]);
    let o = run(c);
    assert!(o.status.success(), "{}", stderr(&o));
    let list: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let got: BTreeMap<String, String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                format!(
                    "/registry/configmaps/ns-3/{}",
                    i["metadata"]["name"].as_str().unwrap()
                ),
                i["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(got, want);
}

mod decoding_properties {
    use super::*;
    use cpbackup::k8s::decode::Decoder;
    use cpbackup::k8s::encryption::Keyring;
    use cpbackup::k8s::schema::Schema;
    use proptest::prelude::*;

    fn decoder() -> &'static Decoder {
        static D: std::sync::OnceLock<Decoder> = std::sync::OnceLock::new();
        D.get_or_init(|| Decoder::new(Schema::builtin().unwrap(), Keyring::empty()))
    }

    proptest! {
        /// Any ConfigMap/Secret as the API server would encode it decodes to the JSON it would serve.
        #[test]
        fn configmaps_and_secrets_decode_to_their_json(
            name in "[a-z0-9][a-z0-9.-]{0,20}",
            ns in "[a-z0-9-]{1,12}",
            secs in 0i64..4_000_000_000,
            data in prop::collection::btree_map("[A-Za-z0-9._-]{1,10}", ".*", 0..5),
            bytes in prop::collection::btree_map("[A-Za-z0-9._-]{1,10}", prop::collection::vec(any::<u8>(), 0..40), 0..5),
            labels in prop::collection::btree_map("[a-z./]{1,10}", "[a-z0-9]{0,8}", 0..3),
        ) {
            let mut m = meta(&name, &ns, "uid-1");
            m.creation_timestamp = Some(Time { seconds: Some(secs), nanos: Some(0) });
            m.labels = labels.clone();
            let cm = ConfigMap { metadata: Some(m.clone()), data: data.clone() };
            let got = decoder().decode(b"/registry/configmaps/x/y", &envelope("v1", "ConfigMap", cm.encode_to_vec())).unwrap();
            prop_assert!(got.unknown.is_empty());
            let got = got.json;
            let ts = time::OffsetDateTime::from_unix_timestamp(secs).unwrap()
                .format(&time::format_description::well_known::Rfc3339).unwrap();
            // as the API server serves it: ObjectMeta's empty resourceVersion and zero generation omitted
            let mut want_meta = json!({"name": name, "namespace": ns, "uid": "uid-1", "creationTimestamp": ts});
            if !labels.is_empty() {
                want_meta["labels"] = json!(labels);
            }
            let mut want = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": want_meta.clone()});
            if !data.is_empty() {
                want["data"] = json!(data);
            }
            prop_assert_eq!(&got, &want);
            let s = Secret { metadata: Some(m), data: bytes.clone(), r#type: Some("Opaque".into()) };
            let got = decoder().decode(b"/registry/secrets/x/y", &envelope("v1", "Secret", s.encode_to_vec())).unwrap().json;
            let b64 = |v: &Vec<u8>| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, v);
            let mut want = json!({"apiVersion": "v1", "kind": "Secret", "metadata": want_meta, "type": "Opaque"});
            if !bytes.is_empty() {
                want["data"] = bytes.iter().map(|(k, v)| (k.clone(), json!(b64(v)))).collect::<serde_json::Map<_, _>>().into();
            }
            prop_assert_eq!(got, want);
        }

        /// Bytes that are not a valid object never panic and never come back as an object
        /// unless they parse.
        #[test]
        fn garbage_is_an_error_not_a_panic(raw in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = decoder().decode(b"/registry/pods/x/y", &envelope("v1", "Pod", raw.clone()));
            let _ = decoder().decode(b"/registry/pods/x/y", &raw);
        }
    }
}

/// `--out` never writes through a symlink, removes what a killed extraction left beside it,
/// and writes every object whatever its name: a 253-character name (with a hash suffix where
/// the file system's 255 bytes would not fit) and undecodable keys holding NUL, `..` or `/`.
#[test]
fn out_takes_any_name_and_never_a_link() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (_, etcd) = cluster_snapshot(dir);
    let long = "n".repeat(253);
    put_all(
        &etcd.endpoint,
        &[
            (
                format!("/registry/configmaps/shop/{long}"),
                configmap(&long, "shop", &[("k", "v")]),
            ),
            ("/registry/secrets/shop/..".into(), b"\x00garbage".to_vec()),
            (
                "/registry/secrets/shop/a\0b".into(),
                b"\x00garbage".to_vec(),
            ),
        ],
        &[],
    );
    let snap = dir.join("edge.db");
    let o = etcdctl(
        Version::V35,
        &etcd.endpoint,
        &["snapshot", "save", snap.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // a symlink as --out: refused, its target untouched, nothing left beside it
    let target = dir.join("target");
    fs::create_dir(&target).unwrap();
    let link = dir.join("parent/out-link");
    fs::create_dir_all(dir.join("parent")).unwrap();
    std::os::unix::fs::symlink(&target, &link).unwrap();
    // plaintext an extraction killed before its rename left behind (a pid that is gone)
    let abandoned = dir.join("parent/.cpbackup-extract-999999999-abc");
    fs::create_dir(&abandoned).unwrap();
    fs::write(abandoned.join("001-secret-db.yaml"), "password: hunter2\n").unwrap();
    let refused_link = [
        snap.as_os_str(),
        "--namespace".as_ref(),
        "shop".as_ref(),
        "--out".as_ref(),
        link.as_os_str(),
    ];
    refused(dir, &refused_link, Some(1), "is a symlink");
    assert_eq!(fs::read_dir(&target).unwrap().count(), 0);

    let out = dir.join("parent/out");
    let mut c = cpbackup(dir);
    c.arg("extract")
        .arg(&snap)
        .args(["--namespace", "shop", "--format", "yaml", "--out"])
        .arg(&out);
    let o = run(c);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("interrupted extraction"),
        "{}",
        stderr(&o)
    );
    assert!(!abandoned.exists());
    let names: Vec<String> = fs::read_dir(dir.join("parent"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.starts_with(".cpbackup-extract-")),
        "{names:?}"
    );
    let files: Vec<String> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let cm = files
        .iter()
        .find(|f| f.contains("-configmap-nnnn"))
        .unwrap_or_else(|| panic!("the long-named ConfigMap is written: {files:?}"));
    assert!(cm.len() <= 255 && cm.ends_with(".yaml"), "{cm}");
    let text = fs::read_to_string(out.join(cm)).unwrap();
    assert!(text.contains(&long), "the object keeps its full name");
    let mut raw: Vec<String> = fs::read_dir(out.join("undecoded"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    raw.sort();
    assert!(
        raw.contains(&"registry~secrets~shop~..".to_owned()),
        "{raw:?}"
    );
    assert!(
        raw.contains(&"registry~secrets~shop~a%00b".to_owned()),
        "{raw:?}"
    );
}
