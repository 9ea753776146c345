//! The snapshot stream (Maintenance.Snapshot) turned into a blocking `Read` for the bundle writer.
//!
//! etcd streams the bbolt image in chunks, each carrying `remaining_bytes`, then one more message
//! with the image's 32-byte SHA-256. So the file's size is known from the first message:
//! `len(blob) + remaining_bytes + 32`. An async task pulls messages into a small bounded channel
//! (memory stays flat whatever the database size); a stalled stream or a cancellation becomes
//! an error on the reading side, and a stream that ends early is reported with byte counts.

use std::io;
use std::time::Duration;

use etcd_client::Client;
use tokio::sync::{mpsc, watch};

/// Chunks buffered between the network task and the writer (etcd sends 32 KiB chunks).
const CHANNEL_CHUNKS: usize = 64;

/// A running snapshot; `total` is the size of the file it yields (image + trailer).
pub struct SnapshotStream {
    pub total: u64,
    pending: Vec<u8>,
    pos: usize,
    delivered: u64,
    rx: mpsc::Receiver<io::Result<Vec<u8>>>,
}

/// Starts the snapshot. `cancel` turning true aborts it (SIGINT/SIGTERM).
pub async fn start(
    client: &Client,
    stall: Duration,
    mut cancel: watch::Receiver<bool>,
) -> anyhow::Result<SnapshotStream> {
    let mut m = client.maintenance_client();
    let mut stream = tokio::time::timeout(stall, m.snapshot())
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "etcd did not start the snapshot within {}s",
                stall.as_secs()
            )
        })?
        .map_err(|e| anyhow::anyhow!("etcd refused the snapshot request: {e}"))?;
    let first = tokio::time::timeout(stall, stream.message())
        .await
        .map_err(|_| anyhow::anyhow!("etcd sent no snapshot data within {}s", stall.as_secs()))?
        .map_err(|e| anyhow::anyhow!("snapshot stream failed: {e}"))?
        .ok_or_else(|| {
            anyhow::anyhow!("etcd closed the snapshot stream before sending any data")
        })?;
    let total = first.blob().len() as u64 + first.remaining_bytes() + 32;
    let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
    let first_blob = first.blob().to_vec();
    tokio::spawn(async move {
        if !first_blob.is_empty() && tx.send(Ok(first_blob)).await.is_err() {
            return;
        }
        loop {
            let msg = tokio::select! {
                _ = cancelled(&mut cancel) => {
                    let _ = tx.send(Err(io::Error::other("backup interrupted by signal"))).await;
                    return;
                }
                m = tokio::time::timeout(stall, stream.message()) => m,
            };
            let item = match msg {
                Err(_) => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "etcd snapshot stream stalled: no data for {}s",
                        stall.as_secs()
                    ),
                )),
                Ok(Err(e)) => Err(io::Error::other(format!(
                    "etcd snapshot stream failed: {e}"
                ))),
                Ok(Ok(None)) => return,
                Ok(Ok(Some(r))) => Ok(r.blob().to_vec()),
            };
            let stop = item.is_err();
            if tx.send(item).await.is_err() || stop {
                return;
            }
        }
    });
    Ok(SnapshotStream {
        total,
        pending: Vec::new(),
        pos: 0,
        delivered: 0,
        rx,
    })
}

/// Resolves once `cancel` turns true; never if its sender goes away first.
async fn cancelled(cancel: &mut watch::Receiver<bool>) {
    loop {
        if *cancel.borrow_and_update() {
            return;
        }
        if cancel.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl io::Read for SnapshotStream {
    /// Blocking: call only from a blocking thread (`spawn_blocking`).
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.pending.len() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => {
                    self.pending = chunk;
                    self.pos = 0;
                }
                Some(Err(e)) => return Err(e),
                None if self.delivered == self.total => return Ok(0),
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "etcd closed the snapshot stream after {} of {} bytes (was etcd restarted or killed?)",
                            self.delivered, self.total
                        ),
                    ));
                }
            }
        }
        let n = buf.len().min(self.pending.len() - self.pos);
        if self.delivered + n as u64 > self.total {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "etcd sent more snapshot bytes than the {} it announced",
                    self.total
                ),
            ));
        }
        buf[..n].copy_from_slice(&self.pending[self.pos..self.pos + n]);
        self.pos += n;
        self.delivered += n as u64;
        Ok(n)
    }
}
