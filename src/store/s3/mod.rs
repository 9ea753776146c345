//! S3 (and S3-compatible) store with Object Lock: `s3://bucket/prefix`.
//!
//! Immutability is checked, not assumed: before writing, the bucket's Object Lock configuration
//! is read and a bucket without it is refused (unless `allow_mutable`). Each bundle streams up as
//! a multipart upload (parts carry a CRC32C the server verifies; two parts in flight bound the
//! memory), completed with `If-None-Match: *` so nothing is overwritten, and aborted on any error
//! or drop. The retention (mode + retain-until) is set on the upload and again on the finished
//! version, then read back with HeadObject: some S3-compatible servers (moto among them) drop the
//! lock of multipart uploads and do not implement GetObjectRetention.
//!
//! The [`Store`] trait is blocking; S3 calls run through [`crate::store::bridge`]. The upload
//! lives in `upload.rs`, version listing and pinned reads in `versions.rs`.

mod cache;
mod probe;
mod upload;
mod versions;

use std::collections::VecDeque;
use std::io::Read;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::DateTime;
use aws_sdk_s3::types::{ChecksumAlgorithm, ObjectLockEnabled, ObjectLockMode};

use crate::error::usage;
use crate::store::bridge::block;
use crate::store::naming::{BUNDLE_EXT, RECORD_EXT};
use crate::store::{BundleName, Listing, Store, Upload, state_of};
use std::path::PathBuf;

use upload::S3Upload;
use versions::{Versions, version_param};

/// Parts in flight per upload; with the part size this bounds an upload's memory.
const PARTS_IN_FLIGHT: usize = 2;
/// First part size. S3 allows 10,000 parts of ≥ 5 MiB; parts grow (see [`part_size_for`]) so
/// that 10,000 of them hold far more than any etcd database (about 740 GiB from 12 MiB).
pub const DEFAULT_PART_SIZE: usize = 12 << 20;
const MIN_PART_SIZE: usize = 5 << 20;
/// Parts double in size every this many parts...
const PARTS_PER_SIZE: i32 = 2000;
/// ...up to this size (memory: PARTS_IN_FLIGHT + 1 parts).
const MAX_PART_SIZE: usize = 256 << 20;

/// Size of part `n` (1-based) when the first parts are `base` bytes.
pub fn part_size_for(base: usize, n: i32) -> usize {
    let doublings = ((n.max(1) - 1) / PARTS_PER_SIZE).min(16) as u32;
    base.saturating_mul(1 << doublings)
        .min(MAX_PART_SIZE.max(base))
}

/// Object Lock mode for new objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LockMode {
    Compliance,
    Governance,
}

/// How to reach and use one S3 store.
#[derive(Debug, Clone)]
pub struct S3Settings {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub path_style: bool,
    pub ca_bundle: Option<PathBuf>,
    pub lock_mode: LockMode,
    pub retain_days: u32,
    pub allow_mutable: bool,
    pub part_size: usize,
    /// Records and lock states read at once when listing.
    pub list_concurrency: usize,
    /// Where records and COMPLIANCE locks already read are remembered between runs (see
    /// `cache.rs`); `None`: ask the store every time.
    pub cache_dir: Option<PathBuf>,
}

/// Default for [`S3Settings::list_concurrency`].
pub const DEFAULT_LIST_CONCURRENCY: usize = 32;

/// The record key beside a bundle key (`….cpb` → `….cpb.json`).
fn record_name(bundle: &str) -> String {
    format!("{}{}", bundle.trim_end_matches(BUNDLE_EXT), RECORD_EXT)
}

impl Default for S3Settings {
    fn default() -> Self {
        S3Settings {
            endpoint: None,
            region: None,
            path_style: false,
            ca_bundle: None,
            lock_mode: LockMode::Compliance,
            retain_days: 30,
            allow_mutable: false,
            part_size: DEFAULT_PART_SIZE,
            list_concurrency: DEFAULT_LIST_CONCURRENCY,
            cache_dir: None,
        }
    }
}

