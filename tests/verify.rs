//! `cpbackup verify` and `list` on good and damaged bundles: each kind of damage gets its own
//! clear error and exit code 1, and the age CLI interoperates in both directions.

use cpbackup_testkit as support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::*;

struct Fixture {
    _t: tempfile::TempDir,
    dir: PathBuf,
    store: PathBuf,
    key: PathBuf,
    recipient: String,
    bundle: PathBuf,
    name: String,
}

fn fixture() -> Fixture {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().to_path_buf();
    let etcd = Etcd::start(Version::V35, &dir, "127.0.0.1", free_port(), None);
    etcd.seed("/registry/configmaps/shop/cm-", 200, 1000);
    let (key, recipient) = keygen(&dir, "k");
    let store = dir.join("store");
    let mut c = cpbackup(&dir);
    c.args([
        "--output",
        "json",
        "backup",
        "--static-pods",
        "none",
        "--etcd-endpoint",
        &etcd.endpoint,
    ]);
    c.args([
        "--recipient",
        &recipient,
        "--node-name",
        "n1",
        "--cluster-name",
        "c1",
        "--store",
    ])
    .arg(&store);
    let name = backed_up(c);
    let bundle = store.join(&name);
    Fixture {
        _t: t,
        dir,
        store,
        key,
        recipient,
        bundle,
        name,
    }
}

fn verify(f: &Fixture, key: &Path, what: &[&str]) -> std::process::Output {
    let mut c = cpbackup(&f.dir);
    c.args(["verify", "--identity"])
        .arg(key)
        .arg("--store")
        .arg(&f.store)
        .args(what);
    run(c)
}

