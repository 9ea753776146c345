//! Crafted bundles, made with nothing but the public recipient (as anyone with PutObject on the
//! store could): symlinks and entries below them, `./` aliases, `..`, absolute paths, hard
//! links, devices, duplicates, entries missing from or extra to the manifest, a manifest
//! listing outside paths, a record that lies. Every command that reads a bundle (verify,
//! restore --dry-run, restore --yes on a kubeadm and an OpenShift host root, export-openshift,
//! extract --out) must exit 1 naming the entry, and leave a marker tree outside the host root
//! and the host tree itself byte-, mode- and owner-identical.

use cpbackup_testkit as support;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use support::*;

/// One tar entry as an attacker writes it: raw path bytes, any type, any mode and owner.
#[derive(Clone)]
struct Raw {
    path: Vec<u8>,
    kind: tar::EntryType,
    mode: u32,
    uid: u64,
    link: Vec<u8>,
    data: Vec<u8>,
}

fn file(path: &str, data: &[u8]) -> Raw {
    Raw {
        path: path.into(),
        kind: tar::EntryType::Regular,
        mode: 0o644,
        uid: 0,
        link: vec![],
        data: data.to_vec(),
    }
}

fn dir(path: &str) -> Raw {
    Raw {
        kind: tar::EntryType::Directory,
        mode: 0o755,
        ..file(path, b"")
    }
}

fn link(path: &str, target: &str) -> Raw {
    Raw {
        kind: tar::EntryType::Symlink,
        mode: 0o777,
        link: target.into(),
        ..file(path, b"")
    }
}

fn append(b: &mut tar::Builder<Vec<u8>>, e: &Raw) {
    let mut h = tar::Header::new_gnu();
    {
        let old = h.as_old_mut();
        old.name[..e.path.len()].copy_from_slice(&e.path);
        old.linkname[..e.link.len()].copy_from_slice(&e.link);
    }
    h.set_entry_type(e.kind);
    h.set_mode(e.mode);
    h.set_uid(e.uid);
    h.set_gid(e.uid);
    h.set_size(e.data.len() as u64);
    h.set_cksum();
    b.append(&h, &e.data[..]).unwrap();
}

/// A PAX extended header record setting `path` (`"<len> path=<value>\n"`, the length
/// counting itself).
fn pax_path(path: &str) -> Vec<u8> {
    let body = format!(" path={path}\n");
    let mut len = body.len() + 1;
    while (len.to_string().len() + body.len()) != len {
        len += 1;
    }
    format!("{len}{body}").into_bytes()
}

/// What every crafted bundle starts from: a real snapshot and its manifest.
struct Base {
    snapshot: Vec<u8>,
    manifest: serde_json::Value,
}

fn base(dir: &Path) -> (Base, PathBuf, String) {
    let etcd = Etcd::start(Version::V35, dir, "127.0.0.1", free_port(), None);
    etcd.put("/registry/configmaps/shop/a", "1");
    let (key, recipient) = keygen(dir, "k");
    let mut c = cpbackup(dir);
    c.args(["--output", "json"]);
    etcd_backup(&mut c, &etcd.endpoint, &recipient);
    // gzip: the crafted bundles below are re-compressed with flate2.
    c.args(["--compression", "gzip"]);
    c.args(["--node-name", "n1", "--cluster-name", "c1", "--store"])
        .arg(dir.join("store"));
    let name = backed_up(c);
    // The test holds the identity only to take the real snapshot out; the attack needs none.
    let id = age::IdentityFile::from_file(key.to_str().unwrap().to_owned())
        .unwrap()
        .into_identities()
        .unwrap();
    let bytes = fs::read(dir.join("store").join(&name)).unwrap();
    let d = age::Decryptor::new(&bytes[..]).unwrap();
    let plain = d
        .decrypt(id.iter().map(|i| i.as_ref() as &dyn age::Identity))
        .unwrap();
    let mut a = tar::Archive::new(flate2::read::MultiGzDecoder::new(plain));
    let (mut snapshot, mut manifest) = (Vec::new(), serde_json::Value::Null);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let p = e.path().unwrap().to_string_lossy().into_owned();
        let mut buf = Vec::new();
        e.read_to_end(&mut buf).unwrap();
        match p.as_str() {
            "etcd/snapshot.db" => snapshot = buf,
            "cpbackup/manifest.json" => manifest = serde_json::from_slice(&buf).unwrap(),
            _ => {}
        }
    }
    assert!(!snapshot.is_empty());
    (Base { snapshot, manifest }, key, recipient)
}

