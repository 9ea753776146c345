//! The S3 store against a real S3 server with Object Lock (moto), checked with an independent
//! client (boto3): retention on every object, early deletion refused, nothing partial left.

use cpbackup_testkit as support;

use support::*;

#[test]
fn backup_to_a_locked_bucket_is_immutable_listable_and_verifiable() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let moto = Moto::start(dir);
    moto.create_bucket("locked", true);
    let etcd = Etcd::start(Version::V35, dir, "127.0.0.1", free_port(), None);
    etcd.seed("/registry/configmaps/shop/cm-", 8000, 2000); // bundle > one 5 MiB part
    let (key, r) = keygen(dir, "k");
    let local = dir.join("spool");

    let mut c = moto.cpbackup(dir);
    c.args([
        "--output",
        "json",
        "backup",
        "--static-pods",
        "none",
        "--etcd-endpoint",
        &etcd.endpoint,
    ]);
    c.args(["--recipient", &r, "--store", "s3://locked/prod", "--store"])
        .arg(&local);
    c.args(["--retain-days", "2", "--s3-part-size", "5242880"]);
    let o = run(c);
    assert!(o.status.success(), "backup to S3 failed: {}", stderr(&o));
    let rep = json(&o);
    assert!(
        rep["stores"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["ok"] == true),
        "{rep}"
    );
    assert!(
        rep["bundle_size"].as_u64().unwrap() > 5 << 20,
        "the test needs a multipart upload"
    );
    let name = rep["name"].as_str().unwrap().to_owned();

    let mut c = moto.cpbackup(dir);
    c.args(["list", "--output", "json", "--store", "s3://locked/prod"]);
    let l = json(&run(c));
    assert_eq!(l.as_array().unwrap().len(), 1, "{l}");
    assert_eq!(l[0]["state"], "complete");
    assert_eq!(l[0]["name"], name.as_str());
    assert_eq!(l[0]["record"]["lock_mode"], "COMPLIANCE");
    assert!(
        l[0]["record"]["retain_until"]
            .as_str()
            .unwrap()
            .starts_with("20"),
        "{l}"
    );

    let mut c = moto.cpbackup(dir);
    c.args([
        "verify",
        "--latest",
        "--store",
        "s3://locked/prod",
        "--identity",
    ])
    .arg(&key);
    let o = run(c);
    assert!(o.status.success(), "verify from S3 failed: {}", stderr(&o));

    // inspect reads the snapshot straight from the bucket
    let mut c = moto.cpbackup(dir);
    c.args([
        "inspect",
        "--output",
        "json",
        "--latest",
        "--store",
        "s3://locked/prod",
        "--identity",
    ])
    .arg(&key);
    let o = run(c);
    assert!(o.status.success(), "inspect from S3 failed: {}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["live_keys"], 8000);
    assert_eq!(v["hash_trailer"], "valid");

    // An independent client sees the lock on both objects and cannot delete them early.
    let out = moto.py(&format!(
        "for k in ['prod/{name}', 'prod/{name}.json']:\n\
         \x20   h = s3.head_object(Bucket='locked', Key=k)\n\
         \x20   print(k, h.get('ObjectLockMode'), h.get('ObjectLockRetainUntilDate') is not None)\n\
         \x20   v = s3.list_object_versions(Bucket='locked', Prefix=k)['Versions'][0]['VersionId']\n\
         \x20   try:\n\
         \x20       s3.delete_object(Bucket='locked', Key=k, VersionId=v)\n\
         \x20       print('DELETED', k)\n\
         \x20   except Exception as e:\n\
         \x20       print('refused', type(e).__name__)\n\
         print('uploads', len(s3.list_multipart_uploads(Bucket='locked').get('Uploads', [])))\n"
    ));
    assert!(
        !out.contains("DELETED"),
        "a locked backup was deleted:\n{out}"
    );
    assert_eq!(out.matches("COMPLIANCE True").count(), 2, "{out}");
    assert_eq!(out.matches("refused").count(), 2, "{out}");
    assert!(out.contains("uploads 0"), "{out}");
}

