//! Which host files go into a bundle beside the snapshot.
//!
//! OpenShift: for kube-apiserver, kube-controller-manager, kube-scheduler and etcd, the revision
//! `N` named inside `/etc/kubernetes/manifests/<c>-pod.yaml` (never "newest directory by time")
//! and the tree `static-pod-resources/<c>-pod-N`, plus the manifests themselves.
//! kubeadm: `/etc/kubernetes/pki`, `/etc/kubernetes/manifests` and the `*.conf` kubeconfigs.
//! Archive paths are relative to `/etc/kubernetes`; extra paths go under `extra/<absolute path>`.

use clap::ValueEnum;
use std::path::{Path, PathBuf};

use crate::error::usage;
use crate::host::{HostRoot, Platform};

/// Which static pod resources go into the bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StaticPodsMode {
    /// Detect OpenShift or kubeadm from the host; fail when neither is found.
    Auto,
    /// /etc/kubernetes/static-pod-resources/<component>-pod-N and the four manifests.
    Openshift,
    /// /etc/kubernetes/pki, /etc/kubernetes/manifests and /etc/kubernetes/*.conf.
    Kubeadm,
    /// etcd snapshot only (and extra paths): NOT enough for a whole-cluster restore.
    None,
}

pub const OPENSHIFT_COMPONENTS: [&str; 4] = [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "etcd",
];

/// One file or tree to copy into the bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Where we read it (already under the host root).
    pub path: PathBuf,
    /// Its path inside the bundle.
    pub archive_path: String,
}

/// The resolved plan: what platform's layout and which sources.
#[derive(Debug, Clone)]
pub struct Plan {
    pub layout: Platform,
    pub sources: Vec<Source>,
    /// OpenShift revision per component, e.g. ("etcd", 7).
    pub revisions: Vec<(String, u64)>,
}

pub fn plan(
    host: &HostRoot,
    mode: StaticPodsMode,
    detected: Platform,
    extra_paths: &[PathBuf],
) -> anyhow::Result<Plan> {
    let layout = match mode {
        StaticPodsMode::Auto => match detected {
            Platform::Unknown => {
                return Err(usage(format!(
                    "no OpenShift or kubeadm control plane found under host root {}: a backup without the static pod \
                     resources cannot restore a cluster. Pass --host-root if the host is mounted elsewhere, \
                     or --static-pods none to back up etcd alone",
                    host.root().display()
                )));
            }
            p => p,
        },
        StaticPodsMode::Openshift => Platform::Openshift,
        StaticPodsMode::Kubeadm => Platform::Kubeadm,
        StaticPodsMode::None => Platform::Unknown,
    };
    let (mut sources, revisions) = match layout {
        Platform::Openshift => openshift(host)?,
        Platform::Kubeadm => (kubeadm(host)?, Vec::new()),
        Platform::Unknown => (Vec::new(), Vec::new()),
    };
    for p in extra_paths {
        if !p.is_absolute() {
            return Err(usage(format!(
                "extra_paths: {} must be an absolute host path",
                p.display()
            )));
        }
        let path = host.path(p);
        if std::fs::symlink_metadata(&path).is_err() {
            return Err(usage(format!(
                "extra_paths: {} does not exist under host root {}; fix or remove it",
                p.display(),
                host.root().display()
            )));
        }
        let rel = p.strip_prefix("/").unwrap_or(p);
        sources.push(Source {
            path,
            archive_path: format!("extra/{}", rel.display()),
        });
    }
    Ok(Plan {
        layout,
        sources,
        revisions,
    })
}

/// The revision a manifest points at: the first `/etc/kubernetes/static-pod-resources/<c>-pod-N`.
pub fn revision_in_manifest(text: &str, component: &str) -> Option<u64> {
    let needle = format!("/etc/kubernetes/static-pod-resources/{component}-pod-");
    text.match_indices(&needle).find_map(|(i, _)| {
        let digits: String = text[i + needle.len()..]
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        digits.parse().ok()
    })
}

/// Sources and the revision of each component.
type OpenshiftLayout = (Vec<Source>, Vec<(String, u64)>);

