//! The write probe of an S3 store (`cpbackup doctor`): the bucket's Object Lock configuration
//! and default retention, a small probe object put and removed again, and the store's clock as
//! its `Date` header gives it (SigV4 signatures fail when the node's clock is off by more than
//! 15 minutes, and Object Lock retention dates are computed from the node's clock).

use std::sync::{Arc, Mutex};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ObjectLockEnabled};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeDeserializationInterceptorContextRef;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

use super::{S3Store, describe, sdk_error};
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
        let lock = block(
            self.client
                .get_object_lock_configuration()
                .bucket(&self.bucket)
                .send(),
        );
        match lock {
            Ok(out) => {
                let c = out.object_lock_configuration();
                probe.object_lock = Some(
                    c.and_then(|c| c.object_lock_enabled())
                        .is_some_and(|e| *e == ObjectLockEnabled::Enabled),
                );
                probe.default_retention = c
                    .and_then(|c| c.rule())
                    .and_then(|r| r.default_retention())
                    .map(|d| {
                        let mode = d.mode().map(|m| m.as_str()).unwrap_or("?");
                        match (d.days(), d.years()) {
                            (Some(n), _) => format!("{mode} {n} days"),
                            (None, Some(n)) => format!("{mode} {n} years"),
                            (None, None) => mode.to_owned(),
                        }
                    });
            }
            Err(e)
                if aws_sdk_s3::error::ProvideErrorMetadata::code(&e)
                    == Some("ObjectLockConfigurationNotFoundError") =>
            {
                probe.object_lock = Some(false);
            }
            Err(e) => {
                return Err(sdk_error(
                    format!(
                        "cannot read the Object Lock configuration of bucket {}",
                        self.bucket
                    ),
                    &e,
                ));
            }
        }
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