#[test]
fn a_bucket_without_object_lock_is_refused_unless_allowed() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let moto = Moto::start(dir);
    moto.create_bucket("plain", false);
    let etcd = Etcd::start(Version::V35, dir, "127.0.0.1", free_port(), None);
    etcd.put("/registry/namespaces/shop", "{}");
    let (_, r) = keygen(dir, "k");
    let backup = |extra: &[&str]| {
        let mut c = moto.cpbackup(dir);
        etcd_backup(&mut c, &etcd.endpoint, &r);
        c.args(["--store", "s3://plain/x"]).args(extra);
        run(c)
    };
    let o = backup(&[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("has no Object Lock") && stderr(&o).contains("allow_mutable"),
        "{}",
        stderr(&o)
    );
    let out = moto.py("print(s3.list_objects_v2(Bucket='plain').get('KeyCount'))");
    assert_eq!(out.trim(), "0");
    let o = backup(&["--allow-mutable"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut c = moto.cpbackup(dir);
    c.args(["list", "--output", "json", "--store", "s3://plain/x"]);
    let l = json(&run(c));
    assert_eq!(l[0]["state"], "complete");
    assert!(l[0]["record"]["lock_mode"].is_null());
}

/// What the bucket holds: (visible objects, multipart uploads in progress).
fn bucket_state(moto: &Moto, bucket: &str) -> (u64, usize) {
    let out = moto.py(&format!(
        "print(s3.list_objects_v2(Bucket='{bucket}').get('KeyCount'), len(s3.list_multipart_uploads(Bucket='{bucket}').get('Uploads', [])))"
    ));
    let mut it = out.split_whitespace();
    (
        it.next().unwrap().parse().unwrap(),
        it.next().unwrap().parse().unwrap(),
    )
}

#[test]
fn sigterm_mid_upload_aborts_the_multipart_upload() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let moto = Moto::start(dir);
    moto.create_bucket("locked", true);
    let f = frozen_backup(dir, moto.cpbackup(dir), &["s3://locked/prod"]);
    assert_eq!(
        bucket_state(&moto, "locked"),
        (0, 1),
        "an upload is in progress, nothing visible"
    );
    f.sigterm();
    let o = f.child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(
        bucket_state(&moto, "locked"),
        (0, 0),
        "no object and no dangling upload"
    );
}

#[test]
fn a_killed_backup_leaves_nothing_visible_and_the_next_one_cleans_up() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let moto = Moto::start(dir);
    moto.create_bucket("locked", true);
    let mut f = frozen_backup(dir, moto.cpbackup(dir), &["s3://locked/prod"]);
    f.child.kill().unwrap(); // SIGKILL: no chance to abort
    f.child.wait().unwrap();
    assert_eq!(
        bucket_state(&moto, "locked"),
        (0, 1),
        "nothing visible, one dangling upload"
    );
    // The next backup of this node aborts what a killed run left behind.
    f.etcd.put("/registry/namespaces/after", "{}");
    let (_, r) = keygen(dir, "k2");
    let mut c = moto.cpbackup(dir);
    etcd_backup(&mut c, &f.etcd.endpoint, &r);
    c.args(["--store", "s3://locked/prod"]);
    let o = run(c);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("aborted 1 unfinished upload"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        bucket_state(&moto, "locked"),
        (2, 0),
        "one bundle and its record, no upload left"
    );
}

#[test]
fn unreachable_s3_keeps_the_local_copy_pending_until_upload_pending() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let moto = Moto::start(dir);
    moto.create_bucket("locked", true);
    let etcd = Etcd::start(Version::V35, dir, "127.0.0.1", free_port(), None);
    etcd.seed("/registry/configmaps/shop/cm-", 200, 500);
    let (key, r) = keygen(dir, "k");
    let local = dir.join("spool");
    let local_s = local.to_str().unwrap();

    // S3 unreachable: the local copy is written and marked pending, exit 1.
    let mut c = moto.cpbackup(dir);
    c.env(
        "CPBACKUP_S3_ENDPOINT",
        format!("http://127.0.0.1:{}", free_port()),
    );
    etcd_backup(&mut c, &etcd.endpoint, &r);
    c.args(["--store", local_s, "--store", "s3://locked/prod"]);
    let o = run(c);
    fails_with(&o, 1, "1 of 2 stores");
    let mut c = cpbackup(dir);
    c.args(["list", "--output", "json", "--store", local_s]);
    let l: serde_json::Value = serde_json::from_slice(&run(c).stdout).unwrap();
    assert_eq!(l[0]["state"], "complete");
    assert_eq!(l[0]["pending"][0], "s3://locked/prod");
    let mut c = cpbackup(dir);
    c.args(["list", "--store", local_s]);
    let text = stdout(&run(c));
    assert!(text.contains("pending: s3://locked/prod"), "{text}");
    assert_eq!(bucket_state(&moto, "locked"), (0, 0));

    // S3 back: --upload-pending copies it, with its lock, and clears the mark; one PendingCopy
    // per copy in JSON.
    let mut c = moto.cpbackup(dir);
    c.args([
        "--output",
        "json",
        "backup",
        "--upload-pending",
        "--store",
        local_s,
        "--store",
        "s3://locked/prod",
    ]);
    let o = run(c);
    assert!(o.status.success(), "{}", stderr(&o));
    let copied: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(copied.as_array().map(Vec::len), Some(1), "{copied}");
    assert_eq!(copied[0]["kind"], "PendingCopy");
    assert_eq!(copied[0]["format_version"], 1);
    assert_eq!(copied[0]["ok"], true);
    assert_eq!(copied[0]["to"], "s3://locked/prod", "{copied}");
    let mut c = cpbackup(dir);
    c.args(["list", "--output", "json", "--store", local_s]);
    let l: serde_json::Value = serde_json::from_slice(&run(c).stdout).unwrap();
    assert!(l[0].get("pending").is_none(), "{l}");
    let mut c = moto.cpbackup(dir);
    c.args(["list", "--output", "json", "--store", "s3://locked/prod"]);
    let s3l: serde_json::Value = serde_json::from_slice(&run(c).stdout).unwrap();
    assert_eq!(s3l[0]["state"], "complete");
    assert_eq!(s3l[0]["name"], l[0]["name"]);
    assert_eq!(s3l[0]["record"]["lock_mode"], "COMPLIANCE");
    let mut c = moto.cpbackup(dir);
    c.args([
        "verify",
        "--latest",
        "--store",
        "s3://locked/prod",
        "--identity",
    ])
    .arg(&key);
    assert!(run(c).status.success());
    // nothing left to do
    let mut c = moto.cpbackup(dir);
    c.args([
        "backup",
        "--upload-pending",
        "--store",
        local_s,
        "--store",
        "s3://locked/prod",
    ]);
    assert_eq!(stdout(&run(c)).trim(), "nothing pending");
}

