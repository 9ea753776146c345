//! The steps of `restore --rejoin`, all through the recovery member: `member-add` (this node
//! added as a learner where the cluster has learners), `join-manifest` (etcd's manifest
//! written with the cluster's `--initial-cluster` and `--initial-cluster-state=existing`, which
//! starts it) and `wait-joined` (started, promoted, caught up). Undo removes the member and the
//! manifest; nothing of the node's is deleted.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::{Action, Ctx, EtcdTarget, publish_new_file, unique};
use crate::etcd::membership::{Cluster, block_on, find, initial_cluster};
use crate::host::etcd_manifest::{plain_flag_value, with_flags};
use crate::restore::fsops::move_path;
use crate::restore::node::{self, Watch};

/// How long one call to the recovery member may take.
const CALL: Duration = Duration::from_secs(10);

/// Add this node as a member of the restored cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberAdd {
    /// The recovery member.
    pub via: EtcdTarget,
    /// This member's name.
    pub name: String,
    /// This member's peer URL.
    pub peer_url: String,
    /// Added as a learner (promoted by `wait-joined`).
    pub learner: bool,
}

impl Action for MemberAdd {
    fn describe(&self) -> String {
        format!(
            "add member {} ({}) to the restored cluster through {}{}",
            self.name,
            self.peer_url,
            self.via.endpoint,
            if self.learner {
                " as a learner (promoted once it has caught up)"
            } else {
                ""
            }
        )
    }

    fn run(&self, ctx: &Ctx) -> anyhow::Result<()> {
        retry_reconfiguration(ctx, || block_on(self.add_once()))
    }

    fn undo(&self, ctx: &Ctx) -> anyhow::Result<()> {
        remove_from_cluster(ctx, &self.via, &self.peer_url)
    }
}

/// etcd refuses a reconfiguration until every voting member has been connected for a while
/// (5 s): right after a member joined, adding or removing one is refused for a moment, so it
/// is tried again until the wait timeout. Trying again is safe: each try reads the list first.
fn retry_reconfiguration(
    ctx: &Ctx,
    mut once: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + ctx.wait_timeout;
    loop {
        match once() {
            Ok(()) => return Ok(()),
            Err(e) if e.is::<AlreadyMember>() || Instant::now() >= deadline => return Err(e),
            Err(e) => {
                tracing::info!(error = %format!("{e:#}"), "the cluster does not take the change yet; trying again")
            }
        }
        std::thread::sleep(Duration::from_millis(500)); // etcd's reconfiguration health window
    }
}

/// The node is a started member already: trying again will not help.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct AlreadyMember(String);

/// Removes the member with `peer_url`, if the cluster has it.
async fn remove_member(via: &EtcdTarget, peer_url: &str) -> anyhow::Result<()> {
    let mut c = Cluster::connect(&via.access(), CALL).await?;
    let members = c.members().await?;
    match find(&members, peer_url) {
        Some(m) => c.remove(m.id).await,
        None => Ok(()),
    }
}

/// The member removed through the recovery member, retried while etcd refuses.
fn remove_from_cluster(ctx: &Ctx, via: &EtcdTarget, peer_url: &str) -> anyhow::Result<()> {
    retry_reconfiguration(ctx, || block_on(remove_member(via, peer_url))).context(
        "cannot remove this node's member through the recovery member; remove it there by hand (`etcdctl member remove ID`)",
    )
}

impl MemberAdd {
    async fn add_once(&self) -> anyhow::Result<()> {
        let mut c = Cluster::connect(&self.via.access(), CALL).await?;
        let members = c.members().await?;
        match find(&members, &self.peer_url) {
            Some(m) if m.started() => Err(AlreadyMember(format!(
                "{} is already a started member of the cluster at {} (name {:?}, id {:x}): nothing to rejoin. \
                 If it is a stale entry, remove it there first (`etcdctl member remove {:x}`)",
                self.peer_url, self.via.endpoint, m.name, m.id, m.id
            ))
            .into()),
            Some(_) => Ok(()), // added by an earlier run that was cut short
            None => c.add(&self.peer_url, self.learner).await.map(|_| ()),
        }
    }
}

/// Start etcd as a joining member: its manifest from the original with the cluster's members.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinManifest {
    /// The recovery member, asked for the member list.
    pub via: EtcdTarget,
    /// The node's own etcd manifest (kept where it was set aside).
    pub original: PathBuf,
    /// Where the kubelet reads it.
    pub manifest: PathBuf,
    /// This member's name.
    pub name: String,
    /// This member's peer URL.
    pub peer_url: String,
    /// How to tell etcd is gone (on undo).
    pub watch: Watch,
}

impl Action for JoinManifest {
    fn describe(&self) -> String {
        format!(
            "start etcd as a member of the restored cluster: write {} from {} with --initial-cluster=<every member, as the cluster lists them> and --initial-cluster-state=existing",
            self.manifest.display(),
            self.original.display()
        )
    }

