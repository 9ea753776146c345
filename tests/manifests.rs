//! The deployment manifests: every document parses (built-in kinds into `k8s-openapi` types),
//! and the pieces line up — selectors and labels, node selector and tolerations for control-plane
//! nodes, every mount backed by a volume and the host paths read-only where they can be, the
//! ServiceAccount, SCC and RBAC names, the config a valid cpbackup config, the container's
//! command line a valid cpbackup command line, and the alerts about metrics cpbackup exports.

use cpbackup_testkit as support;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use serde_json::Value;
use support::*;

fn docs(dir: &str) -> Vec<(String, Value)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("manifests")
        .join(dir);
    let mut files: Vec<_> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = fs::read_to_string(&f).unwrap();
        for d in serde_yaml::Deserializer::from_str(&text) {
            let v: Value = serde::Deserialize::deserialize(d)
                .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            if !v.is_null() {
                out.push((f.file_name().unwrap().to_string_lossy().into_owned(), v));
            }
        }
    }
    out
}

fn one<'a>(docs: &'a [(String, Value)], kind: &str) -> &'a Value {
    let found: Vec<_> = docs.iter().filter(|(_, d)| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "exactly one {kind}");
    &found[0].1
}

fn typed<T: serde::de::DeserializeOwned>(v: &Value) -> T {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{}: {e}", v["kind"]))
}

fn check(dir: &str, control_plane_label: &str) {
    let docs = docs(dir);
    for (file, d) in &docs {
        assert_eq!(
            d["metadata"]["labels"]["app.kubernetes.io/name"], "cpbackup",
            "{file}: {}",
            d["kind"]
        );
    }
    let ds: DaemonSet = typed(one(&docs, "DaemonSet"));
    let sa: ServiceAccount = typed(one(&docs, "ServiceAccount"));
    let cm: ConfigMap = typed(one(&docs, "ConfigMap"));
    let secret: Secret = typed(one(&docs, "Secret"));
    let svc: Service = typed(one(&docs, "Service"));
    let spec = ds.spec.as_ref().unwrap();
    let pod = spec.template.spec.as_ref().unwrap();
    let pod_labels = spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap();

    // selectors ↔ labels
    let sel = spec.selector.match_labels.clone().unwrap();
    assert!(
        sel.iter().all(|(k, v)| pod_labels.get(k) == Some(v)),
        "DaemonSet selector"
    );
    let svc_sel = svc.spec.as_ref().unwrap().selector.clone().unwrap();
    assert!(
        svc_sel.iter().all(|(k, v)| pod_labels.get(k) == Some(v)),
        "Service selector"
    );
    let sm = one(&docs, "ServiceMonitor");
    let svc_labels = svc.metadata.labels.clone().unwrap();
    for (k, v) in sm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(
            svc_labels.get(k).map(String::as_str),
            v.as_str(),
            "ServiceMonitor selector"
        );
    }
    let port = sm["spec"]["endpoints"][0]["port"].as_str().unwrap();
    assert!(
        svc.spec
            .as_ref()
            .unwrap()
            .ports
            .as_ref()
            .unwrap()
            .iter()
            .any(|p| p.name.as_deref() == Some(port))
    );

    // control-plane nodes only, and tolerated there
    assert_eq!(
        pod.node_selector
            .as_ref()
            .unwrap()
            .get(control_plane_label)
            .map(String::as_str),
        Some("")
    );
    let tol = pod.tolerations.as_ref().unwrap();
    for key in [
        "node-role.kubernetes.io/control-plane",
        "node-role.kubernetes.io/master",
    ] {
        assert!(tol.iter().any(|t| t.key.as_deref() == Some(key) && t.effect.as_deref() == Some("NoSchedule")), "{key}");
    }
    assert_eq!(pod.host_network, Some(true));
    assert_eq!(
        pod.service_account_name.as_deref(),
        sa.metadata.name.as_deref()
    );
    assert_eq!(pod.automount_service_account_token, Some(false));

    // mounts ↔ volumes; host paths
    let c = &pod.containers[0];
    let vols: BTreeMap<_, _> = pod
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .map(|v| (v.name.clone(), v))
        .collect();
    for m in c.volume_mounts.as_ref().unwrap() {
        let v = vols
            .get(&m.name)
            .unwrap_or_else(|| panic!("mount {} has no volume", m.name));
        if let Some(hp) = &v.host_path {
            // under --host-root /host, at the host's own path
            assert_eq!(m.mount_path, format!("/host{}", hp.path), "{}", m.name);
            let writable = hp.path == "/var/lib/cpbackup";
            assert_eq!(
                m.read_only.unwrap_or(false),
                !writable,
                "{} read-only unless it is the state dir",
                m.name
            );
        }
        if let Some(cfg) = &v.config_map {
            assert_eq!(cfg.name, cm.metadata.name.clone().unwrap());
        }
        if let Some(s) = &v.secret {
            assert_eq!(s.secret_name, secret.metadata.name);
        }
    }
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.privileged, Some(false));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(
        sc.capabilities.as_ref().unwrap().drop.as_ref().unwrap(),
        &vec!["ALL".to_owned()]
    );

    // the config is a valid cpbackup config and names the mounted recipients file
    let toml = cm.data.as_ref().unwrap()["config.toml"].clone();
    let cfg = cpbackup::settings::FileConfig::parse(&toml).unwrap();
    let rf = cfg.recipients_file.unwrap();
    let secret_mount = c
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.name == "secret")
        .unwrap();
    assert!(rf.starts_with(&secret_mount.mount_path), "{}", rf.display());
    assert!(
        secret
            .string_data
            .as_ref()
            .unwrap()
            .contains_key(rf.file_name().unwrap().to_str().unwrap())
    );
    for e in cfg.schedule.cron.to_vec() {
        cpbackup::daemon::schedule::six_fields(&e).unwrap();
    }

    // the container's command line is one cpbackup accepts
    let t = tempfile::tempdir().unwrap();
    let mut cmd = cpbackup(t.path());
    for a in c.args.as_ref().unwrap() {
        cmd.arg(
            a.replace("$(POD_IP)", "127.0.0.1")
                .replace("--config=/etc/cpbackup/config.toml", "--config=/dev/null"),
        );
    }
    cmd.arg("--help");
    let o = run(cmd);
    assert!(o.status.success(), "{}", stderr(&o));

    // alerts only use metrics cpbackup exports
    let exported = cpbackup::daemon::metrics::State::default().render(Some(
        &cpbackup::daemon::metrics::Live {
            schedule_interval_seconds: 1.0,
            healthy: true,
            leader_mode: true,
        },
    ));
    let rule = one(&docs, "PrometheusRule");
    let mut alerts = 0;
    for r in rule["spec"]["groups"][0]["rules"].as_array().unwrap() {
        let expr = r["expr"].as_str().unwrap();
        for word in expr.split(|ch: char| !(ch.is_alphanumeric() || ch == '_')) {
            if word.starts_with("cpbackup_") {
                assert!(
                    exported.contains(&format!("# TYPE {word} ")),
                    "alert {} uses {word}, which is not exported",
                    r["alert"]
                );
            }
        }
        alerts += 1;
    }
    assert!(alerts >= 4);
}

