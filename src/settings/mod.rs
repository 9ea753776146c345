//! Settings from flags, the environment and the config file, resolved and validated once.
//!
//! Precedence: flags > environment (both via clap) > config file > built-in defaults. The low
//! layer is what was given ([`flags`], [`file`]); the high layer is what the engines take
//! (`StoreSpec`, `EtcdSettings`, `BackupJob`, `Schedule`, `Policy`), built here and nowhere
//! else. Every error names the key and says how to fix it, and maps to exit code 2.

pub(crate) mod backup;
pub(crate) mod daemon;
pub mod duration;
pub(crate) mod etcd;
pub mod file;
pub mod flags;
pub(crate) mod store;

use std::path::{Path, PathBuf};

pub use file::{DEFAULT_CONFIG_PATH, FileConfig};

use crate::error::usage;
use crate::host::HostRoot;
use crate::logging::LogFormat;
use crate::output::OutputFormat;
use crate::store::StoreSpec;
use flags::{GlobalFlags, IdentityArgs, StoreArgs};

/// What every command runs with: the global flags resolved over the config file, and the file
/// itself for the command's own settings.
#[derive(Debug)]
pub struct Settings {
    /// The global flags as given (kept for a reload).
    pub global: GlobalFlags,
    /// The config file as read.
    pub file: FileConfig,
    /// Where host paths are read (`--host-root`, `host_root`, else `/`).
    pub host_root: PathBuf,
    /// Report format on stdout.
    pub output: OutputFormat,
    /// Log format on stderr.
    pub log_format: LogFormat,
    /// `-q`: warnings and errors only, no progress bars.
    pub quiet: bool,
}

impl Settings {
    /// Reads the config file the global flags name and resolves the global settings.
    pub fn load(global: &GlobalFlags) -> anyhow::Result<Self> {
        let default = match &global.host_root {
            Some(root) => crate::host::HostRoot::new(root).path(DEFAULT_CONFIG_PATH),
            None => PathBuf::from(DEFAULT_CONFIG_PATH),
        };
        let file = FileConfig::load_from(global.config.as_deref(), &default)?;
        Ok(Self::with_file(global, file))
    }

    /// The global settings over an already read config file.
    pub fn with_file(global: &GlobalFlags, file: FileConfig) -> Self {
        Settings {
            host_root: global
                .host_root
                .clone()
                .or_else(|| file.host_root.clone())
                .unwrap_or_else(|| PathBuf::from("/")),
            output: global.output.or(file.output).unwrap_or(OutputFormat::Text),
            log_format: global
                .log_format
                .or(file.log_format)
                .unwrap_or(LogFormat::Text),
            quiet: global.quiet,
            global: global.clone(),
            file,
        }
    }

    /// The config file read again (SIGHUP), with the same flags.
    pub fn reload(&self) -> anyhow::Result<Self> {
        Self::load(&self.global)
    }

    /// The host root.
    pub fn host(&self) -> HostRoot {
        HostRoot::new(&self.host_root)
    }

    /// Whether long interactive work shows a progress bar (text output, not `-q`; the bar itself
    /// stays hidden when stderr is not a terminal).
    pub fn progress(&self) -> bool {
        !self.quiet && self.output == OutputFormat::Text
    }

    /// The stores: flags replacing the file's list.
    pub fn stores(&self, args: &StoreArgs) -> anyhow::Result<Vec<StoreSpec>> {
        let specs = store::resolve(args, &flags::StoreWriteArgs::default(), &self.file)?;
        Ok(self.with_cache(args, None, specs))
    }

    /// The stores of a command that writes backups, with its lock flags and its `--state-dir`.
    pub fn write_stores(
        &self,
        args: &flags::StoreWriteArgs,
        state_dir: Option<&Path>,
    ) -> anyhow::Result<Vec<StoreSpec>> {
        let specs = store::resolve(&args.stores, args, &self.file)?;
        Ok(self.with_cache(&args.stores, state_dir, specs))
    }

    /// Sets where S3 stores remember what they read: `--cache-dir`, else `<state dir>/cache`;
    /// nowhere with `--no-cache`.
    fn with_cache(
        &self,
        args: &StoreArgs,
        state_dir: Option<&Path>,
        mut specs: Vec<StoreSpec>,
    ) -> Vec<StoreSpec> {
        let dir = (!args.no_cache).then(|| {
            args.cache_dir
                .clone()
                .unwrap_or_else(|| self.state_dir(state_dir).join("cache"))
        });
        for s in &mut specs {
            s.s3.cache_dir = dir.clone();
        }
        specs
    }

    /// Identity files, flags replacing the file's list; at least one.
    pub fn identities(&self, args: &IdentityArgs) -> anyhow::Result<Vec<PathBuf>> {
        let ids = if args.identities.is_empty() {
            self.file.identities.clone()
        } else {
            args.identities.clone()
        };
        if ids.is_empty() {
            return Err(usage(
                "no identity given: pass --identity FILE (the age key made by `cpbackup keygen`) to read a backup",
            ));
        }
        Ok(ids)
    }

    /// The state directory (node lock, metrics state, restore journal, S3 cache): flag, file,
    /// else /var/lib/cpbackup on the host; for a user other than root on the machine itself (a
    /// workstation trying it out), `$XDG_STATE_HOME/cpbackup` (`~/.local/state/cpbackup`).
    pub fn state_dir(&self, flag: Option<&Path>) -> PathBuf {
        flag.map(Path::to_path_buf)
            .or_else(|| self.file.state_dir.clone())
            .or_else(|| {
                let host = self.host();
                (host.root() == Path::new("/") && !rustix::process::geteuid().is_root())
                    .then(user_state_dir)
                    .flatten()
            })
            .unwrap_or_else(|| self.host().path("/var/lib/cpbackup"))
    }

    /// Signers to trust: the flags (or `CPBACKUP_TRUST_SIGNER`), else the file's
    /// `trusted_signers`.
    pub fn trusted_signers(&self, given: &[String]) -> Vec<String> {
        if given.is_empty() {
            self.file.trusted_signers.clone()
        } else {
            given.to_vec()
        }
    }

    /// Where a snapshot from a bundle is spooled: flag, file, else `$TMPDIR`.
    pub fn spool_dir(&self, flag: Option<&Path>) -> PathBuf {
        flag.map(Path::to_path_buf)
            .or_else(|| self.file.spool_dir.clone())
            .unwrap_or_else(std::env::temp_dir)
    }
}

/// `$XDG_STATE_HOME/cpbackup`, else `~/.local/state/cpbackup`.
fn user_state_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from(std::env::var_os("HOME")?).join(".local/state")))?;
    Some(base.join("cpbackup"))
}
