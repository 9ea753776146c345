//! The CLI contract: help text, config precedence (flags > environment > file), and config
//! errors that name the key and exit 2.

use cpbackup_testkit as support;

use std::fs;

use support::*;

#[test]
fn help_lists_only_implemented_commands() {
    let t = tempfile::tempdir().unwrap();
    let mut c = cpbackup(t.path());
    c.arg("--help");
    let o = run(c);
    assert!(o.status.success());
    let h = stdout(&o);
    for cmd in [
        "backup", "list", "verify", "prune", "inspect", "keygen", "daemon", "restore", "extract",
    ] {
        assert!(
            h.lines().any(|l| l.trim_start().starts_with(cmd)),
            "{cmd} missing from help"
        );
    }
    assert!(h.contains("Exit codes"));
    let mut c = cpbackup(t.path());
    c.args(["extract", "--help"]);
    let h = stdout(&run(c));
    for flag in [
        "--namespace",
        "--prefix",
        "--out",
        "--format",
        "--raw",
        "--keep-status",
        "--with-cluster-deps",
        "--encryption-config",
        "--proto-path",
        "--apply",
        "--to-namespace",
        "--dry-run",
        "Examples:",
    ] {
        assert!(h.contains(flag), "{flag} missing from extract --help");
    }
    let mut c = cpbackup(t.path());
    c.args(["backup", "--help"]);
    let h = stdout(&run(c));
    for flag in [
        "--etcd-endpoint",
        "--etcd-cacert",
        "--recipient",
        "--recipients-file",
        "--store",
        "--static-pods",
        "--force",
    ] {
        assert!(h.contains(flag), "{flag} missing from backup --help");
    }
}

#[test]
fn flags_beat_environment_beat_file() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let cfg = dir.join("config.toml");
    fs::write(
        &cfg,
        format!("[[store]]\nurl = \"{}/from-file\"\n", dir.display()),
    )
    .unwrap();
    let list = |env: Option<&str>, flag: Option<&str>| {
        let mut c = cpbackup(dir);
        c.env("CPBACKUP_CONFIG", &cfg).arg("list");
        if let Some(e) = env {
            c.env("CPBACKUP_STORE", e);
        }
        if let Some(f) = flag {
            c.args(["--store", f]);
        }
        stderr(&run(c))
    };
    // every store is missing, so the error names the one that was chosen
    assert!(list(None, None).contains("from-file"));
    let env = format!("{}/from-env", dir.display());
    assert!(list(Some(&env), None).contains("from-env"));
    let flag = format!("{}/from-flag", dir.display());
    let e = list(Some(&env), Some(&flag));
    assert!(e.contains("from-flag") && !e.contains("from-env"), "{e}");
}

#[test]
fn config_errors_name_the_key_and_exit_2() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let (_, recipient) = keygen(dir, "k");
    let cases = [
        ("compresion_level = 3\n", "compresion_level"),
        ("static_pods = \"all\"\n", "static_pods"),
        (
            "[etcd]\nendpoint = \"https://a:2379,https://b:2379\"\n[[store]]\nurl = \"/x\"\n",
            "endpoint",
        ),
        (
            "compression_level = 25\n[[store]]\nurl = \"/x\"\n",
            "compression_level",
        ),
    ];
    for (text, key) in cases {
        let cfg = dir.join("c.toml");
        fs::write(&cfg, text).unwrap();
        let mut c = cpbackup(dir);
        c.env("CPBACKUP_CONFIG", &cfg)
            .args(["backup", "--recipient", &recipient]);
        let o = run(c);
        assert_eq!(o.status.code(), Some(2), "{text}: {}", stderr(&o));
        assert!(stderr(&o).contains(key), "{text}: {}", stderr(&o));
    }
    let mut c = cpbackup(dir);
    c.env("CPBACKUP_CONFIG", dir.join("missing.toml"))
        .args(["list", "--store", "/x"]);
    let o = run(c);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("missing.toml"));
    // bad usage from clap also exits 2
    let mut c = cpbackup(dir);
    c.args(["verify", "--latest", "name"]);
    assert_eq!(run(c).status.code(), Some(2));
}

#[test]
fn keygen_never_overwrites_and_writes_0600() {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    let (k, r) = keygen(t.path(), "id.key");
    assert!(r.starts_with("age1"));
    assert_eq!(
        fs::metadata(&k).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let before = fs::read(&k).unwrap();
    let mut c = cpbackup(t.path());
    c.args(["keygen", "--out"]).arg(&k);
    let o = run(c);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(fs::read(&k).unwrap(), before);
    // the age CLI reads our identity file
    let out = std::process::Command::new("age-keygen")
        .arg("-y")
        .arg(&k)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), r);
}