/// `context: what went wrong`; a failure of the node's configuration (see [`first_contact`]) is
/// a usage error (exit 2) with its fix.
pub(super) fn sdk_error<E: ProvideErrorMetadata + std::error::Error + 'static>(
    context: String,
    e: &aws_sdk_s3::error::SdkError<E>,
) -> anyhow::Error {
    match first_contact(e) {
        Some((fix, true)) => crate::error::usage(format!("{context}: {fix}")),
        Some((fix, false)) => anyhow::anyhow!("{context}: {fix}"),
        None => anyhow::anyhow!("{context}: {}", describe(e)),
    }
}

/// The S3 failures of first contact, one line each with the fix, and whether the node's
/// configuration is at fault (no credentials, no region, an untrusted TLS certificate) rather
/// than the network (an endpoint that does not answer, which another try may pass).
fn first_contact<E: std::error::Error + 'static>(
    e: &aws_sdk_s3::error::SdkError<E>,
) -> Option<(String, bool)> {
    let mut text = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        text.push_str(": ");
        text.push_str(&s.to_string());
        src = s.source();
    }
    let t = text.to_ascii_lowercase();
    let (fix, config) = if t.contains("loading credentials") || t.contains("no credentials") {
        (
            "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE \
         (~/.aws/credentials), or run with IRSA / web identity or an instance role",
            true,
        )
    } else if t.contains("region") && (t.contains("missing") || t.contains("no region")) {
        (
            "no AWS region: set region in the store's [[store]] table, --s3-region or AWS_REGION",
            true,
        )
    } else if t.contains("invalid peer certificate")
        || t.contains("unknownissuer")
        || t.contains("certificate")
    {
        (
            "the S3 endpoint's TLS certificate is not trusted: give its CA with --s3-ca-bundle FILE (or \
         ca_bundle in the [[store]] table)",
            true,
        )
    } else if t.contains("connection refused")
        || t.contains("dns error")
        || t.contains("timed out")
        || t.contains("timeout")
    {
        (
            "the S3 endpoint does not answer: check --s3-endpoint (endpoint in the [[store]] table), \
         the network and any proxy",
            false,
        )
    } else {
        return None;
    };
    Some((
        format!("{fix} ({})", text.lines().next().unwrap_or("")),
        config,
    ))
}

fn describe<E: ProvideErrorMetadata + std::error::Error + 'static>(
    e: &aws_sdk_s3::error::SdkError<E>,
) -> String {
    let code = e.code().unwrap_or("");
    let msg = e.message().unwrap_or("");
    let hint = match code {
        "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "AccessDenied" | "ExpiredToken" => {
            "; check the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, web identity or instance role) and the bucket policy"
        }
        "NoSuchBucket" => "; check the bucket name in the store URL",
        _ => "",
    };
    if code.is_empty() {
        if let Some((fix, _)) = first_contact(e) {
            return fix;
        }
        let mut chain = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            chain.push_str(": ");
            chain.push_str(&s.to_string());
            src = s.source();
        }
        chain
    } else {
        format!("{code}: {msg}{hint}")
    }
}

pub struct S3Store {
    client: Client,
    bucket: String,
    prefix: String,
    settings: S3Settings,
    cache: cache::Cache,
}

