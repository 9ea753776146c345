//! Object versions: ListObjectVersions paginated and grouped by key, the original (oldest)
//! version every read is pinned to, and downloads of one version as a blocking reader.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::pin::Pin;
use std::time::SystemTime;

use aws_sdk_s3::primitives::DateTime;
use tokio::io::AsyncReadExt;

use crate::store::bridge::block;
use crate::store::record::MAX_RECORD_BYTES;
use crate::store::{Record, Store};

use super::{S3Store, describe, sdk_error};

/// One object version as ListObjectVersions reports it.
#[derive(Debug, Clone)]
pub(super) struct Version {
    pub(super) id: String,
    pub(super) size: u64,
    pub(super) modified: i64,
}

impl Version {
    pub(super) fn vid(&self) -> Option<String> {
        version_param(&self.id)
    }
}

/// A VersionId as a request parameter: "null" is the version of an object written without
/// versioning (or before it was enabled), which is asked for with no VersionId at all.
pub(super) fn version_param(id: &str) -> Option<String> {
    (id != "null").then(|| id.to_owned())
}

/// Every version of one key, and whether a delete marker hides it.
#[derive(Debug, Default)]
pub(super) struct Versions {
    pub(super) versions: Vec<Version>,
    pub(super) deleted: bool,
}

impl Versions {
    /// The version the backup wrote: the oldest (the first PutObject; Object Lock keeps it).
    /// S3 lists a key's versions newest first, so among versions of the same time (the
    /// server's clock has seconds, not always more) the one listed last is the oldest.
    pub(super) fn original(&self) -> Option<&Version> {
        self.versions
            .iter()
            .enumerate()
            .min_by_key(|(i, v)| (v.modified, std::cmp::Reverse(*i)))
            .map(|(_, v)| v)
    }
    /// A key written again (or hidden by a delete marker) after the backup: tampering.
    pub(super) fn overwritten(&self) -> bool {
        self.versions.len() > 1 || self.deleted
    }
}

impl S3Store {
    /// Aborts the multipart uploads under `prefix` (those started before `before`, if given).
    pub(super) fn abort_uploads(
        &self,
        prefix: &str,
        before: Option<SystemTime>,
    ) -> anyhow::Result<usize> {
        let cutoff = before.map(|t| DateTime::from(t).secs());
        let mut n = 0;
        let mut markers: (Option<String>, Option<String>) = (None, None);
        loop {
            let out = block(
                self.client
                    .list_multipart_uploads()
                    .bucket(&self.bucket)
                    .prefix(prefix)
                    .set_key_marker(markers.0.clone())
                    .set_upload_id_marker(markers.1.clone())
                    .send(),
            )
            .map_err(|e| {
                anyhow::anyhow!(
                    "listing unfinished uploads under {prefix:?}: {}",
                    describe(&e)
                )
            })?;
            for u in out.uploads() {
                let old_enough = cutoff.is_none_or(|c| u.initiated().is_some_and(|t| t.secs() < c));
                if let (true, Some(key), Some(id)) = (old_enough, u.key(), u.upload_id()) {
                    block(
                        self.client
                            .abort_multipart_upload()
                            .bucket(&self.bucket)
                            .key(key)
                            .upload_id(id)
                            .send(),
                    )
                    .map_err(|e| {
                        anyhow::anyhow!("aborting the unfinished upload of {key}: {}", describe(&e))
                    })?;
                    n += 1;
                }
            }
            if out.is_truncated() != Some(true) {
                return Ok(n);
            }
            markers = (
                out.next_key_marker().map(str::to_owned),
                out.next_upload_id_marker().map(str::to_owned),
            );
        }
    }

    /// Every version of every key under `prefix` (relative to it; `""` is `prefix` itself), in
    /// one paginated ListObjectVersions pass.
    pub(super) fn versions(&self, prefix: &str) -> anyhow::Result<BTreeMap<String, Versions>> {
        let mut out: BTreeMap<String, Versions> = BTreeMap::new();
        let mut markers: (Option<String>, Option<String>) = (None, None);
        loop {
            let page = block(
                self.client
                    .list_object_versions()
                    .bucket(&self.bucket)
                    .prefix(prefix)
                    .set_key_marker(markers.0.clone())
                    .set_version_id_marker(markers.1.clone())
                    .send(),
            )
            .map_err(|e| sdk_error(format!("listing {}", self.location()), &e))?;
            for v in page.versions() {
                if let (Some(k), Some(id)) =
                    (v.key().and_then(|k| k.strip_prefix(prefix)), v.version_id())
                {
                    out.entry(k.to_owned()).or_default().versions.push(Version {
                        id: id.to_owned(),
                        size: v.size().unwrap_or(0).max(0) as u64,
                        modified: v
                            .last_modified()
                            .map(|t| t.secs() * 1000 + i64::from(t.subsec_nanos() / 1_000_000))
                            .unwrap_or(0),
                    });
                }
            }
            for m in page.delete_markers() {
                if let Some(k) = m.key().and_then(|k| k.strip_prefix(prefix)) {
                    out.entry(k.to_owned()).or_default().deleted = true;
                }
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            markers = (
                page.next_key_marker().map(str::to_owned),
                page.next_version_id_marker().map(str::to_owned),
            );
        }
        // Only keys with a version (a key with just delete markers holds nothing).
        out.retain(|_, v| !v.versions.is_empty());
        Ok(out)
    }

    /// Streams one version of `key` (the current one for `None`).
    pub(super) fn download(
        &self,
        key: &str,
        version: Option<String>,
    ) -> anyhow::Result<Box<dyn Read + Send>> {
        let out = block(
            self.client
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .set_version_id(version)
                .send(),
        )
        .map_err(|e| sdk_error(format!("downloading {key}"), &e))?;
        Ok(Box::new(S3Reader {
            inner: Box::pin(out.body.into_async_read()),
        }))
    }

    /// One version of a record, or why it cannot be used; a version read before comes from
    /// the cache (a version's bytes never change).
    pub(super) async fn fetch_record(&self, rel: &str, version: &str) -> Result<Record, String> {
        let key = self.key(rel);
        if let Some(r) = self
            .cache
            .record(&key, version)
            .and_then(|b| Record::parse_limited(&b).ok())
        {
            return Ok(r);
        }
        let vid = version_param(version);
        let bytes = async {
            let out = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(&key)
                .set_version_id(vid)
                .send()
                .await
                .map_err(|e| format!("cannot download it: {}", describe(&e)))?;
            let mut buf = Vec::new();
            out.body
                .into_async_read()
                .take(MAX_RECORD_BYTES)
                .read_to_end(&mut buf)
                .await
                .map_err(|e| format!("cannot read it: {e}"))?;
            Ok::<_, String>(buf)
        }
        .await?;
        let record = Record::parse_limited(&bytes)?;
        self.cache.put_record(&key, version, &bytes);
        Ok(record)
    }
}

/// A download read synchronously, streaming (no full copy in memory).
pub(super) struct S3Reader {
    pub(super) inner: Pin<Box<dyn tokio::io::AsyncBufRead + Send>>,
}

impl Read for S3Reader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let inner = &mut self.inner;
        block(async move { inner.read(buf).await })
    }
}