#[test]
fn s3_gone_mid_upload_fails_that_store_only_and_leaves_no_object() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let moto = Moto::start(dir);
    moto.create_bucket("locked", true);
    let etcd = Etcd::start(Version::V35, dir, "127.0.0.1", free_port(), None);
    etcd.seed("/registry/configmaps/shop/cm-", 8000, 2000); // several 5 MiB parts
    let (_, r) = keygen(dir, "k");
    let local = dir.join("spool");
    let proxy = FlakyProxy::start(moto.endpoint.trim_start_matches("http://"), 7 << 20);
    let mut c = moto.cpbackup(dir);
    c.env("CPBACKUP_S3_ENDPOINT", format!("http://{}", proxy.addr));
    etcd_backup(&mut c, &etcd.endpoint, &r);
    c.args([
        "--s3-part-size",
        "5242880",
        "--store",
        "s3://locked/prod",
        "--store",
    ])
    .arg(&local);
    let o = run(c);
    assert!(proxy.is_down(), "the proxy must have cut the upload");
    fails_with(&o, 1, "1 of 2 stores");
    // nothing visible in the bucket; the local copy is complete and owes S3 the backup
    assert_eq!(bucket_state(&moto, "locked").0, 0);
    let mut c = cpbackup(dir);
    c.args(["list", "--output", "json", "--store"]).arg(&local);
    let l: serde_json::Value = serde_json::from_slice(&run(c).stdout).unwrap();
    assert_eq!(l[0]["state"], "complete");
    assert_eq!(l[0]["pending"][0], "s3://locked/prod");
}

/// First contact without credentials, or with an endpoint that does not answer: one line that
/// says what to set, no SDK debug dump; missing credentials are configuration (exit 2).
#[test]
fn no_credentials_or_no_endpoint_is_one_line_with_the_fix() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let bare = |env: &[(&str, String)]| {
        let mut c = cpbackup(dir);
        c.env("HOME", dir)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_REGION", "us-east-1")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_PROFILE");
        for (k, v) in env {
            c.env(k, v);
        }
        c.args(["list", "--store", "s3://bucket/prod"]);
        run(c)
    };
    let o = bare(&[]);
    let err = fails_with(&o, 2, "no AWS credentials found: set AWS_ACCESS_KEY_ID");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let o = bare(&[
        ("AWS_ACCESS_KEY_ID", "x".into()),
        ("AWS_SECRET_ACCESS_KEY", "y".into()),
        (
            "CPBACKUP_S3_ENDPOINT",
            format!("http://127.0.0.1:{}", free_port()),
        ),
    ]);
    let err = fails_with(
        &o,
        1,
        "the S3 endpoint does not answer: check --s3-endpoint",
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn wrong_credentials_are_named() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    // moto enforces credentials after its first request (the bucket creation)
    let moto = Moto::start_with_env(dir, &[("INITIAL_NO_AUTH_ACTION_COUNT", "1")]);
    moto.create_bucket("locked", true);
    let etcd = Etcd::start(Version::V35, dir, "127.0.0.1", free_port(), None);
    let (_, r) = keygen(dir, "k");
    let mut c = moto.cpbackup(dir);
    c.env("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG1");
    etcd_backup(&mut c, &etcd.endpoint, &r);
    c.args(["--store", "s3://locked/prod"]);
    let o = run(c);
    fails_with(&o, 1, "check the credentials");
}