fn openshift(host: &HostRoot) -> anyhow::Result<OpenshiftLayout> {
    let mut sources = Vec::new();
    let mut revisions = Vec::new();
    for c in OPENSHIFT_COMPONENTS {
        let manifest_host = format!("/etc/kubernetes/manifests/{c}-pod.yaml");
        let manifest = host.path(&manifest_host);
        let text = std::fs::read_to_string(&manifest).map_err(|e| {
            anyhow::anyhow!(
                "cannot read the {c} static pod manifest {manifest_host}: {e}. Is {c} running on this node? \
                 A restore needs all four control-plane components; run the backup on a healthy master"
            )
        })?;
        let n = revision_in_manifest(&text, c).ok_or_else(|| {
            anyhow::anyhow!(
                "{manifest_host} names no /etc/kubernetes/static-pod-resources/{c}-pod-N directory; \
                 the manifest is not an OpenShift static pod manifest (use --static-pods kubeadm or none)"
            )
        })?;
        let dir_host = format!("/etc/kubernetes/static-pod-resources/{c}-pod-{n}");
        let dir = host.path(&dir_host);
        if !dir.is_dir() {
            anyhow::bail!(
                "{manifest_host} points at revision {n} but {dir_host} does not exist; a rollout may be in progress: \
                 wait for it to finish and retry (--force does not help here, the resources are missing)"
            );
        }
        sources.push(Source {
            path: dir,
            archive_path: format!("static-pod-resources/{c}-pod-{n}"),
        });
        sources.push(Source {
            path: manifest,
            archive_path: format!("manifests/{c}-pod.yaml"),
        });
        revisions.push((c.to_owned(), n));
    }
    Ok((sources, revisions))
}

fn kubeadm(host: &HostRoot) -> anyhow::Result<Vec<Source>> {
    let mut sources = Vec::new();
    for d in ["pki", "manifests"] {
        let p = host.path(format!("/etc/kubernetes/{d}"));
        if !p.is_dir() {
            anyhow::bail!(
                "/etc/kubernetes/{d} is missing under host root {}: not a kubeadm control-plane node?",
                host.root().display()
            );
        }
        sources.push(Source {
            path: p,
            archive_path: d.to_owned(),
        });
    }
    let base = host.path("/etc/kubernetes");
    let mut confs: Vec<_> = std::fs::read_dir(&base)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "conf") && p.is_file())
        .collect();
    confs.sort();
    for p in confs {
        let name = file_name(&p);
        sources.push(Source {
            path: p,
            archive_path: name,
        });
    }
    Ok(sources)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// An OpenShift-like host where each component has revisions 3 and 7 and the manifest
    /// points at `pointed`.
    fn openshift_host(pointed: u64) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let k = d.path().join("etc/kubernetes");
        fs::create_dir_all(k.join("manifests")).unwrap();
        for c in OPENSHIFT_COMPONENTS {
            for n in [3, 7] {
                fs::create_dir_all(k.join(format!("static-pod-resources/{c}-pod-{n}/secrets")))
                    .unwrap();
            }
            fs::write(
                k.join(format!("manifests/{c}-pod.yaml")),
                format!("spec:\n  volumes:\n  - hostPath:\n      path: /etc/kubernetes/static-pod-resources/{c}-pod-{pointed}\n"),
            )
            .unwrap();
        }
        d
    }

    #[test]
    fn openshift_uses_revision_named_in_manifest() {
        let d = openshift_host(3);
        let p = plan(
            &HostRoot::new(d.path()),
            StaticPodsMode::Openshift,
            Platform::Unknown,
            &[],
        )
        .unwrap();
        assert!(p.revisions.iter().all(|(_, n)| *n == 3));
        assert!(
            p.sources
                .iter()
                .any(|s| s.archive_path == "static-pod-resources/etcd-pod-3")
        );
        assert!(
            p.sources
                .iter()
                .any(|s| s.archive_path == "manifests/kube-scheduler-pod.yaml")
        );
        assert_eq!(p.sources.len(), 8);
    }

    #[test]
    fn missing_revision_directory_is_a_clear_error() {
        let d = openshift_host(9);
        let e = plan(
            &HostRoot::new(d.path()),
            StaticPodsMode::Auto,
            Platform::Openshift,
            &[],
        )
        .unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains("revision 9") && m.contains("kube-apiserver-pod-9"),
            "{m}"
        );
    }

    #[test]
    fn auto_without_platform_is_usage_error() {
        let d = tempfile::tempdir().unwrap();
        let e = plan(
            &HostRoot::new(d.path()),
            StaticPodsMode::Auto,
            Platform::Unknown,
            &[],
        )
        .unwrap_err();
        assert_eq!(crate::error::exit_code(&e), 2);
        assert!(e.to_string().contains("--static-pods none"));
        let p = plan(
            &HostRoot::new(d.path()),
            StaticPodsMode::None,
            Platform::Unknown,
            &[],
        )
        .unwrap();
        assert!(p.sources.is_empty());
    }

    #[test]
    fn revision_parsing() {
        assert_eq!(
            revision_in_manifest(
                "x /etc/kubernetes/static-pod-resources/etcd-pod-12/y",
                "etcd"
            ),
            Some(12)
        );
        assert_eq!(
            revision_in_manifest("/etc/kubernetes/static-pod-resources/etcd-certs", "etcd"),
            None
        );
    }
}