impl S3Store {
    /// `url` is `s3://bucket[/prefix]`.
    pub fn new(url: &str, settings: S3Settings) -> anyhow::Result<Self> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| usage(format!("{url:?} is not an s3:// URL")))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(usage(format!(
                "store {url:?} names no bucket: write s3://BUCKET/PREFIX"
            )));
        }
        if settings.part_size < MIN_PART_SIZE {
            return Err(usage(format!(
                "S3 part size {} is below S3's 5 MiB minimum",
                settings.part_size
            )));
        }
        let client = block(build_client(settings.clone()))?;
        let prefix = prefix.trim_matches('/').to_owned();
        let cache = cache::Cache::new(
            settings.cache_dir.clone(),
            settings.endpoint.as_deref(),
            bucket,
            &prefix,
        );
        Ok(S3Store {
            client,
            bucket: bucket.to_owned(),
            prefix,
            settings,
            cache,
        })
    }

    fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }

    /// Whether the bucket has Object Lock enabled.
    fn lock_enabled(&self) -> anyhow::Result<bool> {
        Ok(self.lock_configuration()?.0)
    }

    /// The bucket's Object Lock: enabled, and its default retention (`COMPLIANCE 30 days`).
    fn lock_configuration(&self) -> anyhow::Result<(bool, Option<String>)> {
        let r = block(
            self.client
                .get_object_lock_configuration()
                .bucket(&self.bucket)
                .send(),
        );
        match r {
            Ok(out) => {
                let c = out.object_lock_configuration();
                let enabled = c
                    .and_then(|c| c.object_lock_enabled())
                    .is_some_and(|e| *e == ObjectLockEnabled::Enabled);
                let default = c
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
                Ok((enabled, default))
            }
            Err(e) if e.code() == Some("ObjectLockConfigurationNotFoundError") => Ok((false, None)),
            Err(e) => Err(sdk_error(
                format!(
                    "cannot read the Object Lock configuration of bucket {}",
                    self.bucket
                ),
                &e,
            )),
        }
    }

    fn retention(&self) -> (ObjectLockMode, DateTime) {
        let until =
            SystemTime::now() + Duration::from_secs(u64::from(self.settings.retain_days) * 86_400);
        let mode = match self.settings.lock_mode {
            LockMode::Compliance => ObjectLockMode::Compliance,
            LockMode::Governance => ObjectLockMode::Governance,
        };
        (mode, DateTime::from(until))
    }

    /// A version's Object Lock mode and retain-until date: a COMPLIANCE lock still ahead from
    /// the cache, else as the server reports it now (HeadObject).
    async fn lock_state(
        &self,
        key: &str,
        version: &str,
    ) -> anyhow::Result<(Option<String>, Option<String>)> {
        if let Some(until) = self.cache.lock(key, version) {
            return Ok((Some("COMPLIANCE".to_owned()), Some(until)));
        }
        let (_, mode, until) = self.fetch_lock(key, Some(version)).await?;
        self.cache
            .put_lock(key, version, mode.as_deref(), until.as_deref());
        Ok((mode, until))
    }

    /// A version's size, Object Lock mode and retain-until date (HeadObject).
    async fn fetch_lock(
        &self,
        key: &str,
        version: Option<&str>,
    ) -> anyhow::Result<(u64, Option<String>, Option<String>)> {
        let h = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .set_version_id(version.and_then(version_param))
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("HeadObject {key}: {}", describe(&e)))?;
        Ok((
            h.content_length().unwrap_or(0).max(0) as u64,
            h.object_lock_mode().map(|m| m.as_str().to_owned()),
            h.object_lock_retain_until_date()
                .and_then(|d| d.fmt(aws_sdk_s3::primitives::DateTimeFormat::DateTime).ok()),
        ))
    }
}

async fn build_client(s: S3Settings) -> anyhow::Result<Client> {
    use aws_smithy_http_client::tls;
    let mut trust = tls::TrustStore::default();
    if let Some(ca) = &s.ca_bundle {
        let pem = std::fs::read(ca)
            .with_context(|| format!("cannot read the S3 CA bundle {}", ca.display()))?;
        trust = trust.with_pem_certificate(pem);
    }
    let tls_ctx = tls::TlsContext::builder().with_trust_store(trust).build()?;
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .tls_context(tls_ctx)
        .build_https();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http);
    if let Some(r) = &s.region {
        loader = loader.region(aws_config::Region::new(r.clone()));
    }
    let sdk = loader.load().await;
    let mut conf = aws_sdk_s3::config::Builder::from(&sdk).force_path_style(s.path_style);
    if sdk.region().is_none() {
        conf = conf.region(aws_config::Region::new("us-east-1"));
    }
    if let Some(ep) = &s.endpoint {
        conf = conf.endpoint_url(ep);
    }
    Ok(Client::from_conf(conf.build()))
}