#[test]
fn a_missing_file_or_backup_is_named_before_any_key_is_asked_for() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let store = dir.join("store");
    let cmd = |args: &[&str]| {
        let mut c = cpbackup(dir);
        c.args(args).arg("--store").arg(&store);
        run(c)
    };
    // No such file and not a backup name: said so, no talk of identities.
    for args in [
        &["inspect", "nonexist.db"][..],
        &["extract", "nonexist.db", "--namespace", "shop"],
        &["verify", "nonexist.db"],
        &["restore", "nonexist.db", "--dry-run"],
    ] {
        let o = cmd(args);
        let e = fails_with(&o, 2, "nonexist.db: no such file, and not a backup name");
        assert!(!e.contains("identity"), "{args:?}: {e}");
    }
    // A bare etcd snapshot given to verify: pointed at inspect.
    let snap = dir.join("snapshot.db");
    fs::write(&snap, vec![0u8; 8192]).unwrap();
    let (key, _) = keygen(dir, "k");
    let o = cmd(&[
        "verify",
        snap.to_str().unwrap(),
        "--identity",
        key.to_str().unwrap(),
    ]);
    fails_with(&o, 1, "not a cpbackup bundle");
    assert!(
        stderr(&o).contains("cpbackup inspect FILE"),
        "{}",
        stderr(&o)
    );
}