/// The manifest entry an honest writer would list for `e` (path as given, not normalised).
fn listed(e: &Raw) -> serde_json::Value {
    let kind = match e.kind {
        tar::EntryType::Directory => "dir",
        tar::EntryType::Symlink => "symlink",
        _ => "file",
    };
    let mut v = serde_json::json!({
        "path": String::from_utf8_lossy(&e.path).trim_end_matches('/'),
        "kind": kind,
        "size": if kind == "file" { e.data.len() } else { 0 },
        "mode": e.mode, "uid": e.uid, "gid": e.uid,
    });
    if kind == "file" {
        v["sha256"] = hex::encode(Sha256::digest(&e.data)).into();
    }
    if kind == "symlink" {
        v["link_target"] = String::from_utf8_lossy(&e.link).into();
    }
    v
}

struct Case {
    name: &'static str,
    openshift: bool,
    entries: Vec<Raw>,
    /// Manifest entries besides those of `entries` (listed as the writer would).
    extra_listed: Vec<serde_json::Value>,
    /// Entries of `entries` the manifest leaves out, by index.
    unlisted: Vec<usize>,
    /// A record beside the bundle that disagrees with it.
    lying_record: bool,
    /// What the manifest says the bundle is compressed with (`None`: no such key, as bundles
    /// written before zstd).
    codec: Option<&'static str>,
    /// The tar compressed with zstd rather than gzip.
    zstd_bytes: bool,
    /// What every error must name.
    names: &'static str,
}

fn case(name: &'static str, names: &'static str, entries: Vec<Raw>) -> Case {
    Case {
        name,
        openshift: false,
        entries,
        extra_listed: vec![],
        unlisted: vec![],
        lying_record: false,
        codec: Some("gzip"),
        zstd_bytes: false,
        names,
    }
}

fn craft(b: &Base, c: &Case, recipient: &str) -> Vec<u8> {
    let platform_base: Vec<Raw> = if c.openshift {
        vec![
            dir("static-pod-resources/etcd-pod-3"),
            file("static-pod-resources/etcd-pod-3/etcd-pod.yaml", b"pod\n"),
            file("manifests/etcd-pod.yaml", b"pod\n"),
        ]
    } else {
        vec![dir("pki"), file("pki/sa.key", b"crafted sa key\n")]
    };
    let snap = Raw {
        mode: 0o600,
        ..file("etcd/snapshot.db", &b.snapshot)
    };
    let all: Vec<Raw> = std::iter::once(snap)
        .chain(platform_base)
        .chain(c.entries.iter().cloned())
        .collect();
    let offset = all.len() - c.entries.len();
    let mut manifest = b.manifest.clone();
    manifest["platform"] = if c.openshift { "openshift" } else { "kubeadm" }.into();
    match c.codec {
        Some(codec) => manifest["compression"] = codec.into(),
        None => {
            manifest.as_object_mut().unwrap().remove("compression");
        }
    }
    manifest["entries"] = all
        .iter()
        .enumerate()
        .filter(|(i, _)| !c.unlisted.contains(&(i.wrapping_sub(offset))))
        .map(|(_, e)| listed(e))
        .chain(c.extra_listed.iter().cloned())
        .collect::<Vec<_>>()
        .into();
    let mut t = tar::Builder::new(Vec::new());
    for e in &all {
        append(&mut t, e);
    }
    append(
        &mut t,
        &file(
            "cpbackup/manifest.json",
            &serde_json::to_vec(&manifest).unwrap(),
        ),
    );
    let tar_bytes = t.into_inner().unwrap();
    let gz = if c.zstd_bytes {
        zstd::encode_all(&tar_bytes[..], 3).unwrap()
    } else {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar_bytes).unwrap();
        gz.finish().unwrap()
    };
    let r: age::x25519::Recipient = recipient.parse().unwrap();
    let enc = age::Encryptor::with_recipients(std::iter::once(&r as &dyn age::Recipient)).unwrap();
    let mut out = Vec::new();
    let mut w = enc.wrap_output(&mut out).unwrap();
    w.write_all(&gz).unwrap();
    w.finish().unwrap();
    out
}

