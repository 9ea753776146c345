//! scripts/install.sh on a scratch root and scripts/oc-backup-node.sh with a fake `oc` (it
//! records its arguments; `debug` runs the command it was given, `/host` mapped to a directory,
//! so the backup really happens).

use cpbackup_testkit as support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use support::*;

fn script(name: &str) -> Command {
    Command::new(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("scripts")
            .join(name),
    )
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn install_is_idempotent_keeps_the_config_and_uninstalls_cleanly() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let install = |extra: &[&str]| {
        let mut c = script("install.sh");
        c.arg("--root")
            .arg(&root)
            .args(["--binary", env!("CARGO_BIN_EXE_cpbackup")])
            .args(extra);
        c.output().unwrap()
    };
    let o = script("install.sh").arg("--help").output().unwrap();
    assert!(
        o.status.success() && stdout(&o).contains("--uninstall"),
        "{}",
        stdout(&o)
    );

    let o = install(&[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let bin = root.join("usr/local/bin/cpbackup");
    let cfg = root.join("etc/cpbackup/config.toml");
    assert_eq!(mode(&bin), 0o755);
    assert_eq!(mode(&cfg), 0o600);
    assert_eq!(mode(&root.join("etc/cpbackup")), 0o700);
    assert_eq!(mode(&root.join("var/lib/cpbackup")), 0o700);
    for u in [
        "cpbackup-backup.service",
        "cpbackup-backup.timer",
        "cpbackup.service",
    ] {
        let installed = fs::read(root.join("etc/systemd/system").join(u)).unwrap();
        let shipped = fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("systemd")
                .join(u),
        )
        .unwrap();
        assert_eq!(installed, shipped, "{u}");
    }
    cpbackup::settings::FileConfig::parse(&fs::read_to_string(&cfg).unwrap()).unwrap();
    // manual pages and completions, generated from the same definition as --help
    let man = root.join("usr/local/share/man/man1");
    for page in ["cpbackup.1", "cpbackup-restore.1", "cpbackup-list.1"] {
        let text = fs::read_to_string(man.join(page)).unwrap();
        assert!(
            text.starts_with(".ie") && text.contains(".SH NAME"),
            "{page}"
        );
    }
    assert!(
        fs::read_to_string(man.join("cpbackup-list.1"))
            .unwrap()
            .contains("summary")
    );
    let bash =
        fs::read_to_string(root.join("usr/share/bash-completion/completions/cpbackup")).unwrap();
    assert!(
        bash.contains("_cpbackup()") && bash.contains("--latest"),
        "bash completion"
    );
    let zsh =
        fs::read_to_string(root.join("usr/local/share/zsh/site-functions/_cpbackup")).unwrap();
    assert!(zsh.starts_with("#compdef cpbackup"), "zsh completion");
    let o = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {}; COMP_WORDS=(cpbackup lis); COMP_CWORD=1; _cpbackup cpbackup lis cpbackup; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            root.join("usr/share/bash-completion/completions/cpbackup").display()
        ))
        .output()
        .unwrap();
    assert_eq!(
        stdout(&o).trim(),
        "list",
        "bash completes `cpbackup lis`: {}",
        stderr(&o)
    );

    // A second run changes nothing and keeps an edited config.
    fs::write(&cfg, "cluster_name = \"mine\"\n").unwrap();
    let o = install(&[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o).matches("unchanged:").count(),
        4,
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("kept:"));
    assert_eq!(
        fs::read_to_string(&cfg).unwrap(),
        "cluster_name = \"mine\"\n"
    );

    // A config cpbackup cannot read stops the install with the reason.
    fs::write(&cfg, "cluster_nme = \"typo\"\n").unwrap();
    let o = install(&[]);
    fails_with(&o, 2, "cluster_nme");
    fs::write(&cfg, "cluster_name = \"mine\"\n").unwrap();

    let o = install(&["--uninstall"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!bin.exists());
    assert!(!root.join("etc/systemd/system/cpbackup.service").exists());
    assert!(!man.join("cpbackup.1").exists(), "the man pages go too");
    assert!(cfg.exists(), "the config stays");
    assert!(
        root.join("var/lib/cpbackup").is_dir(),
        "state and backups stay"
    );
}