/// A user other than root trying it out on a workstation: the node lock goes to
/// `$XDG_STATE_HOME/cpbackup`, not /var/lib/cpbackup (permission denied, no hint).
#[test]
fn a_non_root_user_gets_a_state_directory_of_their_own() {
    if !nix::unistd::geteuid().is_root() || !std::path::Path::new("/usr/bin/setpriv").exists() {
        eprintln!("SKIPPED: needs root (to run cpbackup as another user) and setpriv");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let state = dir.join("xdg-state");
    let store = dir.join("store");
    for d in [&state, &store] {
        fs::create_dir(d).unwrap();
        nix::unistd::chown(d, Some(65534.into()), Some(65534.into())).unwrap();
    }
    fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (_, r) = keygen(dir, "k");
    let mut c = std::process::Command::new("/usr/bin/setpriv");
    c.args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .arg(bin())
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", dir)
        .env("XDG_STATE_HOME", &state)
        .args([
            "backup",
            "--static-pods",
            "none",
            "--etcd-connect-timeout",
            "1",
        ])
        .args([
            "--etcd-endpoint",
            &format!("http://127.0.0.1:{}", free_port()),
        ])
        .args(["--recipient", &r, "--store"])
        .arg(&store);
    let o = c.output().unwrap();
    let err = stderr(&o);
    assert!(!err.contains("Permission denied"), "{err}");
    assert!(state.join("cpbackup/backup.lock").exists(), "{err}");
}

/// Durations as people write them: `1m30s` is taken, `5x` is a usage error naming the forms.
#[test]
fn durations_take_units() {
    let t = tempfile::tempdir().unwrap();
    let (_, r) = keygen(t.path(), "k");
    let backup = |timeout: &str| {
        let mut c = cpbackup(t.path());
        c.args([
            "backup",
            "--static-pods",
            "none",
            "--etcd-connect-timeout",
            timeout,
        ])
        .args([
            "--etcd-endpoint",
            &format!("http://127.0.0.1:{}", free_port()),
        ])
        .args(["--recipient", &r, "--store"])
        .arg(t.path().join("store"))
        .arg("--state-dir")
        .arg(t.path().join("state"));
        run(c)
    };
    let o = backup("5x");
    fails_with(
        &o,
        2,
        "not a duration: give seconds (300) or a value with units",
    );
    let o = backup("1m30s");
    // parsed: the run gets as far as etcd, which is not there
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(!stderr(&o).contains("not a duration"), "{}", stderr(&o));
}

#[test]
fn under_host_root_the_nodes_own_config_is_the_default() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let host = dir.join("host");
    fs::create_dir_all(host.join("etc/cpbackup")).unwrap();
    let store = dir.join("store-from-the-node-config");
    fs::write(
        host.join("etc/cpbackup/config.toml"),
        format!("[[store]]\nurl = \"{}\"\n", store.display()),
    )
    .unwrap();
    // No --config: the node's file under --host-root names the store `list` reads.
    let mut c = cpbackup(dir);
    c.env_remove("CPBACKUP_CONFIG")
        .arg("--host-root")
        .arg(&host)
        .arg("list");
    let o = run(c);
    assert!(
        stderr(&o).contains("store-from-the-node-config does not exist"),
        "the store of the node's config was not used: {}",
        stderr(&o)
    );
    // A broken node config is named by its path under the host root (exit 2).
    fs::write(host.join("etc/cpbackup/config.toml"), "no_such_key = 1\n").unwrap();
    let mut c = cpbackup(dir);
    c.env_remove("CPBACKUP_CONFIG")
        .arg("--host-root")
        .arg(&host)
        .arg("list");
    let o = run(c);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("host/etc/cpbackup/config.toml"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_refused_plain_http_etcd_is_not_blamed_on_certificates() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let (_, recipient) = keygen(dir, "k");
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let mut c = cpbackup(dir);
    c.args([
        "backup",
        "--etcd-endpoint",
        &endpoint,
        "--recipient",
        &recipient,
    ])
    .args([
        "--static-pods",
        "none",
        "--etcd-connect-timeout",
        "2",
        "--store",
    ])
    .arg(dir.join("store"));
    let o = run(c);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("plain HTTP"), "{}", stderr(&o));
    assert!(
        !stderr(&o).contains("serving certificate"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn help_keeps_global_flags_apart_and_read_only_commands_without_write_flags() {
    let t = tempfile::tempdir().unwrap();
    let help = |cmd: &str| {
        let mut c = cpbackup(t.path());
        c.args([cmd, "--help"]);
        stdout(&run(c))
    };
    for cmd in [
        "list",
        "verify",
        "inspect",
        "extract",
        "restore",
        "prune",
        "export-openshift",
    ] {
        let h = help(cmd);
        for write_only in ["--lock-mode", "--retain-days", "--allow-mutable"] {
            assert!(!h.contains(write_only), "{cmd} --help offers {write_only}");
        }
        let global = h.find("Global options:").expect("a Global options section");
        assert!(h[global..].contains("--host-root"), "{cmd}");
        assert!(
            !h[..global].contains("--host-root"),
            "{cmd}: global flags interleaved"
        );
        assert!(h.contains("Examples:"), "{cmd} --help has no examples");
    }
    let h = help("backup");
    assert!(h.contains("--lock-mode") && h.contains("--retain-days"));
    // -o is --output everywhere, as in kubectl. (The store directory also holds a stray
    // file, the test's config: named and skipped, not a failed listing.)
    let mut c = cpbackup(t.path());
    c.args(["list", "-o", "json", "--store"]).arg(t.path());
    let o = run(c);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).trim_start().starts_with('['), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("not a backup directory"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn under_log_format_json_every_stderr_line_is_json_the_error_too() {
    let t = tempfile::tempdir().unwrap();
    let mut c = cpbackup(t.path());
    c.args(["--log-format", "json", "list", "--store"])
        .arg(t.path().join("missing"));
    let o = run(c);
    assert_eq!(o.status.code(), Some(1));
    let lines: Vec<serde_json::Value> = stderr(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let last = lines.last().expect("an error line");
    assert_eq!(last["level"], "ERROR");
    assert_eq!(last["fields"]["exit_code"], 1);
    assert!(
        last["fields"]["message"]
            .as_str()
            .unwrap()
            .contains("does not exist")
    );
    // A configuration error exits 2, still as JSON.
    let mut c = cpbackup(t.path());
    c.env("CPBACKUP_CONFIG", t.path().join("nope.toml"))
        .args(["--log-format", "json", "list"]);
    let o = run(c);
    assert_eq!(o.status.code(), Some(2));
    let last: serde_json::Value = serde_json::from_str(stderr(&o).lines().last().unwrap()).unwrap();
    assert_eq!(last["fields"]["exit_code"], 2);
    // A command line that does not parse: one JSON object too (flag or environment), exit 2;
    // without JSON logs, clap's own text.
    for json in [true, false] {
        let mut c = cpbackup(t.path());
        if json {
            c.env("CPBACKUP_LOG_FORMAT", "json");
        }
        c.args(["list", "--no-such-flag"]);
        let o = run(c);
        assert_eq!(o.status.code(), Some(2));
        let err = stderr(&o);
        let parsed: Result<serde_json::Value, _> = serde_json::from_str(err.trim());
        assert_eq!(parsed.is_ok(), json, "{err}");
        assert!(err.contains("--no-such-flag"), "{err}");
        if let Ok(v) = parsed {
            assert_eq!(v["level"], "ERROR");
            assert_eq!(v["fields"]["exit_code"], 2);
        }
    }
}
