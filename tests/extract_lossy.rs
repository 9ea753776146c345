//! `cpbackup extract` never loses a field silently: objects stored by a newer release (fields the
//! schema does not know at the top, inside ObjectMeta, deep in a pod template) are written but
//! flagged, `--strict` fails on them and `--apply` refuses them; objects of types and fields only
//! older releases have (v1.34's PodCertificateRequest, DeviceTaintSelector.deviceClassName)
//! decode whole. Real etcd, real snapshot, the real binary.

use cpbackup_testkit as support;

use std::path::{Path, PathBuf};

use serde_json::Value;
use support::*;

fn varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// A length-delimited field.
fn ld(field: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    varint(&mut v, u64::from(field) << 3 | 2);
    varint(&mut v, payload.len() as u64);
    v.extend_from_slice(payload);
    v
}

/// A varint field.
fn vi(field: u32, n: u64) -> Vec<u8> {
    let mut v = Vec::new();
    varint(&mut v, u64::from(field) << 3);
    varint(&mut v, n);
    v
}

/// `k8s\0` + runtime.Unknown{TypeMeta, raw}.
fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let type_meta = [ld(1, api_version.as_bytes()), ld(2, kind.as_bytes())].concat();
    let mut v = b"k8s\0".to_vec();
    v.extend([ld(1, &type_meta), ld(2, raw)].concat());
    v
}

fn meta(name: &str, ns: &str) -> Vec<u8> {
    [
        ld(1, name.as_bytes()),
        ld(3, ns.as_bytes()),
        ld(5, b"uid-1"),
    ]
    .concat()
}

/// A Deployment as a release newer than the schema writes it: field 99 at the top, field 40 in
/// ObjectMeta, field 77 in the first container of the pod template.
fn future_deployment() -> Vec<u8> {
    let container = [ld(1, b"app"), ld(2, b"nginx:1.27"), vi(77, 1)].concat();
    let pod_spec = ld(2, &container);
    let template = [ld(1, &[]), ld(2, &pod_spec)].concat();
    let spec = [vi(1, 2), ld(3, &template)].concat();
    let metadata = [meta("web", "shop"), vi(40, 7)].concat();
    let d = [ld(1, &metadata), ld(2, &spec), ld(99, b"from the future")].concat();
    envelope("apps/v1", "Deployment", &d)
}

fn configmap(name: &str) -> Vec<u8> {
    let entry = [ld(1, b"mode"), ld(2, b"on")].concat();
    envelope(
        "v1",
        "ConfigMap",
        &[ld(1, &meta(name, "shop")), ld(2, &entry)].concat(),
    )
}

/// v1.34's resource.k8s.io/v1alpha3 DeviceTaintRule, whose deviceSelector.deviceClassName (1)
/// and selectors (5) v1.35 removed.
fn device_taint_rule() -> Vec<u8> {
    let cel = ld(1, &ld(1, b"device.driver == \"gpu.example.com\""));
    let selector = [ld(1, b"gpu"), ld(2, b"gpu.example.com"), ld(5, &cel)].concat();
    let taint = [ld(1, b"example.com/broken"), ld(3, b"NoExecute")].concat();
    let spec = [ld(1, &selector), ld(2, &taint)].concat();
    let meta = ld(1, b"broken-gpus");
    envelope(
        "resource.k8s.io/v1alpha3",
        "DeviceTaintRule",
        &[ld(1, &meta), ld(2, &spec)].concat(),
    )
}

/// v1.34's certificates.k8s.io/v1alpha1 PodCertificateRequest (gone from v1.35).
fn pod_certificate_request() -> Vec<u8> {
    let spec = [
        ld(1, b"example.com/signer"),
        ld(2, b"web-0"),
        ld(6, b"node-1"),
    ]
    .concat();
    envelope(
        "certificates.k8s.io/v1alpha1",
        "PodCertificateRequest",
        &[ld(1, &meta("web-0-pcr", "shop")), ld(2, &spec)].concat(),
    )
}