impl Store for S3Store {
    fn location(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    fn probe(&self, cluster: &str, node: &str) -> anyhow::Result<crate::store::Probe> {
        self.write_probe(cluster, node)
    }

    fn preflight_write(&self) -> anyhow::Result<()> {
        if !self.lock_enabled()? && !self.settings.allow_mutable {
            return Err(usage(format!(
                "bucket {} has no Object Lock: backups there could be deleted or overwritten. Create the bucket with \
                 Object Lock enabled (aws s3api create-bucket --object-lock-enabled-for-bucket …), or set \
                 allow_mutable = true on this store to accept that",
                self.bucket
            )));
        }
        Ok(())
    }

    fn delete(&self, name: &str) -> anyhow::Result<crate::store::Deleted> {
        if BundleName::parse(name).is_none() {
            return Err(usage(format!("{name:?} is not a backup name")));
        }
        let now = DateTime::from(SystemTime::now());
        let mut locked_until: Option<DateTime> = None;
        let rec = format!("{}{}", name.trim_end_matches(BUNDLE_EXT), RECORD_EXT);
        // The record goes first, so a half-deleted backup shows as incomplete, not whole.
        for key in [self.key(&rec), self.key(name)] {
            let versions = self.versions(&key)?;
            for v in versions
                .get("")
                .map(|v| v.versions.as_slice())
                .unwrap_or_default()
            {
                let (id, vid) = (&v.id, v.vid());
                let h = block(
                    self.client
                        .head_object()
                        .bucket(&self.bucket)
                        .key(&key)
                        .set_version_id(vid.clone())
                        .send(),
                )
                .map_err(|e| anyhow::anyhow!("HeadObject {key} version {id}: {}", describe(&e)))?;
                if let Some(until) = h
                    .object_lock_retain_until_date()
                    .filter(|u| u.secs() > now.secs())
                {
                    if locked_until.is_none_or(|l| until.secs() > l.secs()) {
                        locked_until = Some(*until);
                    }
                    continue;
                }
                block(
                    self.client
                        .delete_object()
                        .bucket(&self.bucket)
                        .key(&key)
                        .set_version_id(vid)
                        .send(),
                )
                .map_err(|e| anyhow::anyhow!("deleting {key} version {id}: {}", describe(&e)))?;
            }
        }
        Ok(match locked_until {
            None => crate::store::Deleted::Gone,
            Some(u) => crate::store::Deleted::Locked {
                until: u
                    .fmt(aws_sdk_s3::primitives::DateTimeFormat::DateTime)
                    .unwrap_or_default(),
            },
        })
    }

    fn abort_stale(&self, age: Duration) -> anyhow::Result<usize> {
        let prefix = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        self.abort_uploads(&prefix, Some(SystemTime::now() - age))
    }

    fn abort_unfinished(&self, cluster: &str, node: &str) -> anyhow::Result<usize> {
        self.abort_uploads(&self.key(&format!("{cluster}/{node}/")), None)
    }

    fn create(&self, name: &BundleName) -> anyhow::Result<Box<dyn Upload>> {
        self.preflight_write()?;
        let locked = self.lock_enabled()?;
        let key = self.key(&name.key());
        let retention = locked.then(|| self.retention());
        let mut req = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&key)
            .checksum_algorithm(ChecksumAlgorithm::Crc32C)
            .content_type("application/octet-stream");
        if let Some((mode, until)) = retention.clone() {
            req = req
                .object_lock_mode(mode)
                .object_lock_retain_until_date(until);
        }
        let out = block(req.send())
            .map_err(|e| anyhow::anyhow!("starting the upload of {key}: {}", describe(&e)))?;
        let upload_id = out
            .upload_id()
            .context("the server returned no upload id")?
            .to_owned();
        Ok(Box::new(S3Upload {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key,
            upload_id,
            part_size: self.settings.part_size,
            base_part_size: self.settings.part_size,
            buf: Vec::with_capacity(self.settings.part_size),
            next_part: 1,
            in_flight: VecDeque::new(),
            parts: Vec::new(),
            retention,
            finished: false,
        }))
    }

