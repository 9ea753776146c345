//! `wait-serving` and `remove-staged`: the end of a restore — etcd answers with the backup's
//! revision or later; the decrypted staging copy is removed. Neither has anything to undo.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{Action, Ctx};
use crate::restore::fsops::remove_tree;

/// How `WaitServing` reaches etcd.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EtcdTarget {
    /// Client URL.
    pub endpoint: String,
    /// CA of its serving certificate.
    pub cacert: Option<PathBuf>,
    /// Client certificate.
    pub cert: Option<PathBuf>,
    /// Client key.
    pub key: Option<PathBuf>,
}

impl EtcdTarget {
    /// As the etcd client takes it.
    pub fn access(&self) -> crate::host::EtcdAccess {
        crate::host::EtcdAccess {
            endpoint: self.endpoint.clone(),
            cacert: self.cacert.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            node_name: None,
        }
    }
}

/// Wait until etcd answers with at least `min_revision`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WaitServing {
    /// Where etcd is.
    pub target: EtcdTarget,
    /// The backup's revision.
    pub min_revision: i64,
}

impl Action for WaitServing {
    fn describe(&self) -> String {
        format!(
            "wait until etcd at {} serves revision {} or later",
            self.target.endpoint, self.min_revision
        )
    }

    fn run(&self, ctx: &Ctx) -> anyhow::Result<()> {
        wait_serving(&self.target, self.min_revision, ctx)
    }

    fn undo(&self, _ctx: &Ctx) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Remove the staged (decrypted) bundle: plaintext keys must not linger.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoveStaged {
    /// The staging directory.
    pub staged: PathBuf,
}

impl Action for RemoveStaged {
    fn describe(&self) -> String {
        format!(
            "remove the decrypted staging copy {}",
            self.staged.display()
        )
    }

    fn run(&self, _ctx: &Ctx) -> anyhow::Result<()> {
        remove_tree(&self.staged)
    }

    fn undo(&self, _ctx: &Ctx) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Whether etcd answers a linearizable read (it has a leader: what clients need, not only its
/// status) at `min_revision` or later; else why not.
async fn serves(
    access: &crate::host::EtcdAccess,
    min_revision: i64,
) -> anyhow::Result<Result<crate::etcd::EtcdStatus, String>> {
    let (mut client, status) = crate::etcd::connect(access, Duration::from_secs(5)).await?;
    let read = tokio::time::timeout(
        Duration::from_secs(5),
        client.get(
            "health",
            Some(etcd_client::GetOptions::new().with_count_only()),
        ),
    )
    .await;
    let revision = match read {
        Ok(Ok(r)) => r.header().map_or(status.revision, |h| h.revision()),
        Ok(Err(e)) => return Ok(Err(format!("it does not serve reads yet: {e}"))),
        Err(_) => return Ok(Err("it does not serve reads yet (no leader?)".into())),
    };
    if revision < min_revision {
        return Ok(Err(format!(
            "it serves revision {revision}, below the backup's {min_revision}: is it the old data?"
        )));
    }
    Ok(Ok(status))
}

fn wait_serving(t: &EtcdTarget, min_revision: i64, ctx: &Ctx) -> anyhow::Result<()> {
    let timeout = ctx.wait_timeout;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let access = t.access();
    let deadline = Instant::now() + timeout;
    loop {
        let last = match rt.block_on(serves(&access, min_revision)) {
            Ok(Ok(s)) => {
                tracing::info!(endpoint = %t.endpoint, revision = s.revision, member = %s.member_id, "etcd serves the restored data");
                return Ok(());
            }
            Ok(Err(why)) => why,
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() >= deadline {
            anyhow::bail!(
                "etcd at {} did not serve within {}s ({last}); check its logs (crictl logs, journalctl -u kubelet), then `{}` waits again \
                 (with --etcd-endpoint/--etcd-cacert/--etcd-cert/--etcd-key if it must be reached otherwise)",
                t.endpoint,
                timeout.as_secs(),
                ctx.continue_cmd
            );
        }
        std::thread::sleep(Duration::from_millis(50)); // readiness poll, bounded above
    }
}
