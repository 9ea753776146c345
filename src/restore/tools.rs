//! The node's own snapshot-restore tool: `etcdutl` (3.5+), else `etcdctl` of 3.4/3.5 (3.6
//! dropped `etcdctl snapshot restore`). What it supports is read from its own help text, so
//! `--bump-revision` and `--mark-compacted` are used exactly where they exist. A kubeadm host
//! with neither gets the tool of etcd's own image (named in its manifest), run as a static pod.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::host::HostRoot;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolKind {
    Etcdutl,
    Etcdctl,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestoreTool {
    pub path: PathBuf,
    pub kind: ToolKind,
    pub version: String,
    pub bump_revision: bool,
    pub mark_compacted: bool,
    /// Run inside this container image as a static pod (`path` is the path in the image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

/// Everything `snapshot restore` needs to make a single-member cluster.
pub struct RestoreArgs<'a> {
    pub snapshot: &'a Path,
    pub data_dir: &'a Path,
    pub name: &'a str,
    pub peer_url: &'a str,
    pub token: &'a str,
    pub bump: Option<u64>,
}

impl RestoreTool {
    /// As [`RestoreTool::find`]; when the host has no tool, the one in `etcd_image` (kubeadm's
    /// `registry.k8s.io/etcd:3.5.15-0`: etcdutl from 3.5, etcdctl in 3.4 images), whose
    /// `--bump-revision` is not relied upon (cpbackup bumps what it restored).
    pub fn find_or_image(
        explicit: Option<&Path>,
        host: &HostRoot,
        etcd_image: Option<&str>,
    ) -> anyhow::Result<RestoreTool> {
        let found = Self::find(explicit, host);
        let (Err(e), None, Some(image)) = (&found, explicit, etcd_image) else {
            return found;
        };
        let tag = crate::host::etcd_manifest::image_tag(&format!("image: {image}"));
        let Some(minor) = tag
            .as_deref()
            .and_then(crate::host::etcd_manifest::minor_of)
        else {
            return Err(crate::error::usage(format!(
                "{e:#}; etcd's image {image} names no version, so its own tool cannot be chosen"
            )));
        };
        let kind = if minor >= (3, 5) {
            ToolKind::Etcdutl
        } else {
            ToolKind::Etcdctl
        };
        let name = match kind {
            ToolKind::Etcdutl => "etcdutl",
            ToolKind::Etcdctl => "etcdctl",
        };
        Ok(RestoreTool {
            path: PathBuf::from(format!("/usr/local/bin/{name}")),
            kind,
            version: tag.unwrap_or_default(),
            bump_revision: false,
            mark_compacted: false,
            image: Some(image.to_owned()),
        })
    }

    /// `explicit`, else `etcdutl` then `etcdctl` on PATH and in the host's /usr/local/bin and
    /// /usr/bin.
    pub fn find(explicit: Option<&Path>, host: &HostRoot) -> anyhow::Result<RestoreTool> {
        if let Some(p) = explicit {
            return Self::probe(p).with_context(|| {
                format!(
                    "--etcdutl {}: not a working etcdutl or etcdctl",
                    p.display()
                )
            });
        }
        let mut candidates: Vec<PathBuf> = Vec::new();
        for name in ["etcdutl", "etcdctl"] {
            if let Some(paths) = std::env::var_os("PATH") {
                candidates.extend(std::env::split_paths(&paths).map(|d| d.join(name)));
            }
            for d in ["/usr/local/bin", "/usr/bin"] {
                candidates.push(host.path(d).join(name));
            }
        }
        let mut errors = Vec::new();
        for c in candidates.iter().filter(|c| c.is_file()) {
            match Self::probe(c) {
                Ok(t) => return Ok(t),
                Err(e) => errors.push(format!("{}: {e:#}", c.display())),
            }
        }
        Err(crate::error::usage(format!(
            "no etcdutl (or etcdctl 3.4/3.5) found on PATH or in the host's /usr/local/bin and /usr/bin{}; \
             install the etcdutl matching your etcd version or pass --etcdutl PATH. Nothing was changed",
            if errors.is_empty() {
                String::new()
            } else {
                format!(" ({})", errors.join("; "))
            }
        )))
    }

    fn probe(path: &Path) -> anyhow::Result<RestoreTool> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let kind = if name.contains("etcdutl") {
            ToolKind::Etcdutl
        } else {
            ToolKind::Etcdctl
        };
        let out = Command::new(path)
            .arg("version")
            .env("ETCDCTL_API", "3")
            .output()
            .with_context(|| format!("running {} version", path.display()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let version = text
            .lines()
            .find_map(|l| l.split_once("version:").map(|(_, v)| v.trim().to_owned()))
            .filter(|_| out.status.success())
            .context("it did not report a version")?;
        if kind == ToolKind::Etcdctl && !(version.starts_with("3.4") || version.starts_with("3.5"))
        {
            anyhow::bail!("etcdctl {version} has no `snapshot restore`; use etcdutl");
        }
        let help = Command::new(path)
            .args(["snapshot", "restore", "--help"])
            .env("ETCDCTL_API", "3")
            .output()
            .with_context(|| format!("running {} snapshot restore --help", path.display()))?;
        let help = String::from_utf8_lossy(&help.stdout).into_owned()
            + &String::from_utf8_lossy(&help.stderr);
        if !help.contains("--initial-cluster-token") {
            anyhow::bail!("its `snapshot restore` does not take --initial-cluster-token");
        }
        Ok(RestoreTool {
            path: path.to_path_buf(),
            kind,
            version,
            bump_revision: help.contains("--bump-revision"),
            mark_compacted: help.contains("--mark-compacted"),
            image: None,
        })
    }

    /// The command line (after the program) for a single-member restore.
    pub fn args(&self, a: &RestoreArgs) -> Vec<String> {
        let mut v = vec![
            "snapshot".to_owned(),
            "restore".to_owned(),
            a.snapshot.display().to_string(),
            format!("--data-dir={}", a.data_dir.display()),
            format!("--name={}", a.name),
            format!("--initial-cluster={}={}", a.name, a.peer_url),
            format!("--initial-advertise-peer-urls={}", a.peer_url),
            format!("--initial-cluster-token={}", a.token),
            // cpbackup verified the trailer (and every byte against the manifest) while
            // unpacking, and fsynced the file: hashing 1 GiB again only costs time.
            "--skip-hash-check".to_owned(),
        ];
        if let Some(b) = a.bump.filter(|_| self.bump_revision) {
            v.push(format!("--bump-revision={b}"));
            if self.mark_compacted {
                v.push("--mark-compacted".to_owned());
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(bump: bool) -> RestoreTool {
        RestoreTool {
            path: "/usr/bin/etcdutl".into(),
            kind: ToolKind::Etcdutl,
            version: "3.6.0".into(),
            bump_revision: bump,
            mark_compacted: bump,
            image: None,
        }
    }

    #[test]
    fn bump_flags_only_where_supported() {
        let a = RestoreArgs {
            snapshot: Path::new("/s.db"),
            data_dir: Path::new("/d"),
            name: "m1",
            peer_url: "https://10.0.0.1:2380",
            token: "cpbackup-x",
            bump: Some(1200),
        };
        let with = tool(true).args(&a);
        assert!(with.contains(&"--bump-revision=1200".to_owned()));
        assert!(with.contains(&"--mark-compacted".to_owned()));
        assert!(with.contains(&"--initial-cluster=m1=https://10.0.0.1:2380".to_owned()));
        let without = tool(false).args(&a);
        assert!(
            !without
                .iter()
                .any(|x| x.contains("bump") || x.contains("compacted"))
        );
    }
}