    fn run(&self, ctx: &Ctx) -> anyhow::Result<()> {
        let original = std::fs::read_to_string(&self.original)
            .with_context(|| format!("reading the etcd manifest {}", self.original.display()))?;
        let members = block_on(async {
            let mut c = Cluster::connect(&self.via.access(), CALL).await?;
            c.members().await
        })?;
        let cluster = initial_cluster(&members, &self.name, &self.peer_url);
        plain_flag_value(&cluster).with_context(|| {
            format!(
                "refusing to write the cluster's member list into {}",
                self.manifest.display()
            )
        })?;
        let text = with_flags(
            &original,
            &[
                ("initial-cluster", &cluster),
                ("initial-cluster-state", "existing"),
            ],
        );
        if self.manifest.exists() {
            if std::fs::read_to_string(&self.manifest).is_ok_and(|t| t == text) {
                return Ok(()); // written by an earlier run
            }
            anyhow::bail!(
                "{} exists and is not the manifest this rejoin writes: someone put a manifest back; move it away, then --continue",
                self.manifest.display()
            );
        }
        publish_new_file(ctx, &self.manifest, text.as_bytes())
    }

    /// The member leaves the cluster before its etcd stops: stopped first, a voting member of
    /// a two-member cluster would take the quorum with it, and the removal could not commit.
    fn undo(&self, ctx: &Ctx) -> anyhow::Result<()> {
        remove_from_cluster(ctx, &self.via, &self.peer_url)?;
        if self.manifest.exists() {
            move_path(&self.manifest, &unique(&ctx.rolled_back, &self.manifest))?;
        }
        node::wait_gone(&self.watch, &ctx.host_root, ctx.wait_timeout)
    }
}

/// Wait until the member has started, promote it if it is a learner, and wait until it serves
/// what the recovery member serves.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WaitJoined {
    /// The recovery member.
    pub via: EtcdTarget,
    /// This member, at its own client URL.
    pub local: EtcdTarget,
    /// This member's peer URL.
    pub peer_url: String,
}

impl Action for WaitJoined {
    fn describe(&self) -> String {
        format!(
            "wait until the member at {} has started, promote it if it is a learner, and wait until {} serves the recovery member's revision",
            self.peer_url, self.local.endpoint
        )
    }

    fn run(&self, ctx: &Ctx) -> anyhow::Result<()> {
        let deadline = Instant::now() + ctx.wait_timeout;
        let mut last = String::from("not checked yet");
        while Instant::now() < deadline {
            match block_on(self.check()) {
                Ok(None) => return Ok(()),
                Ok(Some(why)) => last = why,
                Err(e) => last = format!("{e:#}"),
            }
            std::thread::sleep(Duration::from_millis(100)); // poll, bounded by the deadline
        }
        anyhow::bail!(
            "the member at {} did not join within {}s ({last}); check its logs (crictl logs, journalctl -u kubelet), then `{}` waits again",
            self.peer_url,
            ctx.wait_timeout.as_secs(),
            ctx.continue_cmd
        )
    }

    fn undo(&self, _ctx: &Ctx) -> anyhow::Result<()> {
        Ok(())
    }
}

impl WaitJoined {
    /// `None` once joined; else what it is waiting for.
    async fn check(&self) -> anyhow::Result<Option<String>> {
        let mut c = Cluster::connect(&self.via.access(), CALL).await?;
        let members = c.members().await?;
        let Some(me) = find(&members, &self.peer_url).cloned() else {
            anyhow::bail!(
                "{} is no longer a member of the cluster at {}: was it removed? Roll back, then rejoin again",
                self.peer_url,
                self.via.endpoint
            );
        };
        if !me.started() {
            return Ok(Some("it has not started yet".into()));
        }
        if me.learner {
            if let Err(e) = c.promote(me.id).await {
                return Ok(Some(format!("a learner not promoted yet: {e:#}")));
            }
            tracing::info!(member = %format!("{:x}", me.id), "learner promoted to a voting member");
        }
        let target = c.revision;
        let local = Cluster::connect(&self.local.access(), CALL).await?;
        if local.revision < target {
            return Ok(Some(format!(
                "it serves revision {}, the recovery member {target}",
                local.revision
            )));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn member_lists_that_would_break_the_manifest_line_are_refused() {
        let ok = "cp-1=https://10.0.0.5:2380,cp-2=https://[fd00::2]:2380";
        assert!(super::plain_flag_value(ok).is_ok());
        for bad in [
            "cp-1=https://10.0.0.5:2380\n    - --experimental-x=1",
            "cp 1=https://a:2380",
            "cp-1=https://a:2380\"",
            "cp-1=https://a:2380 # comment",
        ] {
            assert!(super::plain_flag_value(bad).is_err(), "{bad:?}");
        }
    }
}
