//! Host paths under `--host-root`: `/etc/kubernetes` on the host is
//! `<host-root>/etc/kubernetes` for us (e.g. `/host/etc/kubernetes` inside `oc debug`).

use std::path::{Component, Path, PathBuf};

#[derive(Debug, Clone)]
pub struct HostRoot(PathBuf);

impl HostRoot {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        HostRoot(root.into())
    }

    pub fn root(&self) -> &Path {
        &self.0
    }

    /// The host's own path for a path we read (`/host/var/lib/x` → `/var/lib/x`); `None` when
    /// it is not under the host root.
    pub fn host_path_of(&self, ours: &Path) -> Option<PathBuf> {
        ours.strip_prefix(&self.0)
            .ok()
            .map(|rel| Path::new("/").join(rel))
    }

    /// Maps an absolute host path to the path we read.
    pub fn path(&self, host_path: impl AsRef<Path>) -> PathBuf {
        let mut out = self.0.clone();
        for c in host_path.as_ref().components() {
            if let Component::Normal(n) = c {
                out.push(n);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn reroots_absolute_paths() {
        let h = HostRoot::new("/host");
        assert_eq!(
            h.path("/etc/kubernetes/pki"),
            PathBuf::from("/host/etc/kubernetes/pki")
        );
        assert_eq!(HostRoot::new("/").path("/etc/x"), PathBuf::from("/etc/x"));
        assert_eq!(
            h.host_path_of(Path::new("/host/var/lib/etcd")),
            Some(PathBuf::from("/var/lib/etcd"))
        );
        assert_eq!(h.host_path_of(Path::new("/tmp/x")), None);
    }
}