/// Anyone with PutObject can write a new version over a locked key (S3 keeps the old one):
/// such a backup is listed `tampered`, and verify and restore read the original version.
#[test]
fn an_overwritten_locked_bundle_is_tampered_and_the_original_is_what_is_read() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let moto = Moto::start(dir);
    moto.create_bucket("locked", true);
    let etcd = Etcd::start(Version::V35, dir, "127.0.0.1", free_port(), None);
    etcd.put("/registry/configmaps/shop/a", "1");
    let (key, r) = keygen(dir, "k");
    let mut c = moto.cpbackup(dir);
    c.args(["--output", "json"]);
    etcd_backup(&mut c, &etcd.endpoint, &r);
    c.args(["--store", "s3://locked/prod", "--retain-days", "2"]);
    let name = backed_up(c);

    // The attacker: a new bundle version and a record that matches it.
    moto.py(&format!(
        "import hashlib\n\
         k = 'prod/{name}'\n\
         evil = b'age-encryption.org/v1\\n' + b'x' * 1000\n\
         rec = json.loads(s3.get_object(Bucket='locked', Key=k + '.json')['Body'].read())\n\
         rec['bundle_size'] = len(evil); rec['bundle_sha256'] = hashlib.sha256(evil).hexdigest()\n\
         s3.put_object(Bucket='locked', Key=k, Body=evil)\n\
         s3.put_object(Bucket='locked', Key=k + '.json', Body=json.dumps(rec).encode())\n"
    ));

    let mut c = moto.cpbackup(dir);
    c.args(["list", "--output", "json", "--store", "s3://locked/prod"]);
    let l = json(&run(c));
    assert_eq!(l[0]["state"], "tampered", "{l}");
    assert!(l[0]["version_id"].is_string(), "reads are pinned: {l}");
    let why = l[0]["tampered"].to_string();
    assert!(why.contains("bundle key has 2 versions"), "{why}");
    assert!(why.contains("record key has 2 versions"), "{why}");
    let mut c = moto.cpbackup(dir);
    c.args(["list", "--store", "s3://locked/prod"]);
    assert!(stdout(&run(c)).contains("tampered"));

    let mut c = moto.cpbackup(dir);
    c.args([
        "verify",
        "--latest",
        "--store",
        "s3://locked/prod",
        "--identity",
    ])
    .arg(&key);
    let o = run(c);
    assert!(
        o.status.success(),
        "the original still verifies: {}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("looks tampered with"), "{}", stderr(&o));
    assert!(stdout(&o).contains("(matches record)"), "{}", stdout(&o));

    // Without the key: the original's bytes match its record, its lock holds.
    let mut c = moto.cpbackup(dir);
    c.args([
        "verify",
        "--ciphertext-only",
        "--latest",
        "--output",
        "json",
        "--store",
        "s3://locked/prod",
    ]);
    let o = run(c);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["lock_mode"], "COMPLIANCE", "{v}");
    assert!(
        v["version_id"].is_string() && v["tampered"].as_array().unwrap().len() == 2,
        "{v}"
    );

    let root = dir.join("root");
    fake_kubeadm_node(&root, free_port(), free_port());
    let mut c = moto.cpbackup(dir);
    c.args([
        "--host-root",
        root.to_str().unwrap(),
        "restore",
        "--latest",
        "--dry-run",
    ])
    .args(["--store", "s3://locked/prod", "--identity"])
    .arg(&key)
    .arg("--etcdutl")
    .arg(Version::V35.bin("etcdutl"));
    let o = run(c);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("looks tampered with"), "{}", stderr(&o));

    // A daemon on this cluster counts the tampered backup after its slot and exports it.
    let cfg = format!(
        "recipients = [\"{r}\"]\nstatic_pods = \"none\"\nnode_name = \"n1\"\nstate_dir = \"{}\"\n\
         [etcd]\nendpoint = \"{}\"\n[[store]]\nurl = \"s3://locked/prod\"\nendpoint = \"{}\"\npath_style = true\nretain_days = 2\n\
         [schedule]\ncron = \"* * * * * *\"\n",
        dir.join("daemon-state").display(),
        etcd.endpoint,
        moto.endpoint
    );
    let d = Daemon::start_with_env(
        dir,
        "tamper-watch",
        &cfg,
        &[],
        &[
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
    );
    d.wait_until(60, "the tampered backup counted", |d| {
        d.metric("cpbackup_tampered_backups", &[]) == Some(1.0)
    });
    assert!(
        d.metric("cpbackup_last_verified_timestamp_seconds", &[])
            .is_some(),
        "the newest (untampered) backup checked out"
    );
    assert!(
        d.log_text().contains("written over in the store"),
        "{}",
        d.log_text()
    );
}
