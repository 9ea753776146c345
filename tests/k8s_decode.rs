//! The fixture gate: every built-in Kubernetes 1.35 type, stored as kube-apiserver writes it to
//! etcd, decodes to exactly the JSON the API server serves for it.

use std::path::PathBuf;

use cpbackup::k8s::decode::Decoder;
use cpbackup::k8s::encryption::Keyring;
use cpbackup::k8s::schema::Schema;
use serde_json::Value;

/// Pairs that are not expected to match, with the reason. Keep this list short and explained.
const EXCEPTIONS: &[(&str, &str)] = &[];

fn fixtures() -> Option<PathBuf> {
    let dir = std::env::var_os("CPBACKUP_K8S_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../shared/fixtures/k8s-api-serialization-v1.35.0")
        });
    dir.is_dir().then_some(dir)
}

/// Where two JSON values differ, as `path: ours vs theirs` lines.
fn diff(path: &str, ours: &Value, theirs: &Value, out: &mut Vec<String>) {
    match (ours, theirs) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, va) in a {
                match b.get(k) {
                    Some(vb) => diff(&format!("{path}.{k}"), va, vb, out),
                    None => out.push(format!("{path}.{k}: extra {va}")),
                }
            }
            for k in b.keys().filter(|k| !a.contains_key(*k)) {
                out.push(format!("{path}.{k}: missing {}", b[k]));
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (va, vb)) in a.iter().zip(b).enumerate() {
                diff(&format!("{path}[{i}]"), va, vb, out);
            }
        }
        (a, b) if a != b => {
            let short = |v: &Value| v.to_string().chars().take(120).collect::<String>();
            out.push(format!("{path}: ours {} vs {}", short(a), short(b)));
        }
        _ => {}
    }
}

#[test]
fn every_builtin_type_decodes_to_the_api_servers_json() {
    let Some(dir) = fixtures() else {
        eprintln!("SKIPPED: no Kubernetes serialization fixtures (set CPBACKUP_K8S_FIXTURES)");
        return;
    };
    let decoder = Decoder::new(Schema::builtin().unwrap(), Keyring::empty());
    let mut pairs = 0;
    let mut failures = Vec::new();
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pb"))
        .collect();
    names.sort();
    for pb in names {
        let stem = pb.file_stem().unwrap().to_string_lossy().into_owned();
        let want: Value =
            serde_json::from_slice(&std::fs::read(pb.with_extension("json")).unwrap()).unwrap();
        pairs += 1;
        let (gv, kind) = stem.rsplit_once('.').unwrap();
        let (group, version) = gv.rsplit_once('.').unwrap();
        let api_version = match group {
            "core" => version.to_owned(),
            g => format!("{g}/{version}"),
        };
        // the type is only a hint: every stored type names itself in its envelope
        let got = decoder.decode_as(&std::fs::read(&pb).unwrap(), &api_version, kind);
        let problems = match got {
            Ok(got) => {
                let mut d = Vec::new();
                diff("", &got, &want, &mut d);
                d
            }
            Err(e) => vec![format!("not decoded: {e}")],
        };
        let excused = EXCEPTIONS.iter().any(|(n, _)| *n == stem);
        match (problems.is_empty(), excused) {
            (false, false) => failures.push(format!("{stem}:\n  {}", problems.join("\n  "))),
            (true, true) => failures.push(format!("{stem}: listed as an exception but matches")),
            _ => {}
        }
    }
    assert_eq!(pairs, 182, "the fixture directory should hold 182 pairs");
    eprintln!(
        "{} of {pairs} pairs decode to their JSON; {} listed exceptions",
        pairs - EXCEPTIONS.len(),
        EXCEPTIONS.len()
    );
    assert!(
        failures.is_empty(),
        "{} pairs differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
