//! What differs between kinds of control-plane node, behind one small trait: where etcd keeps
//! its data, whether a restore tool is needed, the steps of a restore and of
//! `--disable-etcd`, what the operator does next, and the follow-up through the API. Adding a
//! platform is a file here and one arm in [`of`].

pub mod kubeadm;
pub(crate) mod kubeadm_new_host;
pub mod openshift;

use std::path::Path;

use crate::host::{HostRoot, Platform};
use crate::kubeapi::openshift::Settle;
use crate::restore::plan::PlanInput;
use crate::restore::steps::Step;

/// One platform's restore procedure.
pub trait Procedure: Sync {
    /// Whether the node's etcdutl/etcdctl restores the snapshot (else etcd's own image does).
    fn needs_tool(&self) -> bool;
    /// etcd's data directory (a host path); reading it is the first check of the node.
    fn data_dir(&self, host: &HostRoot) -> anyhow::Result<String>;
    /// The steps of a whole-cluster restore on this node.
    fn restore(&self, p: &PlanInput) -> anyhow::Result<Vec<Step>>;
    /// The steps of `--disable-etcd`; manifests moved aside go to `stopped`.
    fn disable_etcd(&self, host: &HostRoot, stopped: &Path) -> anyhow::Result<Vec<Step>>;
    /// What the operator does after the restore.
    fn next_steps(&self) -> Vec<String>;
    /// `--post-restore`: the follow-up steps through the API (none by default).
    fn post_restore(
        &self,
        _kubeconfig: Option<&Path>,
        _settle: Settle,
        say: &mut (dyn FnMut(&str) + Send),
    ) -> anyhow::Result<()> {
        say(
            "--post-restore: nothing to do through the API on this node; follow the next steps above",
        );
        Ok(())
    }
}

/// The procedure of a platform (a node neither OpenShift nor kubeadm is handled as kubeadm).
pub fn of(platform: Platform) -> &'static dyn Procedure {
    match platform {
        Platform::Openshift => &openshift::Openshift,
        Platform::Kubeadm | Platform::Unknown => &kubeadm::Kubeadm,
    }
}
