//! Connecting to one etcd member with mTLS and asking for its status, both with timeouts so a
//! dead or firewalled etcd fails fast with a message that says what to check.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};

use crate::host::EtcdAccess;

/// What the member reports before the snapshot starts.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct EtcdStatus {
    pub endpoint: String,
    pub version: String,
    pub revision: i64,
    pub member_id: String,
    pub cluster_id: String,
    pub db_size: i64,
    pub raft_index: u64,
}

fn read(path: &Path, what: &str, flag: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| {
        format!(
            "cannot read the etcd {what} {}; check the file or pass {flag} FILE",
            path.display()
        )
    })
}

/// Opens a client and proves the member answers, within `timeout`.
pub async fn connect(
    access: &EtcdAccess,
    timeout: Duration,
) -> anyhow::Result<(Client, EtcdStatus)> {
    let mut opts = ConnectOptions::new()
        .with_connect_timeout(timeout)
        .with_keep_alive(Duration::from_secs(10), timeout);
    if access.endpoint.starts_with("https://") {
        let mut tls = TlsOptions::new();
        if let Some(ca) = &access.cacert {
            tls = tls.ca_certificate(Certificate::from_pem(read(ca, "CA", "--etcd-cacert")?));
        }
        if let (Some(c), Some(k)) = (&access.cert, &access.key) {
            tls = tls.identity(Identity::from_pem(
                read(c, "client certificate", "--etcd-cert")?,
                read(k, "client key", "--etcd-key")?,
            ));
        }
        opts = opts.with_tls(tls);
    }
    let ep = access.endpoint.clone();
    let plain = !access.endpoint.starts_with("https://");
    let hint = || {
        if plain {
            return format!(
                "etcd at {ep} did not answer: check that etcd runs and listens there (plain HTTP: no \
                 certificates are used; give an https:// URL if etcd serves TLS)"
            );
        }
        format!(
            "etcd at {ep} did not answer: check that etcd runs and listens there, that the CA ({}) signed its \
             serving certificate and that it accepts the client certificate ({})",
            access
                .cacert
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "none".into()),
            access
                .cert
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "none".into()),
        )
    };
    let work = async {
        let client = Client::connect([ep.as_str()], Some(opts)).await?;
        let st = client.maintenance_client().status().await?;
        Ok::<_, etcd_client::Error>((client, st))
    };
    let (client, st) = match tokio::time::timeout(timeout, work).await {
        Err(_) => anyhow::bail!("{} (no answer within {}s)", hint(), timeout.as_secs()),
        Ok(Err(e)) => return Err(anyhow::anyhow!("{e}")).context(hint()),
        Ok(Ok(v)) => v,
    };
    let hdr = st.header().context("etcd status carried no header")?;
    let status = EtcdStatus {
        endpoint: ep,
        version: st.version().to_owned(),
        revision: hdr.revision(),
        member_id: format!("{:016x}", hdr.member_id()),
        cluster_id: format!("{:016x}", hdr.cluster_id()),
        db_size: st.db_size(),
        raft_index: st.raft_index(),
    };
    Ok((client, status))
}
