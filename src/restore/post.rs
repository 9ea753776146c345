//! After the restore: what the operator does next on each platform, and `--post-restore`, the
//! follow-up steps done through the API (OpenShift; none on kubeadm).

use std::path::Path;

use crate::host::Platform;
use crate::kubeapi::openshift::Settle;

/// `--post-restore`: the platform's follow-up steps through the API (`say` reports progress).
pub fn run(
    platform: Platform,
    kubeconfig: Option<&Path>,
    settle: Settle,
    say: &mut (dyn FnMut(&str) + Send),
) -> anyhow::Result<()> {
    super::platform::of(platform).post_restore(kubeconfig, settle, say)
}

/// What the operator does after the restore.
pub fn next_steps(platform: Platform) -> Vec<String> {
    super::platform::of(platform).next_steps()
}
