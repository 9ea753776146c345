//! Where bundles live. A [`Store`] takes a bundle as a stream and makes it visible only when
//! complete (`commit`), lists what it holds with each backup's state, and streams a bundle back.
//! The local directory store is here; remote stores implement the same trait.

pub(crate) mod bridge;
#[cfg(test)]
mod contract;
pub(crate) mod fanout;
pub(crate) mod integrity;
pub(crate) mod local;
pub(crate) mod naming;
pub(crate) mod pending;
pub mod query;
pub mod record;
pub(crate) mod registry;
pub(crate) mod retention;
pub(crate) mod s3;
pub(crate) mod select;
pub(crate) mod signing;

use std::io::{Read, Write};

pub(crate) use local::LocalStore;
pub(crate) use naming::BundleName;
pub use record::Record;
pub(crate) use registry::{open, open_all};

/// A store location with its settings, flags applied over the file's.
#[derive(Debug, Clone)]
pub struct StoreSpec {
    /// A directory, or a URL of a registered scheme (`s3://bucket/prefix`).
    pub url: String,
    /// Settings an S3 store uses (ignored by a local one).
    pub s3: s3::S3Settings,
}

impl StoreSpec {
    /// Whether the location is a local directory (no `scheme://`).
    pub fn is_local(&self) -> bool {
        registry::scheme(&self.url).is_none()
    }
}

/// One backup as a store sees it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Listing {
    /// The name `list` prints and `verify` accepts: `<cluster>/<node>/<file>.cpb`.
    pub name: String,
    /// The location of the store that holds it.
    pub store: String,
    /// Size of the bundle object, if it exists.
    pub size: Option<u64>,
    /// Whether it is whole.
    pub state: BackupState,
    /// The record beside the bundle, if readable.
    pub record: Option<Record>,
    /// Stores this (local) copy still has to reach (`backup --upload-pending`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<String>,
    /// Why this backup looks tampered with (a key written again after the backup, a bundle
    /// changed after its record); readers still use the original.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tampered: Vec<String>,
    /// Why the record beside the bundle could not be read (the backup is then `incomplete`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_error: Option<String>,
    /// The bundle version every read is pinned to (S3: the original VersionId).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// The record's version the listing pass found (S3: its original VersionId; local: `""`);
    /// `None`: no record beside the bundle.
    #[serde(skip)]
    pub record_version: Option<String>,
}

/// How whole a backup in a store is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackupState {
    /// Bundle and record present and consistent.
    Complete,
    /// A bundle without its record: the backup did not finish.
    Incomplete,
    /// The bundle's size differs from its record: truncated or replaced.
    SizeMismatch,
    /// A record whose bundle is gone.
    MissingBundle,
    /// Complete, but a key was written again after the backup (or the bundle changed after its
    /// record): the original is what is read; someone with write access to the store tried.
    Tampered,
    /// Bundle and record are both there, but the record was not read (`list --fast`).
    Unchecked,
}

impl BackupState {
    /// The word `list` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            BackupState::Complete => "complete",
            BackupState::Incomplete => "incomplete",
            BackupState::SizeMismatch => "size-mismatch",
            BackupState::MissingBundle => "missing-bundle",
            BackupState::Tampered => "tampered",
            BackupState::Unchecked => "unchecked",
        }
    }
}

/// A backup chosen by name, path or `--latest`, ready to stream: what its store lists of it
/// (for a path: its size and the record beside it) and its bytes.
pub struct Chosen {
    /// What the store lists of it.
    pub listing: Listing,
    /// Its bytes, at the version listed.
    pub reader: Box<dyn Read + Send>,
}

/// What `delete` could do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deleted {
    /// Deleted.
    Gone,
    /// At least one object version is locked until this time; nothing locked was touched.
    Locked {
        /// When the lock ends.
        until: String,
    },
}

/// What a write probe found out about a store.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Probe {
    /// Object Lock on the bucket: `None` where the store has no such notion (a directory).
    pub object_lock: Option<bool>,
    /// The bucket's default retention (`COMPLIANCE 30 days`), if it has one.
    pub default_retention: Option<String>,
    /// The store's clock when it took the probe (its HTTP `Date`), Unix seconds.
    pub server_time: Option<i64>,
    /// Whether the settings accept a bucket without Object Lock (`allow_mutable`).
    pub allow_mutable: bool,
}

