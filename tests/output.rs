//! Every command's `-o json` against docs/output.md, both ways: each field the command prints
//! is documented with its type, and each documented field that is not optional is printed.

use cpbackup_testkit as support;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde_json::Value;
use support::*;

/// section title → (field → (type, optional)), from the tables of docs/output.md.
fn documented() -> BTreeMap<String, BTreeMap<String, (String, bool)>> {
    let text =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/output.md")).unwrap();
    let mut out: BTreeMap<String, BTreeMap<String, (String, bool)>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines() {
        if let Some(t) = line.strip_prefix("## ") {
            section = t.trim().to_owned();
            continue;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if section.is_empty() || cells.len() < 4 || !cells[1].starts_with('`') {
            continue;
        }
        let field = cells[1].trim_matches('`').to_owned();
        let (ty, optional) = match cells[2].strip_suffix('?') {
            Some(t) => (t.to_owned(), true),
            None => (cells[2].to_owned(), false),
        };
        out.entry(section.clone())
            .or_default()
            .insert(field, (ty, optional));
    }
    out
}

fn type_ok(ty: &str, v: &Value) -> bool {
    match ty {
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        _ => panic!("docs/output.md: unknown type {ty}"),
    }
}

/// Checks one object against a section; returns how many fields were checked.
fn conforms(section: &str, v: &Value) -> usize {
    let docs = documented();
    let fields = docs
        .get(section)
        .unwrap_or_else(|| panic!("docs/output.md has no section {section}"));
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("{section}: not an object: {v}"));
    for (k, val) in obj {
        let (ty, optional) = fields
            .get(k)
            .unwrap_or_else(|| panic!("{section}: field {k} is not in docs/output.md"));
        if val.is_null() {
            assert!(
                optional,
                "{section}: {k} is null but not documented as optional"
            );
        } else {
            assert!(type_ok(ty, val), "{section}: {k} = {val} is not a {ty}");
        }
    }
    for (k, (_, optional)) in fields {
        assert!(
            *optional || obj.contains_key(k),
            "{section}: documented field {k} missing from {v}"
        );
    }
    obj.len()
}

fn json(o: &std::process::Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(o), stderr(o)))
}

#[test]
fn every_commands_json_is_what_docs_output_md_says() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let etcd = Etcd::start(Version::V35, dir, "127.0.0.1", free_port(), None);
    etcd.put(
        "/registry/namespaces/shop",
        r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"shop"}}"#,
    );
    etcd.put(
        "/registry/configmaps/shop/a",
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","namespace":"shop"},"data":{"k":"v"}}"#,
    );
    let store = dir.join("store");
    let cmd = |args: &[&str]| {
        let mut c = cpbackup(dir);
        c.args(["-o", "json"]).args(args);
        run(c)
    };
    let store_s = store.to_str().unwrap();

    let o = cmd(&["keygen", "--out", dir.join("key.txt").to_str().unwrap()]);
    let k = json(&o);
    conforms("keygen", &k);
    let recipient = k["recipient"].as_str().unwrap().to_owned();
    let key = dir.join("key.txt");
    let key_s = key.to_str().unwrap();

    let backup = |n: &str| {
        let o = cmd(&[
            "backup",
            "--etcd-endpoint",
            &etcd.endpoint,
            "--static-pods",
            "none",
            "--recipient",
            &recipient,
            "--cluster-name",
            "c1",
            "--node-name",
            n,
            "--store",
            store_s,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        json(&o)
    };
    conforms("backup", &backup("cp-1"));
    backup("cp-2");

    let list = json(&cmd(&["list", "--store", store_s]));
    let items = list.as_array().unwrap();
    assert_eq!(items.len(), 2);
    for l in items {
        conforms("list", l);
        conforms("record", &l["record"]);
    }
    for s in json(&cmd(&["list", "--store", store_s, "--summary"]))
        .as_array()
        .unwrap()
    {
        conforms("list --summary", s);
    }
    let latest = ["--store", store_s, "--identity", key_s, "--latest"];
    conforms("verify", &json(&cmd(&[&["verify"][..], &latest].concat())));
    conforms(
        "inspect",
        &json(&cmd(&[&["inspect"][..], &latest].concat())),
    );
    let out = dir.join("shop");
    let extract = json(&cmd(&[
        &["extract"][..],
        &latest,
        &["--namespace", "shop", "--out", out.to_str().unwrap()],
    ]
    .concat()));
    assert!(extract["objects"].as_u64().unwrap() >= 1, "{extract}");
    conforms("extract", &extract);
    let plan = json(&cmd(&[
        "prune",
        "--store",
        store_s,
        "--keep-last",
        "1",
        "--dry-run",
    ]));
    assert!(!plan.as_array().unwrap().is_empty());
    for p in plan.as_array().unwrap() {
        conforms("prune", p);
    }
    // doctor on a host that is no control plane: it fails, and its JSON still holds.
    let o = cmd(&[
        "doctor",
        "--etcd-endpoint",
        &etcd.endpoint,
        "--static-pods",
        "none",
        "--recipient",
        &recipient,
        "--store",
        store_s,
        "--no-write-probe",
    ]);
    let d = json(&o);
    conforms("doctor", &d);
    assert!(d["checks"].as_array().unwrap().len() >= 8);
}
