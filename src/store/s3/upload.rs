//! One bundle streaming up as a multipart upload: parts with CRC32C, two in flight, completed
//! with `If-None-Match: *`, the lock set and read back, aborted on any error or drop.

use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, Write};
use std::pin::Pin;

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, ObjectLockMode,
    ObjectLockRetention, ObjectLockRetentionMode,
};

use crate::store::bridge::block;
use crate::store::{Record, Upload};

use super::{PARTS_IN_FLIGHT, describe, part_size_for};
use crate::store::bridge::runtime;

pub(super) type PartFuture = Pin<Box<dyn Future<Output = anyhow::Result<CompletedPart>> + Send>>;

pub(super) struct S3Upload {
    pub(super) client: Client,
    pub(super) bucket: String,
    pub(super) key: String,
    pub(super) upload_id: String,
    /// Size of the part being filled.
    pub(super) part_size: usize,
    pub(super) base_part_size: usize,
    pub(super) buf: Vec<u8>,
    pub(super) next_part: i32,
    pub(super) in_flight: VecDeque<tokio::task::JoinHandle<anyhow::Result<CompletedPart>>>,
    pub(super) parts: Vec<CompletedPart>,
    pub(super) retention: Option<(ObjectLockMode, DateTime)>,
    pub(super) finished: bool,
}

impl S3Upload {
    pub(super) fn part_future(&mut self, body: Vec<u8>) -> PartFuture {
        let n = self.next_part;
        self.next_part += 1;
        let (client, bucket, key, id) = (
            self.client.clone(),
            self.bucket.clone(),
            self.key.clone(),
            self.upload_id.clone(),
        );
        Box::pin(async move {
            let out = client
                .upload_part()
                .bucket(bucket)
                .key(&key)
                .upload_id(id)
                .part_number(n)
                .checksum_algorithm(ChecksumAlgorithm::Crc32C)
                .body(ByteStream::from(body))
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("uploading part {n} of {key}: {}", describe(&e)))?;
            Ok(CompletedPart::builder()
                .part_number(n)
                .set_e_tag(out.e_tag().map(str::to_owned))
                .set_checksum_crc32_c(out.checksum_crc32_c().map(str::to_owned))
                .build())
        })
    }

    pub(super) fn wait_one(&mut self) -> io::Result<()> {
        if let Some(h) = self.in_flight.pop_front() {
            let part = block(h)
                .map_err(|e| io::Error::other(format!("upload task failed: {e}")))?
                .map_err(|e| io::Error::other(format!("{e:#}")))?;
            self.parts.push(part);
        }
        Ok(())
    }

    pub(super) fn send_part(&mut self) -> io::Result<()> {
        while self.in_flight.len() >= PARTS_IN_FLIGHT {
            self.wait_one()?;
        }
        let fut = {
            // The part about to be sent is `next_part`; the buffer after it may be larger.
            let next_size = part_size_for(self.base_part_size, self.next_part + 1);
            self.part_size = next_size;
            let body = std::mem::replace(&mut self.buf, Vec::with_capacity(next_size));
            self.part_future(body)
        };
        self.in_flight.push_back(runtime().spawn(fut));
        Ok(())
    }
}

impl Write for S3Upload {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(self.part_size - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == self.part_size {
            self.send_part()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Upload for S3Upload {
    fn commit(mut self: Box<Self>, record: &Record) -> anyhow::Result<()> {
        if !self.buf.is_empty() || self.next_part == 1 {
            self.send_part()?;
        }
        while !self.in_flight.is_empty() {
            self.wait_one()?;
        }
        let parts = std::mem::take(&mut self.parts);
        let done = block(
            self.client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(&self.key)
                .upload_id(&self.upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .if_none_match("*")
                .send(),
        )
        .map_err(|e| anyhow::anyhow!("completing the upload of {}: {}", self.key, describe(&e)))?;
        self.finished = true;
        let mut record = record.clone();
        record.bundle_version_id = done.version_id().map(str::to_owned);
        if let Some((mode, until)) = self.retention.clone() {
            self.lock_version(done.version_id(), mode, until, &mut record)?;
        }
        let json = serde_json::to_vec_pretty(&record)?;
        let rec_key = format!("{}.json", self.key);
        let mut put = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&rec_key)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .if_none_match("*")
            .content_type("application/json")
            .body(ByteStream::from(json));
        if let Some((mode, until)) = self.retention.clone() {
            put = put
                .object_lock_mode(mode)
                .object_lock_retain_until_date(until);
        }
        block(put.send())
            .map_err(|e| anyhow::anyhow!("writing the record {rec_key}: {}", describe(&e)))?;
        Ok(())
    }
}

impl S3Upload {
    /// Sets the retention on the finished version (a no-op on AWS, needed where the server
    /// ignores the lock of multipart uploads), reads it back, and notes it in the record.
    pub(super) fn lock_version(
        &self,
        version_id: Option<&str>,
        mode: ObjectLockMode,
        until: DateTime,
        record: &mut Record,
    ) -> anyhow::Result<()> {
        block(
            self.client
                .put_object_retention()
                .bucket(&self.bucket)
                .key(&self.key)
                .set_version_id(version_id.map(str::to_owned))
                .retention(
                    ObjectLockRetention::builder()
                        .mode(ObjectLockRetentionMode::from(mode.as_str()))
                        .retain_until_date(until)
                        .build(),
                )
                .send(),
        )
        .map_err(|e| anyhow::anyhow!("setting the retention of {}: {}", self.key, describe(&e)))?;
        let h = block(
            self.client
                .head_object()
                .bucket(&self.bucket)
                .key(&self.key)
                .send(),
        )
        .map_err(|e| anyhow::anyhow!("HeadObject {}: {}", self.key, describe(&e)))?;
        if h.object_lock_mode().is_none() {
            anyhow::bail!(
                "{} was written but the server reports no Object Lock on it; the backup is NOT immutable",
                self.key
            );
        }
        record.lock_mode = h.object_lock_mode().map(|m| m.as_str().to_owned());
        record.retain_until = h
            .object_lock_retain_until_date()
            .and_then(|d| d.fmt(aws_sdk_s3::primitives::DateTimeFormat::DateTime).ok());
        Ok(())
    }
}

impl Drop for S3Upload {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        for h in self.in_flight.drain(..) {
            h.abort();
        }
        let r = block(
            self.client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&self.key)
                .upload_id(&self.upload_id)
                .send(),
        );
        if let Err(e) = r {
            tracing::warn!(key = %self.key, error = %describe(&e), "could not abort the multipart upload; prune will clean it up");
        }
    }
}
