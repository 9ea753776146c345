//! Cluster membership for `restore --rejoin`, through one member of the restored cluster: the
//! member list, adding a member (as a learner where the cluster can: etcd 3.4+), promoting it,
//! removing it, and the `--initial-cluster` a joining member starts with. Every call has a
//! timeout, so a dead or firewalled recovery member fails fast with what to check.

use std::time::Duration;

use anyhow::Context;
use etcd_client::{Client, MemberAddOptions};

use crate::host::EtcdAccess;

/// One member as the cluster lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Member {
    /// Member id.
    pub id: u64,
    /// Its name; empty until the member has started and joined.
    pub name: String,
    /// Peer URLs.
    pub peer_urls: Vec<String>,
    /// Client URLs; empty until started.
    pub client_urls: Vec<String>,
    /// A raft learner (not voting yet).
    pub learner: bool,
}

impl Member {
    /// Whether the member has joined (etcd names it once it has).
    pub fn started(&self) -> bool {
        !self.name.is_empty()
    }
}

/// A client of one member, with the timeout every call gets.
pub struct Cluster {
    client: Client,
    timeout: Duration,
    /// The member's etcd version (to know whether learners exist).
    pub version: String,
    /// The revision it served when connected.
    pub revision: i64,
    endpoint: String,
}

/// Runs `f` on a small runtime of its own (the restore steps are synchronous).
pub fn block_on<T>(f: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

impl Cluster {
    /// Connects to the member at `access` and asks for its status.
    pub async fn connect(access: &EtcdAccess, timeout: Duration) -> anyhow::Result<Cluster> {
        let (client, status) = super::connect(access, timeout).await?;
        Ok(Cluster {
            client,
            timeout,
            version: status.version,
            revision: status.revision,
            endpoint: access.endpoint.clone(),
        })
    }

    async fn call<T>(
        &self,
        what: &str,
        f: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
    ) -> anyhow::Result<T> {
        match tokio::time::timeout(self.timeout, f).await {
            Err(_) => anyhow::bail!(
                "{what} through {}: no answer within {}s",
                self.endpoint,
                self.timeout.as_secs()
            ),
            Ok(r) => r.with_context(|| format!("{what} through {}", self.endpoint)),
        }
    }

    /// Every member.
    pub async fn members(&mut self) -> anyhow::Result<Vec<Member>> {
        let mut c = self.client.clone();
        let r = self.call("listing the members", c.member_list()).await?;
        Ok(r.members().iter().map(member).collect())
    }

    /// Whether this cluster has raft learners (etcd 3.4 and later).
    pub fn has_learners(&self) -> bool {
        let mut v = self
            .version
            .split('.')
            .map(|p| p.parse::<u32>().unwrap_or(0));
        let (major, minor) = (v.next().unwrap_or(0), v.next().unwrap_or(0));
        (major, minor) >= (3, 4)
    }

    /// Adds a member with `peer_url` (a learner if asked); the cluster's members after it.
    pub async fn add(&mut self, peer_url: &str, learner: bool) -> anyhow::Result<Vec<Member>> {
        let opts = learner.then(|| MemberAddOptions::new().with_is_learner());
        let mut c = self.client.clone();
        let urls = [peer_url];
        let r = self
            .call(
                &format!("adding the member {peer_url}"),
                c.member_add(urls, opts),
            )
            .await?;
        Ok(r.member_list().iter().map(member).collect())
    }

    /// Promotes a learner to a voting member. etcd refuses while the learner is behind.
    pub async fn promote(&mut self, id: u64) -> anyhow::Result<()> {
        let mut c = self.client.clone();
        self.call(&format!("promoting member {id:x}"), c.member_promote(id))
            .await
            .map(|_| ())
    }

    /// Removes a member.
    pub async fn remove(&mut self, id: u64) -> anyhow::Result<()> {
        let mut c = self.client.clone();
        self.call(&format!("removing member {id:x}"), c.member_remove(id))
            .await
            .map(|_| ())
    }
}

fn member(m: &etcd_client::Member) -> Member {
    Member {
        id: m.id(),
        name: m.name().to_owned(),
        peer_urls: m.peer_urls().to_vec(),
        client_urls: m.client_urls().to_vec(),
        learner: m.is_learner(),
    }
}

/// The member with this peer URL.
pub fn find<'a>(members: &'a [Member], peer_url: &str) -> Option<&'a Member> {
    members
        .iter()
        .find(|m| m.peer_urls.iter().any(|u| same_url(u, peer_url)))
}

fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// `--initial-cluster` for the member `name` at `peer_url` joining `members` (as etcdctl
/// prints after `member add`): every member's name and peer URLs, the unstarted one as `name`.
pub fn initial_cluster(members: &[Member], name: &str, peer_url: &str) -> String {
    let mut parts = Vec::new();
    for m in members {
        if m.peer_urls.iter().any(|u| same_url(u, peer_url)) {
            parts.push(format!("{name}={peer_url}"));
        } else if m.started() {
            parts.extend(m.peer_urls.iter().map(|u| format!("{}={u}", m.name)));
        } // else: another member added but never started, not part of this start
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: u64, name: &str, peer: &str) -> Member {
        Member {
            id,
            name: name.into(),
            peer_urls: vec![peer.into()],
            client_urls: Vec::new(),
            learner: false,
        }
    }

    #[test]
    fn initial_cluster_names_every_started_member_and_the_new_one() {
        let ms = [
            m(1, "cp-1", "https://10.0.0.5:2380"),
            m(2, "", "https://10.0.0.6:2380/"),
            m(3, "", "https://10.0.0.7:2380"),
        ];
        assert_eq!(
            initial_cluster(&ms, "cp-2", "https://10.0.0.6:2380"),
            "cp-1=https://10.0.0.5:2380,cp-2=https://10.0.0.6:2380"
        );
        assert_eq!(find(&ms, "https://10.0.0.6:2380").map(|x| x.id), Some(2));
        assert!(find(&ms, "https://10.0.0.8:2380").is_none());
    }
}