    fn scan(&self) -> anyhow::Result<Vec<Listing>> {
        let base = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let objects = self.versions(&base)?;
        let full: Vec<(String, &str)> = objects
            .iter()
            .flat_map(|(k, v)| v.versions.iter().map(move |v| (k, v.id.as_str())))
            .map(|(k, id)| (self.key(k), id))
            .collect();
        self.cache
            .listed(full.iter().map(|(k, id)| (k.as_str(), *id)));
        let mut names: Vec<String> = objects
            .keys()
            .filter_map(|k| {
                k.strip_suffix(".json")
                    .map(str::to_owned)
                    .or_else(|| Some(k.clone()))
            })
            .filter(|k| k.ends_with(BUNDLE_EXT) && BundleName::parse(k).is_some())
            .collect();
        names.sort();
        names.dedup();
        let mut out = Vec::new();
        for name in names {
            let rec_name = record_name(&name);
            let bundle = objects.get(&name);
            let rec = objects.get(&rec_name);
            let mut tampered: Vec<String> = Vec::new();
            for (what, v) in [("bundle", bundle), ("record", rec)] {
                if let Some(v) = v.filter(|v| v.overwritten()) {
                    tampered.push(format!(
                        "the {what} key has {} versions{}: reading the original {}",
                        v.versions.len(),
                        if v.deleted {
                            " and a delete marker"
                        } else {
                            ""
                        },
                        v.original().map(|o| o.id.as_str()).unwrap_or("?")
                    ));
                }
            }
            let original = bundle.and_then(Versions::original);
            let size = original.map(|o| o.size);
            let record_version = rec.and_then(Versions::original).map(|o| o.id.clone());
            out.push(Listing {
                state: crate::store::scanned_state(size, record_version.is_some(), &tampered),
                name,
                store: self.location(),
                size,
                record: None,
                pending: Vec::new(),
                tampered,
                record_error: None,
                version_id: original.map(|o| o.id.clone()),
                record_version,
            });
        }
        crate::store::sort_listings(&mut out);
        Ok(out)
    }

    fn read_records(&self, listings: &mut [Listing]) -> anyhow::Result<()> {
        use futures::StreamExt;
        let wanted: Vec<usize> = (0..listings.len())
            .filter(|&i| listings[i].record_version.is_some())
            .collect();
        let jobs = wanted.iter().map(|&i| {
            let l = &listings[i];
            let (name, rec_version, bundle_version) = (
                l.name.clone(),
                l.record_version.clone(),
                l.version_id.clone(),
            );
            async move {
                let record = self
                    .fetch_record(&record_name(&name), rec_version.as_deref().unwrap_or(""))
                    .await;
                // lock state as the server reports it (or a COMPLIANCE lock it reported
                // before), not as the record remembers it
                let lock = match (&record, &bundle_version) {
                    (Ok(_), Some(v)) => Some(self.lock_state(&self.key(&name), v).await),
                    _ => None,
                };
                (i, record, lock)
            }
        });
        let results: Vec<_> = block(
            futures::stream::iter(jobs)
                .buffer_unordered(self.settings.list_concurrency.max(1))
                .collect::<Vec<_>>(),
        );
        for (i, record, lock) in results {
            let l = &mut listings[i];
            match record {
                Ok(mut r) => {
                    if let (Some(b), Some(want)) = (&l.version_id, &r.bundle_version_id)
                        && want != b
                    {
                        l.tampered.push(format!(
                            "the record names bundle version {want}, the oldest version is {b}"
                        ));
                    }
                    if let Some(lock) = lock {
                        let (mode, until) = lock?;
                        r.lock_mode = mode;
                        r.retain_until = until;
                    }
                    l.record = Some(r);
                }
                Err(e) => l.record_error = Some(e),
            }
            l.state = state_of(l.size, l.record.as_ref(), &l.tampered);
        }
        self.cache.save();
        Ok(())
    }

