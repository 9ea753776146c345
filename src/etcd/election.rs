//! One backup per slot per cluster: the masters elect a node through etcd itself.
//!
//! Every daemon asks etcd's lock service for `/cpbackup/<cluster>/lock` with a lease it keeps
//! alive. The holder looks for the slot's marker `/cpbackup/<cluster>/slots/<slot>`: present
//! means another node already backed this slot up, so it lets go; absent means it takes the
//! backup, writes the marker (node, backup name, time; on a lease of its own that outlives the
//! slot) and lets go. A holder that dies stops renewing its lease, etcd releases the lock after
//! the TTL and the next node in line finds no marker and takes the slot; a holder whose backup
//! fails writes no marker, so the next node tries. Raft orders the lock, so two live nodes never
//! hold it at once; a holder cut off from etcd for longer than the TTL may finish a backup that
//! another node repeats (a duplicate, never a gap).

use std::time::Duration;

use anyhow::Context;
use etcd_client::{Client, LockOptions, PutOptions};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

/// What the node that took a slot wrote.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SlotMarker {
    pub node: String,
    pub backup: String,
    /// RFC 3339 time the backup finished.
    pub finished: String,
}

/// The outcome of asking for a slot.
pub enum Claim {
    /// This node holds the lock and the slot is not done: take the backup, then `finish`.
    Won(Leadership),
    /// Another node already backed this slot up.
    Done(SlotMarker),
    /// The lock did not come free before the deadline.
    TimedOut,
}

/// The held lock; release it with [`Election::finish`]. If dropped instead (the task was
/// aborted), the lease stops being renewed and etcd frees the lock after the TTL.
pub struct Leadership {
    lease: i64,
    lock_key: Vec<u8>,
    keepalive: JoinHandle<()>,
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.keepalive.abort();
    }
}

pub struct Election {
    client: Client,
    prefix: String,
    ttl: Duration,
}

impl Election {
    pub fn new(client: Client, cluster: &str, ttl: Duration) -> Self {
        Election {
            client,
            prefix: format!("/cpbackup/{cluster}/"),
            ttl,
        }
    }

    fn marker_key(&self, slot: &str) -> String {
        format!("{}slots/{slot}", self.prefix)
    }

    /// Waits up to `wait` for the cluster lock, then checks the slot's marker.
    pub async fn claim(&mut self, slot: &str, wait: Duration) -> anyhow::Result<Claim> {
        let ttl = self.ttl.as_secs().max(2) as i64;
        let lease = self
            .client
            .lease_grant(ttl, None)
            .await
            .context("etcd lease grant for the backup election")?
            .id();
        let keepalive = self.spawn_keepalive(lease).await?;
        let lock_name = format!("{}lock", self.prefix);
        let locked = tokio::time::timeout(
            wait,
            self.client
                .lock(lock_name, Some(LockOptions::new().with_lease(lease))),
        )
        .await;
        let lock_key = match locked {
            Err(_) => {
                keepalive.abort();
                let _ = self.client.lease_revoke(lease).await;
                return Ok(Claim::TimedOut);
            }
            Ok(Err(e)) => {
                keepalive.abort();
                let _ = self.client.lease_revoke(lease).await;
                return Err(e).context("etcd lock for the backup election");
            }
            Ok(Ok(r)) => r.key().to_vec(),
        };
        let held = Leadership {
            lease,
            lock_key,
            keepalive,
        };
        match self.marker(slot).await {
            Ok(Some(m)) => {
                self.release(held).await;
                Ok(Claim::Done(m))
            }
            Ok(None) => Ok(Claim::Won(held)),
            Err(e) => {
                self.release(held).await;
                Err(e)
            }
        }
    }

    /// The slot's marker, if some node finished it.
    pub async fn marker(&mut self, slot: &str) -> anyhow::Result<Option<SlotMarker>> {
        let r = self
            .client
            .get(self.marker_key(slot), None)
            .await
            .context("reading the slot marker from etcd")?;
        Ok(r.kvs()
            .first()
            .and_then(|kv| serde_json::from_slice(kv.value()).ok()))
    }

    /// Writes the marker (when the backup succeeded) and releases the lock. The marker lives on
    /// a lease of `keep` so old slots disappear by themselves.
    pub async fn finish(
        &mut self,
        held: Leadership,
        slot: &str,
        marker: Option<&SlotMarker>,
        keep: Duration,
    ) -> anyhow::Result<()> {
        let mut result = Ok(());
        if let Some(m) = marker {
            result = self.put_marker(slot, m, keep).await;
        }
        self.release(held).await;
        result
    }

    async fn put_marker(
        &mut self,
        slot: &str,
        m: &SlotMarker,
        keep: Duration,
    ) -> anyhow::Result<()> {
        let lease = self
            .client
            .lease_grant(keep.as_secs().max(60) as i64, None)
            .await
            .context("etcd lease grant for the slot marker")?
            .id();
        self.client
            .put(
                self.marker_key(slot),
                serde_json::to_vec(m)?,
                Some(PutOptions::new().with_lease(lease)),
            )
            .await
            .context("writing the slot marker to etcd")?;
        Ok(())
    }

    async fn release(&mut self, held: Leadership) {
        if let Err(e) = self.client.unlock(held.lock_key.clone()).await {
            tracing::warn!(error = %e, "could not unlock the backup election; it frees itself when the lease expires");
        }
        held.keepalive.abort();
        let _ = self.client.lease_revoke(held.lease).await;
    }

    async fn spawn_keepalive(&mut self, lease: i64) -> anyhow::Result<JoinHandle<()>> {
        let (mut keeper, mut stream) = self
            .client
            .lease_keep_alive(lease)
            .await
            .context("etcd lease keep-alive for the backup election")?;
        let every = (self.ttl / 3).max(Duration::from_millis(500));
        Ok(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if keeper.keep_alive().await.is_err() {
                    tracing::warn!("lost the election lease keep-alive stream");
                    return;
                }
                match stream.message().await {
                    Ok(Some(r)) if r.ttl() > 0 => {}
                    _ => {
                        tracing::warn!(
                            "the election lease expired; another node may take this slot too"
                        );
                        return;
                    }
                }
            }
        }))
    }
}