/// A fake `oc` in `dir/bin`: logs every call; `get nodes` lists three masters; `debug node/X`
/// fails for X = `fail_on`, else runs the command after `--`, mapping /host and `cpbackup`.
fn fake_oc(dir: &Path, host: &Path, fail_on: &str) -> std::path::PathBuf {
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).unwrap();
    let oc = bin.join("oc");
    fs::write(
        &oc,
        format!(
            r#"#!/bin/bash
echo "$*" >> {log}
if [ "$1" = get ]; then printf 'node/m0\nnode/m1\nnode/m2\n'; exit 0; fi
if [ "$1" = debug ]; then
  [ "$2" = node/{fail_on} ] && exit 3
  while [ "$1" != -- ]; do shift; done; shift
  [ "$1" = chroot ] && shift 2
  cmd=("$@"); out=()
  for a in "${{cmd[@]}}"; do
    case "$a" in cpbackup|/usr/local/bin/cpbackup) out+=({bin_exe});; /host) out+=({host});; *) out+=("$a");; esac
  done
  exec "${{out[@]}}"
fi
exit 9
"#,
            log = dir.join("oc.log").display(),
            bin_exe = env!("CARGO_BIN_EXE_cpbackup"),
            host = host.display(),
        ),
    )
    .unwrap();
    fs::set_permissions(&oc, fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

#[test]
fn oc_backup_node_backs_up_every_master_and_names_the_failures() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let etcd = Etcd::start(Version::V35, dir, "127.0.0.1", free_port(), None);
    etcd.put("/registry/namespaces/a", "{}");
    let (_, r) = keygen(dir, "k");
    let host = dir.join("host");
    fs::create_dir_all(&host).unwrap();
    let store = dir.join("store");
    let bin = fake_oc(dir, &host, "m1");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let run_script = |args: &[&str]| {
        let mut c = script("oc-backup-node.sh");
        c.env("PATH", &path)
            .env("CPBACKUP_CONFIG", "/dev/null")
            .env("CPBACKUP_STATE_DIR", dir.join("state"))
            .args(args)
            .args([
                "--",
                "--static-pods",
                "none",
                "--etcd-endpoint",
                &etcd.endpoint,
            ])
            .args(["--recipient", &r, "--store", store.to_str().unwrap()]);
        c.output().unwrap()
    };
    let o = run_script(&["--all", "--image", "quay.io/x/cpbackup:1"]);
    fails_with(&o, 1, "the backup failed on: m1");
    let log = fs::read_to_string(dir.join("oc.log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(
        lines[0],
        "get nodes -l node-role.kubernetes.io/master -o name"
    );
    assert!(lines[1].starts_with("debug node/m0 --image=quay.io/x/cpbackup:1 -- cpbackup --host-root /host backup --static-pods none"), "{}", lines[1]);
    assert!(lines[2].starts_with("debug node/m1 "));
    assert!(lines[3].starts_with("debug node/m2 "));
    // m0 and m2 were really backed up (same node name here: the second one is later)
    let bundles = files_under(&store)
        .into_iter()
        .filter(|f| f.ends_with(".cpb"))
        .count();
    assert!(bundles >= 1, "{:?}", files_under(&store));

    fs::remove_file(dir.join("oc.log")).unwrap();
    etcd.put("/registry/namespaces/b", "{}");
    let o = run_script(&["m2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let log = fs::read_to_string(dir.join("oc.log")).unwrap();
    assert!(
        log.starts_with(
            "debug node/m2 -- chroot /host /usr/local/bin/cpbackup backup --static-pods none"
        ),
        "{log}"
    );

    let o = script("oc-backup-node.sh")
        .env("PATH", &path)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "no node given");
    let o = script("oc-backup-node.sh").arg("--help").output().unwrap();
    assert!(o.status.success() && stdout(&o).contains("--image"));
}