    fn locked_until(&self, listings: &[&Listing]) -> anyhow::Result<Vec<Option<String>>> {
        use futures::StreamExt;
        let now = time::OffsetDateTime::now_utc();
        let jobs = listings.iter().map(|l| async move {
            let Some(v) = &l.version_id else {
                return Ok(None);
            };
            let (_, until) = self.lock_state(&self.key(&l.name), v).await?;
            Ok::<_, anyhow::Error>(until.filter(|u| cache::still_ahead(u, now)))
        });
        let out: Vec<anyhow::Result<Option<String>>> = block(
            futures::stream::iter(jobs)
                .buffered(self.settings.list_concurrency.max(1))
                .collect::<Vec<_>>(),
        );
        self.cache.save();
        out.into_iter().collect()
    }

    fn open(&self, name: &str) -> anyhow::Result<Box<dyn Read + Send>> {
        if BundleName::parse(name).is_none() {
            return Err(usage(format!(
                "{name:?} is not a backup name: use the NAME column of `cpbackup list`"
            )));
        }
        // Always the original version: a later PutObject over a locked key is not the backup.
        let key = self.key(name);
        let versions = self.versions(&key)?;
        let original = versions
            .get("")
            .and_then(Versions::original)
            .ok_or_else(|| anyhow::anyhow!("{key}: no such object in {}", self.location()))?;
        self.download(&key, original.vid())
    }

    fn open_listed(&self, listing: &Listing) -> anyhow::Result<Box<dyn Read + Send>> {
        match &listing.version_id {
            // Pinned when it was listed: no second listing.
            Some(v) => self.download(&self.key(&listing.name), version_param(v)),
            None => self.open(&listing.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::versions::Version;
    use super::*;

    #[test]
    fn parts_grow_so_ten_thousand_hold_any_database() {
        assert_eq!(part_size_for(DEFAULT_PART_SIZE, 1), DEFAULT_PART_SIZE);
        assert_eq!(part_size_for(DEFAULT_PART_SIZE, 2000), DEFAULT_PART_SIZE);
        assert_eq!(
            part_size_for(DEFAULT_PART_SIZE, 2001),
            2 * DEFAULT_PART_SIZE
        );
        assert_eq!(
            part_size_for(DEFAULT_PART_SIZE, 9999),
            MAX_PART_SIZE.min(16 * DEFAULT_PART_SIZE)
        );
        let total: u64 = (1..=10_000)
            .map(|n| part_size_for(DEFAULT_PART_SIZE, n) as u64)
            .sum();
        assert!(total > 700 << 30, "10,000 parts hold {} GiB", total >> 30);
        // the smallest allowed base still covers 100 GiB
        let total: u64 = (1..=10_000)
            .map(|n| part_size_for(MIN_PART_SIZE, n) as u64)
            .sum();
        assert!(total >= 100 << 30, "{} GiB", total >> 30);
    }

    #[test]
    fn the_original_version_is_the_oldest_even_within_one_second() {
        let v = |id: &str, modified| Version {
            id: id.into(),
            size: 1,
            modified,
        };
        // As S3 lists them: newest first.
        let same_second = Versions {
            versions: vec![v("attacker", 5000), v("backup", 5000)],
            deleted: false,
        };
        assert_eq!(same_second.original().unwrap().id, "backup");
        assert!(same_second.overwritten());
        let later = Versions {
            versions: vec![v("attacker", 9000), v("backup", 5000)],
            deleted: false,
        };
        assert_eq!(later.original().unwrap().id, "backup");
        let one = Versions {
            versions: vec![v("backup", 5000)],
            deleted: true,
        };
        assert!(
            one.overwritten(),
            "a delete marker hiding the backup is tampering"
        );
    }

    #[test]
    fn urls_are_checked() {
        assert!(S3Store::new("s3:///x", S3Settings::default()).is_err());
        let e = S3Store::new(
            "s3://b/p",
            S3Settings {
                part_size: 1024,
                ..Default::default()
            },
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("5 MiB"));
    }
}
