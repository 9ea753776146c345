//! The write probe of an S3 store (`cpbackup doctor`): the bucket's Object Lock configuration
//! and default retention, a small probe object put and removed again, and the store's clock as
//! its `Date` header gives it (SigV4 signatures fail when the node's clock is off by more than
//! 15 minutes, and Object Lock retention dates are computed from the node's clock).

use std::sync::{Arc, Mutex};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ChecksumAlgorithm;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeDeserializationInterceptorContextRef;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

use super::{S3Store, describe};
use crate::store::Probe;
use crate::store::bridge::block;

/// Keeps the `Date` header of the response it sees.
#[derive(Debug, Clone, Default)]
struct DateHeader(Arc<Mutex<Option<String>>>);

impl Intercept for DateHeader {
    fn name(&self) -> &'static str {
        "cpbackup-date-header"
    }

    fn read_before_deserialization(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(d) = context.response().headers().get("date")
            && let Ok(mut slot) = self.0.lock()
        {
            *slot = Some(d.to_owned());
        }
        Ok(())
    }
}

/// An HTTP date (RFC 7231 IMF-fixdate) as Unix seconds.
pub(crate) fn parse_http_date(s: &str) -> Option<i64> {
    aws_sdk_s3::primitives::DateTime::from_str(
        s.trim(),
        aws_sdk_s3::primitives::DateTimeFormat::HttpDate,
    )
    .ok()
    .map(|d| d.secs())
}

impl S3Store {
    pub(super) fn write_probe(&self, cluster: &str, node: &str) -> anyhow::Result<Probe> {
        let mut probe = Probe {
            allow_mutable: self.settings.allow_mutable,
            ..Probe::default()
        };
        let (enabled, default) = self.lock_configuration()?;
        probe.object_lock = Some(enabled);
        probe.default_retention = default;
        let key = self.key(&format!("{cluster}/{node}/.cpbackup-probe"));
        let date = DateHeader::default();
        block(
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(&key)
                .checksum_algorithm(ChecksumAlgorithm::Sha256)
                .content_type("text/plain")
                .body(ByteStream::from_static(b"cpbackup doctor write probe\n"))
                .customize()
                .interceptor(date.clone())
                .send(),
        )
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot write to s3://{}/{key}: {}; backups need s3:PutObject (and s3:PutObjectRetention) on the prefix",
                self.bucket,
                describe(&e)
            )
        })?;
        probe.server_time = date
            .0
            .lock()
            .ok()
            .and_then(|d| d.as_deref().and_then(parse_http_date));
        // A delete marker: the probe vanishes from listings; a version the default retention
        // locked stays until it expires, as every bundle does.
        if let Err(e) = block(
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(&key)
                .send(),
        ) {
            tracing::warn!(key = %key, error = %describe(&e), "could not remove the write probe");
        }
        Ok(probe)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn http_dates_parse() {
        assert_eq!(
            super::parse_http_date("Tue, 01 Dec 2026 20:00:00 GMT"),
            Some(1_796_155_200)
        );
        assert_eq!(super::parse_http_date("yesterday"), None);
    }
}
