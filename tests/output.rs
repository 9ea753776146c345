//! Every command's `-o json` against docs/output.md, both ways: each field the command prints
//! is documented with its type, and each documented field that is not optional is printed.

use cpbackup_testkit as support;

use support::*;

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