#[test]
fn each_kind_of_damage_has_its_own_error() {
    let f = fixture();
    // by name, as list prints it
    let ok = verify(&f, &f.key, &[&f.name]);
    assert!(ok.status.success(), "{}", stderr(&ok));

    // wrong identity
    let (other, _) = keygen(&f.dir, "other");
    let o = verify(&f, &other, &["--latest"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("wrong key") && stderr(&o).contains("sha256:"),
        "{}",
        stderr(&o)
    );

    let original = fs::read(&f.bundle).unwrap();
    let copy = |name: &str, bytes: &[u8], with_record: bool| {
        let p = f.dir.join(name);
        fs::write(&p, bytes).unwrap();
        if with_record {
            fs::copy(
                format!("{}.json", f.bundle.display()),
                format!("{}.json", p.display()),
            )
            .unwrap();
        }
        p.display().to_string()
    };

    // a flipped byte in the payload: age authentication fails
    let mut flipped = original.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x01;
    let o = verify(&f, &f.key, &[&copy("flipped.cpb", &flipped, true)]);
    fails_with(&o, 1, "corrupted or was tampered with");

    // a flipped byte in the header
    let mut hdr = original.clone();
    hdr[100] ^= 0x01;
    let o = verify(&f, &f.key, &[&copy("header.cpb", &hdr, false)]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("corrupted") || e.contains("not a cpbackup bundle") || e.contains("wrong key"),
        "{e}"
    );

    // a damaged recipient stanza, with the record naming this key among the recipients: the
    // header is damaged, the key is not wrong
    let mut stanza = original.clone();
    let body = stanza
        .windows(10)
        .position(|w| w == b"-> X25519 ")
        .map(|i| i + stanza[i..].iter().position(|&b| b == b'\n').unwrap() + 1)
        .unwrap();
    stanza[body + 3] = if stanza[body + 3] == b'A' { b'B' } else { b'A' };
    let o = verify(&f, &f.key, &[&copy("stanza.cpb", &stanza, true)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("recipient stanza was damaged") && !stderr(&o).contains("wrong key"),
        "{}",
        stderr(&o)
    );

    // truncated, with its record beside it
    let o = verify(
        &f,
        &f.key,
        &[&copy("short.cpb", &original[..original.len() - 1000], true)],
    );
    fails_with(&o, 1, "truncated");

    // truncated at an age chunk boundary, without a record
    let header_len = original.windows(4).position(|w| w == b"\n---").unwrap();
    let hdr_end = header_len
        + original[header_len + 1..]
            .iter()
            .position(|&b| b == b'\n')
            .unwrap()
        + 2;
    let cut = hdr_end + 16 + 65536 + 16; // nonce, one full chunk
    assert!(
        original.len() > cut + 100,
        "fixture too small to cut at a chunk boundary"
    );
    let o = verify(&f, &f.key, &[&copy("short2.cpb", &original[..cut], false)]);
    fails_with(&o, 1, "truncated");

    // not a bundle at all
    let o = verify(
        &f,
        &f.key,
        &[&copy("junk.cpb", b"hello, I am not an age file\n", false)],
    );
    fails_with(&o, 1, "not a cpbackup bundle");

    // damage in the store itself: list flags it, verify names it
    fs::write(&f.bundle, &original[..original.len() / 2]).unwrap();
    let mut c = cpbackup(&f.dir);
    c.args(["list", "--store"]).arg(&f.store);
    assert!(stdout(&run(c)).contains("size-mismatch"));
    let o = verify(&f, &f.key, &[&f.name]);
    fails_with(&o, 1, "truncated");
}

#[test]
fn json_report_and_age_cli_interop_both_ways() {
    let f = fixture();
    let o = verify(&f, &f.key, &["--latest", "--output", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["details"]["snapshot"]["trailer"], "valid");
    assert!(
        v["details"]["manifest"]["etcd"]["revision"]
            .as_i64()
            .unwrap()
            >= 3,
        "two seeding txns"
    );

    // decrypt with the age CLI, re-encrypt with the age CLI: our reader accepts its output
    let plain = f.dir.join("plain.tar.gz");
    assert!(
        Command::new("age")
            .arg("-d")
            .arg("-i")
            .arg(&f.key)
            .arg("-o")
            .arg(&plain)
            .arg(&f.bundle)
            .status()
            .unwrap()
            .success()
    );
    let re = f.dir.join("re.cpb");
    assert!(
        Command::new("age")
            .args(["-r", &f.recipient, "-o"])
            .arg(&re)
            .arg(&plain)
            .status()
            .unwrap()
            .success()
    );
    let o = verify(&f, &f.key, &[re.to_str().unwrap()]);
    assert!(
        o.status.success(),
        "a bundle encrypted by the age CLI must verify: {}",
        stderr(&o)
    );
}

#[test]
fn a_bundle_without_its_record_is_incomplete_and_never_the_latest() {
    let f = fixture();
    fs::remove_file(format!("{}.json", f.bundle.display())).unwrap();
    let mut c = cpbackup(&f.dir);
    c.args(["list", "--output", "json", "--store"])
        .arg(&f.store);
    let l: serde_json::Value = serde_json::from_slice(&run(c).stdout).unwrap();
    assert_eq!(l[0]["state"], "incomplete");
    let o = verify(&f, &f.key, &["--latest"]);
    fails_with(&o, 1, "no complete backup");
    // by name it is still checkable, with a warning
    let o = verify(&f, &f.key, &[&f.name]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("no record"), "{}", stderr(&o));
}

#[test]
fn export_openshift_refuses_a_non_openshift_backup_and_leaves_nothing() {
    let f = fixture();
    let out = f.dir.join("export");
    let mut c = cpbackup(&f.dir);
    c.args(["export-openshift", "--latest", "--identity"])
        .arg(&f.key)
        .arg("--store")
        .arg(&f.store);
    c.arg("--out").arg(&out);
    let o = run(c);
    fails_with(&o, 1, "no OpenShift static pod resources");
    assert_eq!(
        files_under(&out),
        Vec::<String>::new(),
        "no file, not even a temporary one"
    );
    // a wrong key is named the same way as in verify
    let (other, _) = keygen(&f.dir, "other");
    let mut c = cpbackup(&f.dir);
    c.args(["export-openshift", "--latest", "--identity"])
        .arg(&other)
        .arg("--store")
        .arg(&f.store);
    c.arg("--out").arg(&out);
    let o = run(c);
    fails_with(&o, 1, "wrong key");
    assert_eq!(files_under(&out), Vec::<String>::new());
}

/// A bundle planted under another cluster's name, dated in the future, is never `--latest`;
/// a plausible one of another cluster makes `--latest` ask which cluster rather than guess;
/// a record whose time disagrees with its name is passed over.
#[test]
fn latest_is_this_clusters_newest_trustworthy_backup() {
    let f = fixture();
    let plant = |cluster: &str, node: &str, file: &str, created: Option<&str>| {
        let d = f.store.join(cluster).join(node);
        fs::create_dir_all(&d).unwrap();
        fs::copy(&f.bundle, d.join(file)).unwrap();
        let mut rec: serde_json::Value =
            serde_json::from_slice(&fs::read(format!("{}.json", f.bundle.display())).unwrap())
                .unwrap();
        rec["cluster"] = cluster.into();
        rec["node"] = node.into();
        rec["name"] = format!("{cluster}/{node}/{file}").into();
        if let Some(c) = created {
            rec["created"] = c.into();
        }
        fs::write(
            d.join(format!("{file}.json")),
            serde_json::to_vec(&rec).unwrap(),
        )
        .unwrap();
    };
    plant(
        "other",
        "evil",
        "99991231T235959Z-rev1.cpb",
        Some("9999-12-31T23:59:59Z"),
    );
    plant(
        "c1",
        "n1",
        "20991231T235959Z-rev9.cpb",
        Some("2000-01-01T00:00:00Z"),
    );
    let o = verify(&f, &f.key, &["--latest"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains(&format!("--latest chose {}", f.name)), "{err}");
    assert!(
        err.contains("other/evil/99991231T235959Z-rev1.cpb") && err.contains("in the future"),
        "{err}"
    );
    assert!(
        err.contains("c1/n1/20991231T235959Z-rev9.cpb") && err.contains("in the future"),
        "{err}"
    );

    // A record whose time is far from its name's: passed over, whichever of the two lies.
    let now = time::OffsetDateTime::now_utc();
    let recent = (now - time::Duration::minutes(1))
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .unwrap()
        + "-rev8.cpb";
    plant("c1", "n1", &recent, Some("2000-01-01T00:00:00Z"));
    let o = verify(&f, &f.key, &["--latest"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("c1/n1/{recent}"))
            && stderr(&o).contains("one of them was forged"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains(&format!("--latest chose {}", f.name)));
    // --node narrows to one node's backups.
    let o = verify(&f, &f.key, &["--latest", "--node", "n9"]);
    fails_with(&o, 1, "no complete backup");

    // A plausible backup of another cluster: --latest does not guess.
    let file = now
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .unwrap()
        + "-rev3.cpb";
    let created = now
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    plant("other", "m1", &file, Some(&created));
    let o = verify(&f, &f.key, &["--latest"]);
    fails_with(&o, 2, "--cluster");
    let o = verify(&f, &f.key, &["--latest", "--cluster", "c1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("--latest chose {}", f.name)),
        "{}",
        stderr(&o)
    );
    // The planted copy is the real bundle with a record that names another cluster: it does
    // not verify as cluster `other`.
    let o = verify(&f, &f.key, &["--latest", "--cluster", "other"]);
    fails_with(&o, 1, "record says cluster other");
}

/// A local bundle changed after its record was written is listed `tampered` (text and JSON),
/// and verify says so while it checks what is there.
#[test]
fn a_local_bundle_changed_after_its_record_is_tampered() {
    let f = fixture();
    let list = |json: bool| {
        let mut c = cpbackup(&f.dir);
        c.arg("list").arg("--store").arg(&f.store);
        if json {
            c.args(["--output", "json"]);
        }
        run(c)
    };
    let l: serde_json::Value = serde_json::from_slice(&list(true).stdout).unwrap();
    assert_eq!(l[0]["state"], "complete", "{l}");
    let o = Command::new("touch")
        .args(["-m", "-d", "+1 hour"])
        .arg(&f.bundle)
        .status()
        .unwrap();
    assert!(o.success());
    let l: serde_json::Value = serde_json::from_slice(&list(true).stdout).unwrap();
    assert_eq!(l[0]["state"], "tampered", "{l}");
    assert!(
        l[0]["tampered"][0]
            .as_str()
            .unwrap()
            .contains("modified 3600 s after its record"),
        "{l}"
    );
    assert!(stdout(&list(false)).contains("tampered"));
    let o = verify(&f, &f.key, &["--latest", "--output", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("looks tampered with"), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v["tampered"][0].as_str().unwrap().contains("modified"),
        "{v}"
    );
}

/// A record that cannot be used is listed with its reason, not only as `incomplete`.
#[test]
fn an_unreadable_record_is_listed_with_its_reason() {
    let f = fixture();
    fs::write(format!("{}.json", f.bundle.display()), b"{\"name\": 1").unwrap();
    let mut c = cpbackup(&f.dir);
    c.args(["list", "--output", "json", "--store"])
        .arg(&f.store);
    let l: serde_json::Value = serde_json::from_slice(&run(c).stdout).unwrap();
    assert_eq!(l[0]["state"], "incomplete", "{l}");
    assert!(
        l[0]["record_error"]
            .as_str()
            .unwrap()
            .contains("not a valid record"),
        "{l}"
    );
    let mut c = cpbackup(&f.dir);
    c.args(["list", "--store"]).arg(&f.store);
    let text = stdout(&run(c));
    assert!(
        text.contains(&format!(
            "{}: its record is unusable: not a valid record",
            f.name
        )),
        "{text}"
    );
}

/// `verify --ciphertext-only` needs no key: the stored bytes against the record.
#[test]
fn ciphertext_only_needs_no_key_and_catches_changed_bytes() {
    let f = fixture();
    let run_it = |what: &str| {
        let mut c = cpbackup(&f.dir);
        c.args(["verify", "--ciphertext-only", "--output", "json", what]);
        c.arg("--store").arg(&f.store);
        run(c)
    };
    let o = run_it(&f.name);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(
        (&v["kind"], &v["format_version"]),
        (&"CiphertextReport".into(), &1.into())
    );
    let rec: serde_json::Value =
        serde_json::from_slice(&fs::read(format!("{}.json", f.bundle.display())).unwrap()).unwrap();
    assert_eq!(v["sha256"], rec["bundle_sha256"]);

    // the same size, one byte changed: the key is not needed to see it
    let mut bytes = fs::read(&f.bundle).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    let copy = f.dir.join("changed.cpb");
    fs::write(&copy, &bytes).unwrap();
    fs::copy(
        format!("{}.json", f.bundle.display()),
        format!("{}.json", copy.display()),
    )
    .unwrap();
    let o = run_it(copy.to_str().unwrap());
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert!(
        v["problems"][0].as_str().unwrap().contains("SHA-256"),
        "{v}"
    );
    assert!(
        stderr(&o).contains("does not match its record"),
        "{}",
        stderr(&o)
    );
}

/// With --trust-signer only backups whose record a trusted node key signed are read: an
/// unsigned newer one is passed over by --latest, a signed record that was changed is refused.
#[test]
fn trust_signer_accepts_only_signed_backups() {
    let f = fixture();
    let sk = f.dir.join("signing.key");
    let mut c = cpbackup(&f.dir);
    c.args(["keygen", "--signing", "--out"]).arg(&sk);
    let o = run(c);
    assert!(o.status.success(), "{}", stderr(&o));
    let public = stdout(&o).trim().to_owned();
    assert!(public.starts_with("cpbsig1:"), "{public}");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&sk).unwrap().permissions()) & 0o777,
        0o600
    );

    // The fixture's backup is unsigned: refused by name.
    let o = verify(&f, &f.key, &[&f.name, "--trust-signer", &public]);
    fails_with(&o, 1, "not signed");

    // A signed backup, then an unsigned one made later (as anyone with the recipient could).
    let etcd = Etcd::start(Version::V35, &f.dir, "127.0.0.1", free_port(), None);
    etcd.put("/registry/configmaps/shop/signed", "1");
    // (two nodes, so the two names differ even within one second)
    let backup = |signed: bool| {
        let mut c = cpbackup(&f.dir);
        c.args(["--output", "json"]);
        etcd_backup(&mut c, &etcd.endpoint, &f.recipient);
        let node = if signed { "n1" } else { "n2" };
        c.args(["--node-name", node, "--cluster-name", "c1", "--store"])
            .arg(&f.store);
        if signed {
            c.arg("--signing-key").arg(&sk);
        }
        backed_up(c)
    };
    let signed = backup(true);
    etcd.put("/registry/configmaps/shop/later", "1");
    let unsigned = backup(false);
    let o = verify(&f, &f.key, &["--latest", "--trust-signer", &public]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains(&format!("--latest chose {signed}")), "{err}");
    assert!(
        err.contains(&unsigned) && err.contains("not signed"),
        "{err}"
    );
    // the same from the config file
    let cfg = f.dir.join("trust.toml");
    fs::write(&cfg, format!("trusted_signers = [\"{public}\"]\n")).unwrap();
    let mut c = cpbackup(&f.dir);
    c.arg("--config").arg(&cfg);
    c.args(["verify", "--latest", "--identity"])
        .arg(&f.key)
        .arg("--store")
        .arg(&f.store);
    let o = run(c);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("--latest chose {signed}")),
        "{}",
        stderr(&o)
    );

    // The signed record changed (a forged size and hash for another bundle): refused.
    let rec_path = f.store.join(format!("{signed}.json"));
    let mut rec: serde_json::Value = serde_json::from_slice(&fs::read(&rec_path).unwrap()).unwrap();
    rec["etcd_revision"] = 999_999.into();
    fs::write(&rec_path, serde_json::to_vec(&rec).unwrap()).unwrap();
    let o = verify(&f, &f.key, &[&signed, "--trust-signer", &public]);
    fails_with(&o, 1, "forged");
}