#[test]
fn kubernetes_manifests_line_up() {
    check("kubernetes", "node-role.kubernetes.io/control-plane");
}

#[test]
fn openshift_manifests_line_up_with_the_scc() {
    check("openshift", "node-role.kubernetes.io/master");
    let docs = docs("openshift");
    let scc = one(&docs, "SecurityContextConstraints");
    assert_eq!(scc["allowPrivilegedContainer"], false);
    assert_eq!(scc["allowHostPID"], false);
    let role = one(&docs, "ClusterRole");
    assert_eq!(
        role["rules"][0]["resourceNames"][0],
        scc["metadata"]["name"]
    );
    assert_eq!(role["rules"][0]["verbs"], serde_json::json!(["use"]));
    let rb = one(&docs, "RoleBinding");
    assert_eq!(rb["roleRef"]["name"], role["metadata"]["name"]);
    assert_eq!(rb["subjects"][0]["name"], "cpbackup");
    let ds = one(&docs, "DaemonSet");
    assert_eq!(
        ds["spec"]["template"]["spec"]["containers"][0]["securityContext"]["seLinuxOptions"]["type"],
        "spc_t"
    );
}

#[test]
fn machineconfig_lays_down_a_valid_config_and_verified_units() {
    let docs = docs("openshift");
    let mc = one(&docs, "MachineConfig");
    assert_eq!(
        mc["metadata"]["labels"]["machineconfiguration.openshift.io/role"],
        "master"
    );
    let file = &mc["spec"]["config"]["storage"]["files"][0];
    assert_eq!(file["path"], "/etc/cpbackup/config.toml");
    assert_eq!(file["mode"], 0o600);
    let src = file["contents"]["source"]
        .as_str()
        .unwrap()
        .strip_prefix("data:,")
        .unwrap();
    let toml = percent_decode(src);
    cpbackup::settings::FileConfig::parse(&toml).unwrap();
    let t = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for u in mc["spec"]["config"]["systemd"]["units"].as_array().unwrap() {
        let name = u["name"].as_str().unwrap();
        let p = t.path().join(name);
        fs::write(
            &p,
            u["contents"]
                .as_str()
                .unwrap()
                .replace("/usr/bin/podman", "/bin/true"),
        )
        .unwrap();
        paths.push(p);
    }
    let o = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&paths)
        .output()
        .unwrap();
    assert!(o.status.success() && o.stderr.is_empty(), "{}", stderr(&o));
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}
