//! OpenShift compatibility export: from a bundle, the two files `cluster-backup.sh` writes —
//! `snapshot_<%F_%H%M%S>.db` and `static_kuberesources_<same>.tar.gz` holding
//! `static-pod-resources/<component>-pod-N/…` relative to `/etc/kubernetes` — so the stock
//! `cluster-restore.sh` and the documented OpenShift procedure work unchanged. A forced backup
//! gets the `__POSSIBLY_DIRTY__` suffix, as with `cluster-backup.sh --force`. Beside them,
//! `revision.json` as the etcd-rev sidecar writes it (`clusterId`, `raftIndex` per endpoint,
//! `maxRaftIndex`, `created`) from the raft indexes the backup recorded, so the restore pod
//! bumps the revision by OpenShift's rule (1.2 × the highest raft index).
//!
//! The bundle goes through the one checker like every other reader. Both files are written
//! unnamed (`O_TMPFILE`, 0600) and get their names only once the checker accepted the whole
//! bundle, so a failure, an interrupt or a kill leaves nothing behind.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::beneath::Beneath;
use crate::bundle::check::{Admitted, Expectation, Route, Sink};
use crate::bundle::manifest::EntryKind;
use crate::bundle::reader::read_bundle;
use crate::keys::Identities;

const RESOURCES_PREFIX: &str = "static-pod-resources/";

#[derive(Debug, serde::Serialize)]
pub struct Exported {
    pub snapshot: PathBuf,
    pub static_kuberesources: PathBuf,
    /// Written when the backup recorded a raft index.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision_json: Option<PathBuf>,
}

/// `revision.json` as OpenShift's etcd-rev sidecar writes it, from what the backup recorded.
fn revision_json(m: &crate::bundle::manifest::Manifest) -> Option<serde_json::Value> {
    let mut indexes = serde_json::Map::new();
    match &m.consistency {
        Some(c) if !c.members.is_empty() => {
            for member in &c.members {
                indexes.insert(member.endpoint.clone(), member.raft_index.into());
            }
        }
        _ => {
            let s = &m.etcd.status;
            indexes.insert(s.endpoint.clone(), s.raft_index.into());
        }
    }
    let max = indexes.values().filter_map(|v| v.as_u64()).max()?;
    (max > 0).then(|| {
        serde_json::json!({
            "clusterId": m.etcd.status.cluster_id,
            "raftIndex": indexes,
            "maxRaftIndex": max,
            "created": m.created,
        })
    })
}

/// Collects the snapshot and the `static-pod-resources/` entries as the checker admits them.
struct Export {
    snap: File,
    res: tar::Builder<flate2::write::GzEncoder<File>>,
    /// The current entry goes to the snapshot, into a buffer for the resources tar, or nowhere.
    route: Route,
    resources: usize,
}

/// A resource file larger than this is not a static pod resource.
const MAX_RESOURCE_FILE: u64 = 256 << 20;

fn header_for(e: &Admitted, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(e.mode);
    h.set_uid(e.uid);
    h.set_gid(e.gid);
    h.set_size(0);
    h.set_mtime(e.mtime);
    h
}

impl Sink for Export {
    fn begin(&mut self, e: &Admitted) -> io::Result<()> {
        self.route = Route::Skip;
        if e.is_snapshot() {
            self.route = Route::Stream;
            return Ok(());
        }
        if !e.path.starts_with(RESOURCES_PREFIX) {
            return Ok(());
        }
        self.resources += 1;
        match e.kind {
            EntryKind::Dir => {
                let mut h = header_for(e, tar::EntryType::Directory);
                self.res.append_data(&mut h, &e.path, io::empty())?;
            }
            EntryKind::Symlink => {
                let mut h = header_for(e, tar::EntryType::Symlink);
                let target = e.link_target.as_deref().unwrap_or_default();
                self.res.append_link(&mut h, &e.path, target)?;
            }
            EntryKind::File => {
                if e.size > MAX_RESOURCE_FILE {
                    return Err(io::Error::other(format!(
                        "{}: {} bytes is too large for a static pod resource",
                        e.path, e.size
                    )));
                }
                self.route = Route::buffer(e.size);
            }
        }
        Ok(())
    }

