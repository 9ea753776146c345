//! The restore steps: what each does, how it is undone, and why running it twice is safe —
//! one file per kind, its `describe`, `run` and `undo` together ([`Action`]).
//!
//! Every step is idempotent: `--continue` re-runs the first step not marked done, whatever
//! point it was killed at. Nothing of the node's is deleted: manifests, data and files that a
//! step replaces are moved aside (paths in the journal); only copies this restore made itself
//! (staged plaintext, half-done restores) are ever removed. `undo` puts things back for
//! `--rollback`; what a step had created goes to `<work dir>/rolled-back/`.

mod move_aside;
mod place_files;
mod pods;
mod rejoin;
mod restore_snapshot;
mod stage_openshift;
mod wait_serving;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

pub use move_aside::{MoveAside, MoveContents};
pub use place_files::{PlaceFiles, Selection};
pub use pods::{StartPod, StopPod};
pub use rejoin::{JoinManifest, MemberAdd, WaitJoined};
pub use restore_snapshot::{RemoveKeys, RestorePod, RestoreSnapshot};
pub use stage_openshift::StageOpenshift;
pub use wait_serving::{EtcdTarget, RemoveStaged, WaitServing};

use crate::host::EtcdSettings;
use crate::restore::fsops::move_path;

/// What every kind of step does.
pub trait Action {
    /// One line for the plan.
    fn describe(&self) -> String;
    /// Does it; safe to run again after it was cut short.
    fn run(&self, ctx: &Ctx) -> anyhow::Result<()>;
    /// Undoes it (for `--rollback`); safe on a step that only partly ran.
    fn undo(&self, ctx: &Ctx) -> anyhow::Result<()>;
}

/// One step of a plan, as the journal records it (`kind` names it).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Step {
    StopPod(StopPod),
    StartPod(StartPod),
    MoveAside(MoveAside),
    MoveContents(MoveContents),
    PlaceFiles(PlaceFiles),
    RestoreSnapshot(RestoreSnapshot),
    StageOpenshift(StageOpenshift),
    WaitServing(WaitServing),
    RemoveStaged(RemoveStaged),
    MemberAdd(MemberAdd),
    JoinManifest(JoinManifest),
    WaitJoined(WaitJoined),
}

impl Step {
    fn action(&self) -> &dyn Action {
        match self {
            Step::StopPod(s) => s,
            Step::StartPod(s) => s,
            Step::MoveAside(s) => s,
            Step::MoveContents(s) => s,
            Step::PlaceFiles(s) => s,
            Step::RestoreSnapshot(s) => s,
            Step::StageOpenshift(s) => s,
            Step::WaitServing(s) => s,
            Step::RemoveStaged(s) => s,
            Step::MemberAdd(s) => s,
            Step::JoinManifest(s) => s,
            Step::WaitJoined(s) => s,
        }
    }

    /// One line for the plan.
    pub fn describe(&self) -> String {
        self.action().describe()
    }

    /// Runs the step.
    pub fn run(&self, ctx: &Ctx) -> anyhow::Result<()> {
        self.action().run(ctx)
    }

    /// Undoes the step.
    pub fn undo(&self, ctx: &Ctx) -> anyhow::Result<()> {
        self.action().undo(ctx)
    }

    /// Points a step that reaches etcd at what the `--etcd-*` flags of `--continue` say: the
    /// restored member of a restore (endpoint and certificates); for a rejoin, the certificates
    /// only (its endpoint is the recovery member, which a node's own settings do not name).
    pub fn retarget(&mut self, o: &EtcdSettings) {
        match self {
            Step::WaitServing(w) => {
                if let Some(e) = &o.endpoint {
                    w.target.endpoint = e.clone();
                }
                take_certificates(o, &mut w.target);
            }
            Step::WaitJoined(w) => {
                take_certificates(o, &mut w.via);
                take_certificates(o, &mut w.local);
            }
            Step::MemberAdd(m) => take_certificates(o, &mut m.via),
            Step::JoinManifest(m) => take_certificates(o, &mut m.via),
            _ => {}
        }
    }

    /// Where this step keeps the node's previous etcd data, if it moves it aside.
    pub fn keeps_old_data_in(&self) -> Option<&Path> {
        match self {
            Step::MoveAside(m) => Some(&m.to),
            Step::MoveContents(m) => Some(&m.to),
            _ => None,
        }
    }
}

/// The certificates of `o` (the `--etcd-*` flags of `--continue`) in place of `t`'s.
fn take_certificates(o: &EtcdSettings, t: &mut EtcdTarget) {
    if let Some(c) = &o.cacert {
        t.cacert = Some(c.clone());
    }
    if let (Some(c), Some(k)) = (&o.cert, &o.key) {
        t.cert = Some(c.clone());
        t.key = Some(k.clone());
    }
}