/// Paths, modes, owners and contents of everything under `root`.
fn snapshot_tree(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            let m = fs::symlink_metadata(&p).unwrap();
            let what = if m.file_type().is_symlink() {
                fs::read_link(&p).unwrap().display().to_string()
            } else if m.is_dir() {
                stack.push(p.clone());
                String::new()
            } else {
                hex::encode(Sha256::digest(fs::read(&p).unwrap_or_default()))
            };
            out.push(format!(
                "{} {:o} {}:{} {what}",
                p.strip_prefix(root).unwrap().display(),
                m.mode(),
                m.uid(),
                m.gid()
            ));
        }
    }
    let m = fs::symlink_metadata(root).unwrap();
    out.push(format!(". {:o} {}:{}", m.mode(), m.uid(), m.gid()));
    out.sort();
    out
}

#[test]
fn crafted_bundles_are_refused_by_every_reader_and_touch_nothing() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let (b, key, recipient) = base(d);
    let outside = d.join("outside");
    fs::create_dir_all(outside.join("dir")).unwrap();
    fs::write(outside.join("keep"), "outside file\n").unwrap();
    fs::set_permissions(outside.join("dir"), fs::Permissions::from_mode(0o755)).unwrap();
    let out_s = outside.to_str().unwrap().to_owned();
    let leak: &'static str = Box::leak(format!("{out_s}/dir").into_boxed_str());
    let abs: &'static str = Box::leak(format!("{out_s}/abs").into_boxed_str());

    let kube = d.join("kubeadm-root");
    fake_kubeadm_node(&kube, free_port(), free_port());
    let pki = Pki::new(&d.join("pki"), &["127.0.0.1"]);
    let osh = d.join("openshift-root");
    fake_openshift_root(&osh, "m1", "127.0.0.1", &pki, 3);

    let mut cases = vec![
        case(
            "symlink, then a file below it",
            "pki/evil/planted",
            vec![
                link("pki/evil", leak),
                Raw {
                    mode: 0o755,
                    ..file("pki/evil/planted", b"#!/bin/sh\n")
                },
            ],
        ),
        case(
            "symlink, then a directory entry re-targeting it (./ alias)",
            "pki/lnk",
            vec![
                link("pki/lnk", leak),
                Raw {
                    mode: 0o7777,
                    uid: 1234,
                    ..dir("./pki/lnk")
                },
            ],
        ),
        case(
            "./ alias of an entry (duplicate)",
            "pki/sa.key",
            vec![file("./pki/sa.key", b"second\n")],
        ),
        case(
            "`..` in the path",
            "..",
            vec![file("pki/../../outside/x", b"x")],
        ),
        case("absolute path", "absolute", vec![file(abs, b"x")]),
        Case {
            codec: Some("zstd"),
            ..case(
                "manifest names another codec than the bytes",
                "manifest says the bundle is zstd",
                vec![],
            )
        },
        case(
            "hard link",
            "pki/hl",
            vec![Raw {
                kind: tar::EntryType::Link,
                link: b"/etc/passwd".to_vec(),
                ..file("pki/hl", b"")
            }],
        ),
        case(
            "character device",
            "pki/null",
            vec![Raw {
                kind: tar::EntryType::Char,
                ..file("pki/null", b"")
            }],
        ),
        case(
            "fifo",
            "pki/fifo",
            vec![Raw {
                kind: tar::EntryType::Fifo,
                ..file("pki/fifo", b"")
            }],
        ),
        case(
            "setuid file",
            "pki/suid",
            vec![Raw {
                mode: 0o4755,
                ..file("pki/suid", b"x")
            }],
        ),
        case(
            "a path no bundle holds",
            "etc/cron.d/evil",
            vec![file("etc/cron.d/evil", b"* * * * * root sh\n")],
        ),
        case(
            "a file, then an entry below it",
            "pki/f/x",
            vec![file("pki/f", b"f"), file("pki/f/x", b"x")],
        ),
        case(
            "entries, then a symlink where their directory was",
            "pki/x",
            vec![file("pki/x/y", b"y"), link("pki/x", leak)],
        ),
        Case {
            unlisted: vec![0],
            ..case(
                "a GNU long name hiding `..`",
                "pki/../../outside/long: path contains `..`",
                vec![
                    Raw {
                        kind: tar::EntryType::GNULongName,
                        ..file("././@LongLink", b"pki/../../outside/long\0")
                    },
                    file("pki/short", b"x"),
                ],
            )
        },
        Case {
            unlisted: vec![0],
            ..case(
                "a PAX path hiding an absolute path",
                "absolute",
                vec![
                    Raw {
                        kind: tar::EntryType::XHeader,
                        ..file("pax", &pax_path(abs))
                    },
                    file("pki/short", b"x"),
                ],
            )
        },
        case(
            "a placed directory (manifests) that is a symlink",
            "manifests",
            vec![link("manifests", leak)],
        ),
        Case {
            openshift: true,
            ..case(
                "OpenShift: a revision directory that is a symlink",
                "static-pod-resources/kube-apiserver-pod-3",
                vec![link("static-pod-resources/kube-apiserver-pod-3", leak)],
            )
        },
        Case {
            unlisted: vec![0],
            ..case(
                "an entry missing from the manifest",
                "pki/extra.key",
                vec![file("pki/extra.key", b"k")],
            )
        },
        Case {
            extra_listed: vec![
                serde_json::json!({"path": "pki/ghost", "kind": "file", "size": 1, "sha256": "00", "mode": 420, "uid": 0, "gid": 0}),
            ],
            ..case(
                "a manifest entry missing from the bundle",
                "pki/ghost",
                vec![],
            )
        },
        Case {
            extra_listed: vec![
                serde_json::json!({"path": "../../etc/shadow", "kind": "file", "size": 1, "sha256": "00", "mode": 420, "uid": 0, "gid": 0}),
            ],
            ..case(
                "a manifest listing an outside path",
                "../../etc/shadow",
                vec![],
            )
        },
        Case {
            codec: None,
            zstd_bytes: true,
            ..case(
                "a manifest of the format before zstd over zstd bytes",
                "manifest says the bundle is gzip",
                vec![],
            )
        },
        Case {
            lying_record: true,
            codec: Some("gzip"),
            ..case("a record that lies", "record", vec![])
        },
        Case {
            openshift: true,
            ..case(
                "OpenShift: symlink, then a file below it",
                "static-pod-resources/etcd-pod-3/evil/planted",
                vec![
                    link("static-pod-resources/etcd-pod-3/evil", leak),
                    file("static-pod-resources/etcd-pod-3/evil/planted", b"x"),
                ],
            )
        },
        Case {
            openshift: true,
            ..case(
                "OpenShift: symlink, then a directory entry re-targeting it",
                "static-pod-resources/etcd-pod-3/lnk",
                vec![
                    link("static-pod-resources/etcd-pod-3/lnk", leak),
                    Raw {
                        mode: 0o7777,
                        uid: 1234,
                        ..dir("static-pod-resources/etcd-pod-3/lnk")
                    },
                ],
            )
        },
    ];

    let before_outside = snapshot_tree(&outside);
    let before_kube = snapshot_tree(&kube);
    let before_osh = snapshot_tree(&osh);
    let mut table = vec![format!(
        "{:<62} {}",
        "case", "verify dry-run restore(kubeadm) restore(openshift) export extract"
    )];
    let mut failures = Vec::new();
    for (i, c) in cases.iter_mut().enumerate() {
        let bundle = d.join(format!("crafted-{i}.cpb"));
        let bytes = craft(&b, c, &recipient);
        fs::write(&bundle, &bytes).unwrap();
        let _ = fs::remove_file(d.join(format!("crafted-{i}.cpb.json")));
        if c.lying_record {
            let rec = serde_json::json!({
                "format_version": 1, "name": "c1/n1/x.cpb", "created": "2026-01-01T00:00:00Z",
                "cluster": "another-cluster", "node": "n1", "etcd_revision": 1, "etcd_version": "3.5",
                "etcd_member_id": "1", "etcd_cluster_id": "2", "snapshot_size": b.snapshot.len(),
                "bundle_size": bytes.len(), "bundle_sha256": hex::encode(Sha256::digest(&bytes)),
                "recipients": [], "forced": false, "tool_version": "x"
            });
            fs::write(
                d.join(format!("crafted-{i}.cpb.json")),
                serde_json::to_vec(&rec).unwrap(),
            )
            .unwrap();
        }
        let bundle_s = bundle.to_str().unwrap();
        let id = key.to_str().unwrap();
        let restore = |root: &Path, platform: &str, extra: &[&str]| {
            let mut cmd = cpbackup(d);
            cmd.args([
                "--host-root",
                root.to_str().unwrap(),
                "restore",
                "--identity",
                id,
            ])
            .args(["--platform", platform, "--wait-timeout", "5"])
            .arg("--etcdutl")
            .arg(Version::V35.bin("etcdutl"))
            .arg(bundle_s)
            .args(extra);
            cmd
        };
        let mut verify = cpbackup(d);
        verify.args(["verify", "--identity", id, bundle_s]);
        let export_dir = d.join(format!("export-{i}"));
        let mut export = cpbackup(d);
        export
            .args(["export-openshift", "--identity", id, bundle_s, "--out"])
            .arg(&export_dir);
        let extract_dir = d.join(format!("extract-{i}"));
        let mut extract = cpbackup(d);
        extract
            .args([
                "extract",
                "--identity",
                id,
                bundle_s,
                "--namespace",
                "shop",
                "--out",
            ])
            .arg(&extract_dir);
        let commands = vec![
            ("verify", verify),
            ("dry-run", restore(&kube, "kubeadm", &["--dry-run"])),
            ("restore(kubeadm)", restore(&kube, "kubeadm", &["--yes"])),
            ("restore(openshift)", restore(&osh, "openshift", &["--yes"])),
            ("export", export),
            ("extract", extract),
        ];
        let mut row = format!("{:<62}", c.name);
        for (what, cmd) in commands {
            let o = run(cmd);
            let err = stderr(&o);
            let named = err.contains(c.names);
            let rc = o.status.code();
            row.push_str(&format!(
                " {what}:{}",
                if rc == Some(1) && named {
                    "refused"
                } else {
                    "FAIL"
                }
            ));
            if rc != Some(1) || !named {
                failures.push(format!(
                    "{} / {what}: rc {rc:?}, stderr does not name {:?}:\n{err}",
                    c.name, c.names
                ));
            }
        }
        table.push(row);
        for (tree, before, what) in [
            (&outside, &before_outside, "the marker tree outside"),
            (&kube, &before_kube, "the kubeadm host tree"),
            (&osh, &before_osh, "the OpenShift host tree"),
        ] {
            let now = snapshot_tree(tree);
            if now != *before {
                failures.push(format!(
                    "{}: {what} changed: {:?}",
                    c.name,
                    now.iter()
                        .filter(|l| !before.contains(l))
                        .collect::<Vec<_>>()
                ));
            }
        }
        for (p, what) in [(&export_dir, "export"), (&extract_dir, "extract")] {
            if p.exists() && fs::read_dir(p).unwrap().next().is_some() {
                failures.push(format!("{}: {what} left files in {}", c.name, p.display()));
            }
        }
        let staging = d.join("state/restore");
        if staging.exists() && !files_under(&staging).is_empty() {
            failures.push(format!(
                "{}: plaintext left in {}: {:?}",
                c.name,
                staging.display(),
                files_under(&staging)
            ));
        }
    }
    eprintln!("{}", table.join("\n"));
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));

    // Plaintext a restore killed while unpacking left behind (no journal): the next restore,
    // whatever it is asked, removes it and says so.
    let stale = d.join("state/restore/20200101T000000Z/staged/pki");
    fs::create_dir_all(&stale).unwrap();
    fs::write(stale.join("sa.key"), "decrypted key\n").unwrap();
    let mut c = cpbackup(d);
    c.args([
        "--host-root",
        kube.to_str().unwrap(),
        "restore",
        "--rollback",
    ]);
    let o = run(c);
    assert!(
        stderr(&o).contains("removed") && stderr(&o).contains("20200101T000000Z/staged"),
        "{}",
        stderr(&o)
    );
    assert!(!d.join("state/restore/20200101T000000Z").exists());
}

#[test]
fn gzip_bundles_of_the_format_before_zstd_are_still_read() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let (b, key, recipient) = base(d);
    // A manifest without `compression`, gzip bytes, no record: what earlier releases wrote.
    let old = Case {
        codec: None,
        ..case("old format", "", vec![])
    };
    let bundle = d.join("old.cpb");
    fs::write(&bundle, craft(&b, &old, &recipient)).unwrap();
    let mut verify = cpbackup(d);
    verify
        .args(["--output", "json", "verify", "--identity"])
        .arg(&key)
        .arg(&bundle);
    let o = run(verify);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["details"]["manifest"]["compression"], "gzip");
    let mut inspect = cpbackup(d);
    inspect
        .args(["inspect", "--identity"])
        .arg(&key)
        .arg(&bundle);
    let o = run(inspect);
    assert!(o.status.success(), "{}", stderr(&o));
}
