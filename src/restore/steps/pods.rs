//! `stop-pod` and `start-pod`: a static pod stopped by moving its manifest out of the kubelet's
//! directory (and waiting until it is gone), started by moving it back.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Action, Ctx};
use crate::restore::fsops::move_path;
use crate::restore::node::{self, Watch};

/// Move a static pod manifest away so the kubelet stops the pod; wait until it is gone.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StopPod {
    /// etcd, kube-apiserver, …
    pub component: String,
    /// Where the kubelet reads it.
    pub manifest: PathBuf,
    /// Where it is kept meanwhile.
    pub aside: PathBuf,
    /// How to tell the pod is gone.
    pub watch: Watch,
}

impl Action for StopPod {
    fn describe(&self) -> String {
        format!(
            "stop {}: move {} to {} and wait until it is gone",
            self.component,
            self.manifest.display(),
            self.aside.display()
        )
    }

    fn run(&self, ctx: &Ctx) -> anyhow::Result<()> {
        match (self.manifest.exists(), self.aside.exists()) {
            (true, false) => move_path(&self.manifest, &self.aside)?,
            (true, true) => anyhow::bail!(
                "both {} and {} exist: someone put the manifest back; remove one of them, then --continue",
                self.manifest.display(),
                self.aside.display()
            ),
            (false, _) => {}
        }
        node::wait_gone(&self.watch, &ctx.host_root, ctx.wait_timeout)
    }

    fn undo(&self, _ctx: &Ctx) -> anyhow::Result<()> {
        if self.aside.exists() && !self.manifest.exists() {
            move_path(&self.aside, &self.manifest)?;
        }
        Ok(())
    }
}

/// Put a manifest moved away back, so the kubelet starts the pod.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StartPod {
    /// etcd, kube-apiserver, …
    pub component: String,
    /// Where the kubelet reads it.
    pub manifest: PathBuf,
    /// Where it was kept.
    pub aside: PathBuf,
    /// How to tell the pod is gone (on undo).
    pub watch: Watch,
}

impl Action for StartPod {
    fn describe(&self) -> String {
        format!(
            "start {}: move {} back to {}",
            self.component,
            self.aside.display(),
            self.manifest.display()
        )
    }

    fn run(&self, _ctx: &Ctx) -> anyhow::Result<()> {
        if self.aside.exists() && !self.manifest.exists() {
            move_path(&self.aside, &self.manifest)?;
        } else if !self.manifest.exists() {
            anyhow::bail!(
                "neither {} nor {} exists: put the manifest back by hand",
                self.manifest.display(),
                self.aside.display()
            );
        }
        Ok(())
    }

    fn undo(&self, ctx: &Ctx) -> anyhow::Result<()> {
        if self.manifest.exists() && !self.aside.exists() {
            move_path(&self.manifest, &self.aside)?;
        }
        node::wait_gone(&self.watch, &ctx.host_root, ctx.wait_timeout)
    }
}
