//! The systemd units: `systemd-analyze verify` accepts them without a single warning, the
//! hardening and timer settings the docs promise are there, and their command lines parse.

use cpbackup_testkit as support;

use std::fs;
use std::process::Command;

use support::*;

const UNITS: [&str; 3] = [
    "cpbackup-backup.service",
    "cpbackup-backup.timer",
    "cpbackup.service",
];

fn unit(name: &str) -> String {
    fs::read_to_string(format!("{}/systemd/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn systemd_analyze_verify_passes_on_every_unit() {
    let t = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for name in UNITS {
        // verify checks that ExecStart exists: point it at the binary under test.
        let text = unit(name).replace("/usr/local/bin/cpbackup", env!("CARGO_BIN_EXE_cpbackup"));
        let p = t.path().join(name);
        fs::write(&p, text).unwrap();
        paths.push(p);
    }
    let o = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&paths)
        .output()
        .expect("systemd-analyze is installed (scripts/test.sh installs systemd)");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stderr(&o), "", "no warning either");
}

#[test]
fn services_are_hardened_and_the_timer_spreads_and_catches_up() {
    for name in ["cpbackup-backup.service", "cpbackup.service"] {
        let u = unit(name);
        for line in [
            "ProtectSystem=strict",
            "PrivateTmp=yes",
            "NoNewPrivileges=yes",
            "CapabilityBoundingSet=CAP_DAC_READ_SEARCH",
            "StateDirectory=cpbackup",
            "ProtectHome=yes",
            "SystemCallFilter=@system-service",
        ] {
            assert!(u.lines().any(|l| l == line), "{name} lacks {line}");
        }
    }
    let daemon = unit("cpbackup.service");
    assert!(daemon.contains("ExecReload=/bin/kill -HUP $MAINPID"));
    assert!(daemon.contains("RestartPreventExitStatus=2"));
    let timer = unit("cpbackup-backup.timer");
    for line in [
        "Persistent=true",
        "RandomizedDelaySec=10min",
        "OnCalendar=*-*-* 00/6:00:00",
    ] {
        assert!(timer.lines().any(|l| l == line), "timer lacks {line}");
    }
}

#[test]
fn exec_lines_are_valid_cpbackup_command_lines() {
    let t = tempfile::tempdir().unwrap();
    for name in ["cpbackup-backup.service", "cpbackup.service"] {
        let u = unit(name);
        let exec = u
            .lines()
            .find_map(|l| l.strip_prefix("ExecStart="))
            .unwrap();
        let mut args: Vec<&str> = exec.split_whitespace().skip(1).collect();
        args.push("--help");
        let mut c = cpbackup(t.path());
        c.args(&args);
        let o = run(c);
        assert!(o.status.success(), "{name}: {exec}: {}", stderr(&o));
    }
}

#[test]
fn documentation_lines_name_manual_pages_cpbackup_installs() {
    let t = tempfile::tempdir().unwrap();
    let mut c = cpbackup(t.path());
    c.args(["man", "--out"]).arg(t.path().join("man1"));
    let o = run(c);
    assert!(o.status.success(), "{}", stderr(&o));
    for name in UNITS {
        let text = unit(name);
        let docs: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("Documentation="))
            .flat_map(str::split_whitespace)
            .collect();
        assert!(!docs.is_empty(), "{name} has no Documentation=");
        for d in docs {
            let page = d
                .strip_prefix("man:")
                .and_then(|p| p.strip_suffix("(1)"))
                .unwrap_or_else(|| panic!("{name}: {d} is not a manual page cpbackup installs"));
            assert!(
                t.path().join(format!("man1/{page}.1")).is_file(),
                "{name}: `cpbackup man --out` writes no {page}.1"
            );
        }
    }
}
