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
    }
}
