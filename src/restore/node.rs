//! Static pods on this node: is a component still running (crictl when the host has it, else a
//! scan of /proc for the process), and waiting, with a timeout, until it stops or etcd serves.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;

/// How a stopped component is recognised.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Watch {
    /// Container names (crictl `io.kubernetes.container.name`).
    pub containers: Vec<String>,
    /// Process name (argv[0] basename) for hosts without crictl.
    pub process: String,
    /// When set, only a process with one of these among its arguments counts (etcd's data dir,
    /// as the manifest writes it and as this host root sees it).
    pub args_containing: Vec<String>,
}

fn crictl() -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|d| d.join("crictl"))
        .find(|p| p.is_file())
}

/// Whether any container or process of `w` is still running.
pub fn running(w: &Watch, host_root: &Path) -> anyhow::Result<bool> {
    if host_root == Path::new("/")
        && let Some(c) = crictl()
    {
        for name in &w.containers {
            let out = Command::new(&c)
                .args([
                    "ps",
                    "--label",
                    &format!("io.kubernetes.container.name={name}"),
                    "-q",
                ])
                .output()
                .context("running crictl ps")?;
            if !out.status.success() {
                anyhow::bail!(
                    "crictl ps failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            if !String::from_utf8_lossy(&out.stdout).trim().is_empty() {
                return Ok(true);
            }
        }
        return Ok(false);
    }
    Ok(process_running(w))
}

fn process_running(w: &Watch) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    for e in dir.flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let Some(argv0) = args.first() else { continue };
        let base = Path::new(argv0)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if base != w.process {
            continue;
        }
        if w.args_containing.is_empty()
            || args[1..].iter().any(|a| {
                w.args_containing
                    .iter()
                    .any(|want| a.contains(want.as_str()))
            })
        {
            return true;
        }
    }
    false
}

/// Polls until `w` is gone; an error names what still runs and what to do.
pub fn wait_gone(w: &Watch, host_root: &Path, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut announced = false;
    // A /proc scan is cheap; crictl is a process per poll.
    let poll = if host_root == Path::new("/") && crictl().is_some() {
        Duration::from_millis(200)
    } else {
        Duration::from_millis(50)
    };
    while running(w, host_root)? {
        if Instant::now() >= deadline {
            anyhow::bail!(
                "{} still runs {}s after its manifest was moved away; check the kubelet (`crictl ps`), \
                 stop it, then run the same command again",
                w.process,
                timeout.as_secs()
            );
        }
        if !announced {
            tracing::info!(process = %w.process, "waiting for it to stop");
            announced = true;
        }
        std::thread::sleep(poll); // polling the kubelet's work, bounded above
    }
    Ok(())
}
