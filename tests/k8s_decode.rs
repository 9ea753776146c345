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
                diff("", &got.json, &want, &mut d);
                if !got.unknown.is_empty() {
                    d.push(format!("flagged lossy: {}", got.unknown.summary()));
                }
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

/// OpenShift's types, loaded at run time from Debian's golang-github-openshift-api-dev files
/// (scripts/lib.sh unpacks them and sets CPBACKUP_TEST_OPENSHIFT_PROTOS).
#[test]
fn openshift_routes_decode_with_debians_proto_files() {
    let Some(dir) = std::env::var_os("CPBACKUP_TEST_OPENSHIFT_PROTOS") else {
        eprintln!("SKIPPED: CPBACKUP_TEST_OPENSHIFT_PROTOS is not set (scripts/test.sh sets it)");
        return;
    };
    let mut schema = Schema::builtin().unwrap();
    let files = schema.add_proto_dir(std::path::Path::new(&dir)).unwrap();
    assert!(files >= 12, "{files} OpenShift .proto files");
    // a Route as openshift-apiserver stores it: k8s\0 + Unknown{TypeMeta, raw Route}
    fn ld(field: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![field << 3 | 2, payload.len() as u8];
        v.extend_from_slice(payload);
        v
    }
    let meta = [ld(1, b"web"), ld(3, b"shop")].concat();
    let target = [ld(1, b"Service"), ld(2, b"web")].concat();
    let spec = [ld(1, b"shop.example.com"), ld(2, b"/"), ld(3, &target)].concat();
    let route = [ld(1, &meta), ld(2, &spec)].concat();
    let type_meta = [ld(1, b"route.openshift.io/v1"), ld(2, b"Route")].concat();
    let mut value = b"k8s\0".to_vec();
    value.extend([ld(1, &type_meta), ld(2, &route)].concat());
    let decoder = Decoder::new(Schema::builtin().unwrap(), Keyring::empty());
    assert!(
        decoder
            .decode(b"/openshift.io/routes/shop/web", &value)
            .unwrap_err()
            .to_string()
            .contains("--proto-path")
    );
    let decoder = Decoder::new(schema, Keyring::empty());
    let got = decoder
        .decode(b"/openshift.io/routes/shop/web", &value)
        .unwrap();
    assert!(got.unknown.is_empty(), "{}", got.unknown.summary());
    assert_eq!(
        got.json,
        serde_json::json!({"apiVersion":"route.openshift.io/v1","kind":"Route",
            "metadata":{"name":"web","namespace":"shop"},
            "spec":{"host":"shop.example.com","path":"/","to":{"kind":"Service","name":"web"}}})
    );
}