/// A bundle being written. Dropping it without `commit` discards it.
pub trait Upload: Write + Send {
    /// Makes the bundle visible under its final name, then writes its record beside it.
    fn commit(self: Box<Self>, record: &Record) -> anyhow::Result<()>;
}

/// Where bundles live: written once, listed, read back, deleted by retention.
pub trait Store: Send + Sync {
    /// Human description (the path or URL).
    fn location(&self) -> String;
    /// Checks, before any backup work, that this store can take backups as configured
    /// (for S3: that the bucket has Object Lock, unless mutable buckets are allowed).
    fn preflight_write(&self) -> anyhow::Result<()> {
        Ok(())
    }
    /// Proves the store takes writes (`cpbackup doctor`): writes a small probe object under
    /// `<cluster>/<node>/` and removes it again (S3: a delete marker; a version the bucket's
    /// default retention locks expires with it), and says what the store enforces.
    fn probe(&self, cluster: &str, node: &str) -> anyhow::Result<Probe>;
    /// Removes what interrupted backups of this node left behind (temp files, multipart
    /// uploads). Called with the node lock held, so nothing of this node is in progress.
    fn abort_unfinished(&self, _cluster: &str, _node: &str) -> anyhow::Result<usize> {
        Ok(0)
    }
    /// Deletes a backup (bundle, record, marks). Objects still under lock are kept and reported.
    fn delete(&self, name: &str) -> anyhow::Result<Deleted>;
    /// Aborts or removes unfinished uploads of any node older than `age`.
    fn abort_stale(&self, _age: std::time::Duration) -> anyhow::Result<usize> {
        Ok(0)
    }
    /// Starts writing a bundle under `name`.
    fn create(&self, name: &BundleName) -> anyhow::Result<Box<dyn Upload>>;
    /// Every backup, oldest first, from one pass over the store's keys: names, sizes, versions
    /// and what the versions show of tampering; no record is read (a backup with both its
    /// bundle and its record is [`BackupState::Unchecked`]).
    fn scan(&self) -> anyhow::Result<Vec<Listing>>;
    /// Reads the records (and the lock state) of these listings, as many at once as the store
    /// allows, and sets their final states. A record that cannot be read is said in its listing.
    fn read_records(&self, listings: &mut [Listing]) -> anyhow::Result<()>;
    /// When Object Lock holds each of these listings' bundle until (RFC 3339; `None`: not
    /// locked, or a store without locks), as many asked at once as the store allows.
    fn locked_until(&self, listings: &[&Listing]) -> anyhow::Result<Vec<Option<String>>> {
        Ok(vec![None; listings.len()])
    }
    /// Every backup, oldest first, records read.
    fn list(&self) -> anyhow::Result<Vec<Listing>> {
        let mut all = self.scan()?;
        self.read_records(&mut all)?;
        Ok(all)
    }
    /// Streams a bundle's bytes.
    fn open(&self, name: &str) -> anyhow::Result<Box<dyn Read + Send>>;
    /// Streams the bundle a [`Store::list`] entry names, at the version it was pinned to.
    fn open_listed(&self, listing: &Listing) -> anyhow::Result<Box<dyn Read + Send>> {
        self.open(&listing.name)
    }
}

/// Sorts listings oldest first (by the time in their names), as every store lists them.
pub fn sort_listings(listings: &mut [Listing]) {
    listings.sort_by_cached_key(|l| BundleName::parse(&l.name));
}

/// The state a listing pass can tell without reading the record.
pub fn scanned_state(size: Option<u64>, has_record: bool, tampered: &[String]) -> BackupState {
    match (size, has_record) {
        (Some(_), false) => BackupState::Incomplete,
        (Some(_), true) if !tampered.is_empty() => BackupState::Tampered,
        (Some(_), true) => BackupState::Unchecked,
        (None, _) => BackupState::MissingBundle,
    }
}

/// Computes a listing's state from what exists; `tampered` holds why the store thinks the
/// backup was written over after the fact (a complete one is then `Tampered`).
pub fn state_of(size: Option<u64>, record: Option<&Record>, tampered: &[String]) -> BackupState {
    match (size, record) {
        (Some(_), None) => BackupState::Incomplete,
        (Some(s), Some(r)) if s != r.bundle_size => BackupState::SizeMismatch,
        (Some(_), Some(_)) if !tampered.is_empty() => BackupState::Tampered,
        (Some(_), Some(_)) => BackupState::Complete,
        (None, _) => BackupState::MissingBundle,
    }
}