/// A decrypted snapshot waiting in the staging directory, and what it must hash to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StagedSnapshot {
    /// Where it is.
    pub path: PathBuf,
    /// Its SHA-256 in the manifest.
    pub sha256: String,
}

/// What steps need besides themselves.
pub struct Ctx {
    /// The host root.
    pub host_root: PathBuf,
    /// This process unpacked and verified the staging directory. The staged snapshot is not
    /// synced to disk (etcdutl copies and syncs it at once), so a restore continued by another
    /// process, perhaps after a crash, hashes it again before using it.
    pub staging_verified: bool,
    /// How long to wait for a pod to go or etcd to serve.
    pub wait_timeout: Duration,
    /// Where `undo` puts what the restore had created.
    pub rolled_back: PathBuf,
    /// The command that continues this operation, to print in hints.
    pub continue_cmd: String,
    /// The command that rolls it back.
    pub rollback_cmd: String,
}

/// Hashes a staged snapshot again unless this process staged it: it was not synced, so after
/// a crash it may not hold what was verified.
pub(crate) fn recheck_staged(path: &Path, sha256: Option<&str>, ctx: &Ctx) -> anyhow::Result<()> {
    let Some(want) = sha256.filter(|_| !ctx.staging_verified) else {
        return Ok(());
    };
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    let mut f = fs::File::open(path)
        .with_context(|| format!("opening the staged snapshot {}", path.display()))?;
    std::io::copy(&mut f, &mut h)
        .with_context(|| format!("reading the staged snapshot {}", path.display()))?;
    let got = hex::encode(h.finalize());
    if got != want {
        anyhow::bail!(
            "the staged snapshot {} no longer matches the backup (SHA-256 {got}, expected {want}); \
             it was probably not on disk yet when the machine went down. Run `{}`, \
             then restore again",
            path.display(),
            ctx.rollback_cmd
        );
    }
    Ok(())
}

/// Names in a directory, sorted.
pub(crate) fn entries(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut v: Vec<String> = match fs::read_dir(dir) {
        Ok(d) => d
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    v.sort();
    Ok(v)
}

/// A fresh path under `dir` named after `p`.
pub(crate) fn unique(dir: &Path, p: &Path) -> PathBuf {
    let base = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "entry".into());
    (0..)
        .map(|i| {
            if i == 0 {
                dir.join(&base)
            } else {
                dir.join(format!("{base}.{i}"))
            }
        })
        .find(|c| c.symlink_metadata().is_err())
        .expect("some name is free")
}

/// Moves `p` to `keep` the first time only (later runs find `keep` there and leave `p`,
/// which is then ours).
pub(crate) fn set_aside_once(p: &Path, keep: &Path) -> anyhow::Result<()> {
    if p.exists() && !keep.exists() {
        move_path(p, keep)?;
    }
    Ok(())
}

/// Writes a new file `path` (0600) below the host root without following a link anywhere on
/// the way, complete or not at all.
pub(crate) fn publish_new_file(
    ctx: &Ctx,
    path: &std::path::Path,
    bytes: &[u8],
) -> anyhow::Result<()> {
    let dir = path.parent().context("a manifest path has a directory")?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .context("a manifest path has a file name")?;
    crate::beneath::real_dir_below(&ctx.host_root, dir)
        .with_context(|| format!("{} is not a plain directory", dir.display()))?;
    let d = crate::beneath::Beneath::open(dir)?;
    let mut f = d.anonymous_file()?;
    std::io::Write::write_all(&mut f, bytes)?;
    f.sync_all()?;
    d.publish(&f, name)
        .with_context(|| format!("writing {}", path.display()))?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// Copies `from` to `to` through a synced temporary file and a rename.
pub(crate) fn copy_atomically(from: &Path, to: &Path) -> anyhow::Result<()> {
    let tmp = to.with_extension("cpbackup-tmp");
    fs::copy(from, &tmp).with_context(|| format!("copying {}", from.display()))?;
    fs::File::open(&tmp)?.sync_all()?;
    fs::rename(&tmp, to)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_form_is_the_kind_tag_and_the_fields() {
        // A journal written before the steps were split must still load for --continue.
        let old = r#"{"kind":"move-aside","from":"/var/lib/etcd","to":"/var/lib/etcd.aside"}"#;
        let step: Step = serde_json::from_str(old).unwrap();
        assert_eq!(
            step.keeps_old_data_in(),
            Some(Path::new("/var/lib/etcd.aside"))
        );
        assert_eq!(serde_json::to_string(&step).unwrap(), old);
        let wait = r#"{"kind":"wait-serving","target":{"endpoint":"https://127.0.0.1:2379","cacert":null,"cert":null,"key":null},"min_revision":7}"#;
        let step: Step = serde_json::from_str(wait).unwrap();
        assert!(
            step.describe().contains("revision 7"),
            "{}",
            step.describe()
        );
        assert_eq!(serde_json::to_string(&step).unwrap(), wait);
    }
}