fn snapshot(dir: &Path) -> PathBuf {
    let etcd = Etcd::start(Version::V35, dir, "127.0.0.1", free_port(), None);
    let kvs = vec![
        (
            "/registry/deployments/shop/web".to_owned(),
            future_deployment(),
        ),
        (
            "/registry/configmaps/shop/plain".to_owned(),
            configmap("plain"),
        ),
        (
            "/registry/podcertificaterequests/shop/web-0-pcr".to_owned(),
            pod_certificate_request(),
        ),
        (
            "/registry/devicetaintrules/broken-gpus".to_owned(),
            device_taint_rule(),
        ),
        (
            "/registry/namespaces/shop".to_owned(),
            br#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"shop","uid":"u"}}"#
                .to_vec(),
        ),
    ];
    put_all(&etcd.endpoint, &kvs, &[]);
    let snap = dir.join("snapshot.db");
    let o = etcd.ctl(&["snapshot", "save"]).arg(&snap).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    snap
}

fn extract(dir: &Path, snap: &Path, args: &[&str]) -> std::process::Output {
    let mut c = cpbackup(dir);
    c.arg("extract").arg(snap).args(args);
    run(c)
}

#[test]
fn unknown_fields_are_flagged_everywhere_and_strict_and_apply_refuse_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let snap = snapshot(dir);

    // YAML on stdout: the object is there, a comment above it names every missing field
    let o = extract(dir, &snap, &["--namespace", "shop"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let doc = out
        .split("\n---\n")
        .find(|d| d.contains("kind: Deployment"))
        .unwrap_or_else(|| panic!("no Deployment in:\n{out}"));
    assert!(
        doc.starts_with("# LOSSY: k8s.io.api.apps.v1.Deployment"),
        "{doc}"
    );
    for want in [
        "#   field 99 (len) at top level in k8s.io.api.apps.v1.Deployment",
        "#   field 40 (varint) at metadata in k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "#   field 77 (varint) at spec.template.spec.containers[0] in k8s.io.api.core.v1.Container",
    ] {
        assert!(doc.contains(want), "{want:?} missing from:\n{doc}");
    }
    let yaml: Value = serde_yaml::from_str(doc).unwrap();
    assert_eq!(
        yaml["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.27"
    );
    let plain = out
        .split("\n---\n")
        .find(|d| d.contains("name: plain"))
        .unwrap();
    assert!(!plain.contains("LOSSY"), "{plain}");
    let err = stderr(&o);
    assert!(
        err.contains("lossy: deployment.apps/web (/registry/deployments/shop/web): the schema does not know field 99"),
        "{err}"
    );
    assert!(err.contains("lossy (1):"), "{err}");

    // the JSON report lists them; the objects still go to --out
    let out_dir = dir.join("out");
    let mut c = cpbackup(dir);
    c.args(["--output", "json", "extract"])
        .arg(&snap)
        .args(["--namespace", "shop", "--out"])
        .arg(&out_dir);
    let o = run(c);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    let lossy = report["lossy"].as_array().unwrap();
    assert_eq!(lossy.len(), 1, "{report:#}");
    assert_eq!(lossy[0]["key"], "/registry/deployments/shop/web");
    assert_eq!(lossy[0]["message"], "k8s.io.api.apps.v1.Deployment");
    let fields: Vec<(String, u64, String)> = lossy[0]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_owned(),
                f["number"].as_u64().unwrap(),
                f["wire_type"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        fields,
        [
            (String::new(), 99, "len".to_owned()),
            ("metadata".to_owned(), 40, "varint".to_owned()),
            (
                "spec.template.spec.containers[0]".to_owned(),
                77,
                "varint".to_owned()
            ),
        ]
    );
    assert_eq!(report["schema_releases"][0], "1.30");
    let files = files_under(&out_dir);
    let deployment = files.iter().find(|f| f.contains("deployment-web")).unwrap();
    let text = std::fs::read_to_string(out_dir.join(deployment)).unwrap();
    assert!(text.starts_with("# LOSSY:"), "{text}");

    // --strict: the same output, exit 1 saying why
    let o = extract(dir, &snap, &["--namespace", "shop", "--strict"]);
    assert!(stdout(&o).contains("kind: Deployment"));
    fails_with(&o, 1, "--strict: 1 object(s) are lossy");
    // without a lossy object, --strict passes
    let o = extract(
        dir,
        &snap,
        &["--prefix", "/registry/configmaps/", "--strict"],
    );
    assert!(o.status.success(), "{}", stderr(&o));

    // --apply: refused before anything is sent, unless --allow-lossy
    let api = FakeApi::start(&[]);
    let root = dir.join("kc");
    api.kubeconfig_for(&root);
    let kc = root.join("etc/kubernetes/static-pod-resources/kube-apiserver-certs/secrets/node-kubeconfigs/localhost.kubeconfig");
    let kc = kc.to_str().unwrap();
    let o = extract(
        dir,
        &snap,
        &["--namespace", "shop", "--apply", "--kubeconfig", kc],
    );
    let err = fails_with(&o, 2, "not applied: 1 object(s)");
    assert!(
        err.contains("deployment.apps/web") && err.contains("--allow-lossy"),
        "{err}"
    );
    assert!(
        api.asked.lock().unwrap().is_empty(),
        "nothing may reach the API server"
    );
    let o = extract(
        dir,
        &snap,
        &[
            "--namespace",
            "shop",
            "--apply",
            "--allow-lossy",
            "--kubeconfig",
            kc,
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let asked = api.asked.lock().unwrap().join("\n");
    assert!(
        asked.contains("/apis/apps/v1/namespaces/shop/deployments/web"),
        "{asked}"
    );
}

#[test]
fn types_and_fields_only_older_releases_have_decode_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let snap = snapshot(dir);
    // every key under a prefix as stored, as JSON; --strict: nothing may be lossy
    let dump = |prefix: &str| -> Value {
        let o = extract(
            dir,
            &snap,
            &["--prefix", prefix, "--raw", "--format", "json", "--strict"],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let list = dump("/registry/devicetaintrules/");
    let selector = &list["items"][0]["spec"]["deviceSelector"];
    assert_eq!(selector["deviceClassName"], "gpu", "{list:#}");
    assert_eq!(selector["driver"], "gpu.example.com");
    assert_eq!(
        selector["selectors"][0]["cel"]["expression"],
        "device.driver == \"gpu.example.com\""
    );

    let list = dump("/registry/podcertificaterequests/");
    let pcr = &list["items"][0];
    assert_eq!(pcr["kind"], "PodCertificateRequest", "{list:#}");
    assert_eq!(pcr["spec"]["signerName"], "example.com/signer");
    assert_eq!(pcr["spec"]["nodeName"], "node-1");
    assert!(list.get("undecoded").is_none(), "{list:#}");
}

/// `--apply` with a kubeconfig whose server is not there: one error naming it, not one per object.
#[test]
fn apply_to_an_unreachable_api_server_fails_once_before_any_object() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let snap = snapshot(dir);
    let kc = dir.join("kubeconfig");
    std::fs::write(
        &kc,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{}\n\
             contexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user:\n    token: t\n",
            free_port()
        ),
    )
    .unwrap();
    let o = extract(
        dir,
        &snap,
        &[
            "--prefix",
            "/registry/configmaps/",
            "--apply",
            "--kubeconfig",
            kc.to_str().unwrap(),
        ],
    );
    let err = fails_with(&o, 1, "cannot reach the API server of");
    assert!(err.contains("nothing was applied"), "{err}");
    assert!(
        !stdout(&o).contains("failed"),
        "no line per object: {}",
        stdout(&o)
    );
}