    fn data(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.route.data(chunk, &mut self.snap)
    }

    fn end(&mut self, e: &Admitted) -> io::Result<()> {
        if let Some(buf) = self.route.take_buffer() {
            let mut h = header_for(e, tar::EntryType::Regular);
            h.set_size(buf.len() as u64);
            self.res.append_data(&mut h, &e.path, &buf[..])?;
        }
        Ok(())
    }
}

/// Writes the two files `cluster-backup.sh` would write into `out_dir`, after the checker
/// accepted the whole bundle.
pub fn export_openshift(
    input: impl Read + Send,
    ids: &Identities,
    expect: &Expectation,
    out_dir: &Path,
) -> anyhow::Result<Exported> {
    // Created 0700: it is about to hold every control-plane key in plaintext.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let dir = Beneath::open(out_dir).with_context(|| {
        format!(
            "cannot use {} as the export directory (a symlink is refused; give the real directory)",
            out_dir.display()
        )
    })?;
    // Unnamed until complete: a failure or a kill leaves no plaintext behind.
    let snap = dir
        .anonymous_file()
        .with_context(|| format!("cannot write in {}", out_dir.display()))?;
    let mut res = tar::Builder::new(crate::bundle::codec::openshift_targz(dir.anonymous_file()?));
    res.follow_symlinks(false);
    let mut sink = Export {
        snap,
        res,
        route: Route::Skip,
        resources: 0,
    };
    let report = read_bundle(input, ids, expect, Box::new(|_| {}), &mut sink)?;
    let manifest = report.manifest;
    if sink.resources == 0 {
        anyhow::bail!(
            "this backup holds no OpenShift static pod resources (platform {:?}); export-openshift needs a backup of an OpenShift master",
            manifest.platform
        );
    }
    sink.snap.sync_all()?;
    let created = time::OffsetDateTime::parse(
        &manifest.created,
        &time::format_description::well_known::Rfc3339,
    )
    .context("the manifest's creation time is unreadable")?;
    let ts = created.format(time::macros::format_description!(
        "[year]-[month]-[day]_[hour][minute][second]"
    ))?;
    let dirty = if manifest.forced {
        "__POSSIBLY_DIRTY__"
    } else {
        ""
    };
    let revision = revision_json(&manifest);
    let out = Exported {
        snapshot: out_dir.join(format!("snapshot_{ts}{dirty}.db")),
        static_kuberesources: out_dir.join(format!("static_kuberesources_{ts}{dirty}.tar.gz")),
        revision_json: revision.as_ref().map(|_| out_dir.join("revision.json")),
    };
    let res_file = sink.res.into_inner()?.finish()?;
    res_file.sync_all()?;
    publish(&dir, &out, &sink.snap, &res_file, revision.as_ref())?;
    File::from(dir.root().try_clone()?).sync_all()?;
    Ok(out)
}

/// Names the complete files, never replacing an existing one; on a failure the ones already
/// named are removed again.
fn publish(
    dir: &Beneath,
    out: &Exported,
    snap: &File,
    res: &File,
    revision: Option<&serde_json::Value>,
) -> anyhow::Result<()> {
    let name = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    dir.publish(snap, &name(&out.snapshot))
        .with_context(|| format!("{} already exists?", out.snapshot.display()))?;
    if let Err(e) = dir.publish(res, &name(&out.static_kuberesources)) {
        let _ = fs::remove_file(&out.snapshot);
        return Err(e)
            .with_context(|| format!("{} already exists?", out.static_kuberesources.display()));
    }
    if let (Some(v), Some(p)) = (revision, &out.revision_json) {
        let mut f = dir.anonymous_file()?;
        io::Write::write_all(&mut f, &serde_json::to_vec_pretty(v)?)?;
        f.sync_all()?;
        if let Err(e) = dir.publish(&f, "revision.json") {
            let _ = fs::remove_file(&out.snapshot);
            let _ = fs::remove_file(&out.static_kuberesources);
            return Err(e).with_context(|| {
                format!(
                    "{} already exists (from an earlier export?): export into an empty directory",
                    p.display()
                )
            });
        }
    }
    Ok(())
}
