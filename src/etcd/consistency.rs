//! Before a snapshot: every member's key-value hash at one common revision (`HashKV`), so no
//! backup is taken of a member that disagrees with the others (a corruption bug, a member
//! restored wrongly) without it being refused or marked. Also the highest raft index any
//! member reports, which a restore's revision bump and OpenShift's `revision.json` use.
//!
//! Members that cannot be reached are named and left out: a backup during a partial outage is
//! exactly when one is needed. Hashes are compared only between members at the same
//! compaction revision (etcd's own corruption check does the same).

use std::time::{Duration, Instant};

use etcd_client::Client;
use serde::{Deserialize, Serialize};

use crate::host::EtcdAccess;

/// One member's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberHash {
    /// Member name.
    pub name: String,
    /// Client URL asked.
    pub endpoint: String,
    /// `HashKV` at the common revision.
    pub hash: u32,
    /// Its compaction revision when hashing.
    pub compact_revision: i64,
    /// Its raft index.
    pub raft_index: u64,
}

/// What the check found, as the bundle's manifest records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consistency {
    /// The revision every member hashed up to.
    pub revision: i64,
    /// The members that answered.
    pub members: Vec<MemberHash>,
    /// Members that could not be asked, with why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreachable: Vec<String>,
    /// The highest raft index seen.
    pub max_raft_index: u64,
    /// Whether the hashes agree (among members at the same compaction).
    pub consistent: bool,
}

impl Consistency {
    /// One line naming each member's hash, for the refusal.
    pub fn describe(&self) -> String {
        let ms: Vec<String> = self
            .members
            .iter()
            .map(|m| {
                format!(
                    "{} {:08x} (compacted at {})",
                    m.name, m.hash, m.compact_revision
                )
            })
            .collect();
        format!("at revision {}: {}", self.revision, ms.join(", "))
    }
}

/// Asks every started voting member for its hash at `revision` (the local member's), through
/// client URLs from the member list and the local member's TLS settings.
pub async fn check(
    local: &Client,
    access: &EtcdAccess,
    revision: i64,
    timeout: Duration,
) -> anyhow::Result<Consistency> {
    let mut c = local.clone();
    let list = tokio::time::timeout(timeout, c.member_list())
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "listing the members: no answer within {}s",
                timeout.as_secs()
            )
        })??;
    // Every member at once: HashKV reads a member's whole keyspace.
    let mut asked = tokio::task::JoinSet::new();
    let mut unreachable = Vec::new();
    for m in list.members() {
        if m.is_learner() || m.name().is_empty() {
            continue;
        }
        let name = m.name().to_owned();
        let Some(url) = m.client_urls().first().cloned() else {
            unreachable.push(format!("{name} (no client URL)"));
            continue;
        };
        let mut a = access.clone();
        a.endpoint = url.clone();
        asked.spawn(async move {
            match hash_of(&a, revision, timeout).await {
                Ok((hash, compact_revision, raft_index)) => Ok(MemberHash {
                    name,
                    endpoint: url,
                    hash,
                    compact_revision,
                    raft_index,
                }),
                Err(e) => Err(format!("{name} ({url}): {e:#}")),
            }
        });
    }
    let mut members = Vec::new();
    while let Some(r) = asked.join_next().await {
        match r {
            Ok(Ok(m)) => members.push(m),
            Ok(Err(why)) => unreachable.push(why),
            Err(e) => unreachable.push(format!("a member's check failed: {e}")),
        }
    }
    members.sort_by(|a, b| a.name.cmp(&b.name));
    let consistent = members.iter().all(|a| {
        members
            .iter()
            .filter(|b| b.compact_revision == a.compact_revision)
            .all(|b| b.hash == a.hash)
    });
    Ok(Consistency {
        revision,
        max_raft_index: members.iter().map(|m| m.raft_index).max().unwrap_or(0),
        members,
        unreachable,
        consistent,
    })
}

/// One member's hash at `revision`; a member still behind it is asked again until `timeout`.
async fn hash_of(
    access: &EtcdAccess,
    revision: i64,
    timeout: Duration,
) -> anyhow::Result<(u32, i64, u64)> {
    let deadline = Instant::now() + timeout;
    let (mut client, status) = super::connect(access, timeout).await?;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, client.hash_kv(revision)).await {
            Ok(Ok(h)) => return Ok((h.hash(), h.compact_version(), status.raft_index)),
            Ok(Err(e))
                if e.to_string().contains("future revision") && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await; // it is catching up
            }
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => anyhow::bail!("no hash within {}s", timeout.as_secs()),
        }
    }
}
