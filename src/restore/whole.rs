//! The whole-cluster restore from a backup: the node is checked, the bundle verified (a dry
//! run) or unpacked and verified into a private staging directory, the steps planned from the
//! bundle's manifest, shown, confirmed and run under the journal. Until the first step runs,
//! nothing on the node has changed, and every failure says so.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::journal::{Journal, Operation};
use super::newhost::{self, NewHost};
use super::session::{Session, Ui, new_journal};
use super::tools::RestoreTool;
use super::{fsops, plan};
use crate::bundle::manifest::Manifest;
use crate::bundle::reader::{self, Expectation};
use crate::bundle::unpack;
use crate::error::usage;
use crate::host::EtcdSettings;
use crate::host::{HostRoot, Platform};
use crate::keys::Identities;
use crate::store::Chosen;

/// What this node needs for a restore, checked before a backup is even chosen.
pub struct Target {
    /// The node's kind.
    pub platform: Platform,
    /// kubeadm: the snapshot restore tool (OpenShift restores with etcd's own image).
    pub tool: Option<RestoreTool>,
    /// etcd's data directory, as the host path maps for us.
    pub data_dir: PathBuf,
}

impl Target {
    /// Checks that this is a control-plane node of `platform` and finds what the restore uses.
    pub fn check(
        host: &HostRoot,
        platform: Platform,
        etcdutl: Option<&Path>,
        new_host: bool,
    ) -> anyhow::Result<Self> {
        if new_host {
            return Self::new_host(host, platform, etcdutl);
        }
        if platform == Platform::Unknown
            && !host
                .path(plan::KUBEADM_MANIFESTS)
                .join("etcd.yaml")
                .is_file()
        {
            return Err(usage(format!(
                "this does not look like a control-plane node under {}: no OpenShift etcd.env and no {}/etcd.yaml. \
                 Run it on a master (or with --host-root), or pass --platform",
                host.root().display(),
                plan::KUBEADM_MANIFESTS
            )));
        }
        let procedure = super::platform::of(platform);
        let tool = restore_tool(platform, host, etcdutl)?;
        let data_dir_host = procedure.data_dir(host)?;
        Ok(Target {
            platform,
            tool,
            data_dir: host.path(&data_dir_host),
        })
    }

    /// `--new-host`: a kubeadm host that may have nothing of a control plane yet; the tool is
    /// the host's (else etcd's image, once the bundle names it), the data directory kubeadm's.
    fn new_host(
        host: &HostRoot,
        platform: Platform,
        etcdutl: Option<&Path>,
    ) -> anyhow::Result<Self> {
        if platform == Platform::Openshift {
            return Err(usage(
                "--new-host restores kubeadm clusters only: OpenShift's certificates are managed by its operators.                  Follow the disaster-recovery documentation of your OpenShift release to replace masters; nothing was changed",
            ));
        }
        let tool = match etcdutl {
            Some(_) => Some(RestoreTool::find(etcdutl, host)?),
            None => RestoreTool::find(None, host).ok(),
        };
        Ok(Target {
            platform: Platform::Kubeadm,
            tool,
            data_dir: host.path("/var/lib/etcd"),
        })
    }

    /// Refuses a restore that would not fit: etcd's data directory needs twice the snapshot.
    pub fn check_space(&self, snapshot: u64) -> anyhow::Result<()> {
        let free = fsops::free_bytes(&self.data_dir)?;
        if free < snapshot.saturating_mul(2) {
            use crate::output::human_size;
            return Err(usage(format!(
                "{} has {} free; a restore of this {} snapshot needs at least twice that ({}). Free some space first; nothing was changed",
                self.data_dir.display(),
                human_size(free),
                human_size(snapshot),
                human_size(snapshot.saturating_mul(2))
            )));
        }
        Ok(())
    }
}

/// One restore of this node from `chosen`.
pub struct Restore<'a> {
    /// The lock, the journal, the host.
    pub session: &'a Session,
    /// What the node needs.
    pub target: &'a Target,
    /// How to reach the restored etcd.
    pub etcd: &'a EtcdSettings,
    /// The keys that decrypt the bundle.
    pub ids: &'a Identities,
    /// Show an unpack progress bar.
    pub progress: bool,
    /// How far to raise the restored revision.
    pub bump: u64,
    /// `--new-host`: the name and address this host takes.
    pub new_host: Option<&'a NewHost>,
}

/// Where one operation keeps its files, and what it is called.
struct Work {
    id: String,
    dir: PathBuf,
    staged: PathBuf,
    token: String,
}

impl Restore<'_> {
    /// `--dry-run`: verifies the whole bundle and prints the plan; changes nothing.
    pub fn dry_run(&self, chosen: Chosen, ui: &dyn Ui) -> anyhow::Result<()> {
        let work = self.work(&chosen)?;
        if self.new_host.is_some() {
            // the plan needs the bundle's files and snapshot: staged privately, then discarded
            let name = chosen.listing.name.clone();
            let (manifest, size) = self.stage(&work, chosen, ui)?;
            let planned = self.adapt_and_plan(&work, &manifest, size, &name, ui);
            discard(&work);
            let j = planned?;
            ui.plan(&j, true)?;
            ui.say("dry run: the backup verifies and nothing on this host was changed; run again without --dry-run to restore");
            return Ok(());
        }
        ui.say(&format!(
            "verifying {} (nothing will be changed)…",
            chosen.listing.name
        ));
        let expect = Expectation::from_record(chosen.listing.record.as_ref());
        let report = reader::verify(chosen.reader, self.ids, &expect, Box::new(|_| {}))
            .map_err(anyhow::Error::new)
            .context("the backup does not verify; it cannot be restored")?;
        self.target.check_space(report.snapshot.size)?;
        for w in plan::check_versions(&self.session.host, self.target.platform, &report.manifest)? {
            ui.say(&w);
        }
        let steps = self.plan(&work, &report.manifest, self.target.tool.as_ref(), None)?;
        let j = self.journal(&work, &chosen.listing.name, steps);
        ui.plan(&j, true)?;
        ui.say("dry run: the backup verifies and nothing was changed; run again without --dry-run to restore");
        Ok(())
    }

    /// Unpacks and verifies, plans, asks, runs; returns the completed journal.
    pub fn run(&self, chosen: Chosen, ui: &dyn Ui) -> anyhow::Result<Journal> {
        let work = self.work(&chosen)?;
        let name = chosen.listing.name.clone();
        let (manifest, size) = self.stage(&work, chosen, ui)?;
        let mut j = self
            .adapt_and_plan(&work, &manifest, size, &name, ui)
            .inspect_err(|_| discard(&work))
            .context("nothing on this node was changed")?;
        ui.plan(&j, false)?;
        ui.confirm("restore this node")
            .inspect_err(|_| discard(&work))?;
        self.session.run(&mut j, true, ui)?;
        tracing::info!(
            peak_rss_kib = crate::logging::peak_rss_kib().unwrap_or(0),
            "restore finished"
        );
        Ok(j)
    }

    /// `--rejoin --new-host`: stages the bundle, adapts its files to this host (the database
    /// is the cluster's: nothing deleted), checks the recovery member at `via`, plans the join,
    /// shows, asks and runs it (`dry_run`: plans only, the staging thrown away).
    pub fn rejoin_new_host(
        &self,
        chosen: Chosen,
        via: &str,
        dry_run: bool,
        ui: &dyn Ui,
    ) -> anyhow::Result<Option<Journal>> {
        let nh = self
            .new_host
            .context("--rejoin --new-host without a new host")?;
        let nh = NewHost {
            keep_old_nodes: true,
            ..nh.clone()
        };
        let work = self.work(&chosen)?;
        let name = chosen.listing.name.clone();
        let (manifest, _) = self.stage(&work, chosen, ui)?;
        let planned = self.plan_rejoin(&work, &manifest, &nh, via, &name, ui);
        if dry_run || planned.is_err() {
            discard(&work);
        }
        let mut j = planned.context("nothing on this node was changed")?;
        ui.plan(&j, dry_run)?;
        if dry_run {
            ui.say("dry run: the recovery member answers, the backup verifies and nothing on this host was changed; run again without --dry-run to join");
            return Ok(None);
        }
        ui.confirm("join this host to the restored cluster")
            .inspect_err(|_| discard(&work))?;
        self.session.run(&mut j, true, ui)?;
        Ok(Some(j))
    }

    fn plan_rejoin(
        &self,
        work: &Work,
        manifest: &Manifest,
        nh: &NewHost,
        via: &str,
        name: &str,
        ui: &dyn Ui,
    ) -> anyhow::Result<Journal> {
        use super::rejoin_new_host as join;
        let prepared = newhost::prepare(&work.staged, &work.dir, manifest, nh)?;
        for w in &prepared.warnings {
            ui.say(w);
        }
        let etcd = super::platform::kubeadm::kubeadm_etcd_at(prepared.manifests.join("etcd.yaml"))?;
        let access = join::access_from_staging(via, self.etcd, &work.staged);
        let (learner, summary) = super::rejoin::check_cluster(&access, &etcd)?;
        ui.say(&summary);
        let steps = join::steps(&join::Input {
            host: &self.session.host,
            id: &work.id,
            work_dir: &work.dir,
            staged: &work.staged,
            prepared: &prepared,
            via,
            etcd: self.etcd,
            learner,
        })?;
        let mut j = new_journal(
            &work.id,
            Operation::Rejoin,
            Some(name),
            Platform::Kubeadm,
            &work.dir,
            steps,
        );
        j.changes = prepared.changes;
        Ok(j)
    }

    /// The checks of the staged bundle, `--new-host`'s adaptation, and the journal of the plan.
    fn adapt_and_plan(
        &self,
        work: &Work,
        manifest: &Manifest,
        size: u64,
        name: &str,
        ui: &dyn Ui,
    ) -> anyhow::Result<Journal> {
        self.target.check_space(size)?;
        let prepared = match self.new_host {
            Some(nh) => Some(newhost::prepare(&work.staged, &work.dir, manifest, nh)?),
            None => {
                for w in plan::check_versions(&self.session.host, self.target.platform, manifest)? {
                    ui.say(&w);
                }
                None
            }
        };
        for w in prepared.iter().flat_map(|p| &p.warnings) {
            ui.say(w);
        }
        // a new host without etcdutl restores with the tool of the image the bundle names
        let image_tool = match (&self.target.tool, &prepared) {
            (None, Some(nh)) => {
                let image = std::fs::read_to_string(nh.manifests.join("etcd.yaml"))
                    .ok()
                    .and_then(|t| crate::host::etcd_manifest::image(&t));
                Some(RestoreTool::find_or_image(
                    None,
                    &self.session.host,
                    image.as_deref(),
                )?)
            }
            _ => None,
        };
        let tool = self.target.tool.as_ref().or(image_tool.as_ref());
        let steps = self.plan(work, manifest, tool, prepared.as_ref())?;
        let mut j = self.journal(work, name, steps);
        j.changes = prepared.map(|p| p.changes).unwrap_or_default();
        Ok(j)
    }

    fn work(&self, chosen: &Chosen) -> anyhow::Result<Work> {
        if let Some(r) = &chosen.listing.record {
            self.target.check_space(r.snapshot_size)?;
        }
        let (id, dir) = self.session.new_id()?;
        let token = format!(
            "cpbackup-{}-{:08x}",
            id.to_lowercase(),
            rand::random::<u32>()
        );
        Ok(Work {
            staged: dir.join("staged"),
            id,
            dir,
            token,
        })
    }

    /// Unpacks and verifies the bundle into the staging directory; on failure nothing stays.
    fn stage(&self, work: &Work, chosen: Chosen, ui: &dyn Ui) -> anyhow::Result<(Manifest, u64)> {
        ui.say(&format!(
            "unpacking and verifying {} into {} …",
            chosen.listing.name,
            work.staged.display()
        ));
        fsops::create_private_dir(&work.dir)?;
        let bar =
            crate::progress::bytes_bar(chosen.listing.size.unwrap_or(0), self.progress, "unpack");
        let b = bar.clone();
        let started = std::time::Instant::now();
        let expect = Expectation::from_record(chosen.listing.record.as_ref());
        let unpacked = unpack::unpack(
            chosen.reader,
            self.ids,
            &expect,
            &work.staged,
            Box::new(move |n| b.inc(n)),
        );
        bar.finish_and_clear();
        tracing::info!(
            seconds = crate::logging::seconds(started.elapsed().as_secs_f64()),
            ok = unpacked.is_ok(),
            peak_rss_kib = crate::logging::peak_rss_kib().unwrap_or(0),
            "unpacked and verified the backup"
        );
        let u = unpacked.inspect_err(|_| discard(work)).map_err(|e| {
            e.context("the backup cannot be restored; nothing on this node was changed")
        })?;
        Ok((u.manifest, u.snapshot_check.size))
    }

    fn plan(
        &self,
        work: &Work,
        manifest: &Manifest,
        tool: Option<&RestoreTool>,
        new_host: Option<&newhost::Prepared>,
    ) -> anyhow::Result<Vec<super::steps::Step>> {
        plan::restore(&plan::PlanInput {
            host: &self.session.host,
            platform: self.target.platform,
            id: &work.id,
            work_dir: &work.dir,
            staged: &work.staged,
            manifest,
            etcd: self.etcd,
            tool,
            token: &work.token,
            bump: self.bump,
            new_host,
        })
    }

    fn journal(&self, work: &Work, backup: &str, steps: Vec<super::steps::Step>) -> Journal {
        new_journal(
            &work.id,
            Operation::Restore,
            Some(backup),
            self.target.platform,
            &work.dir,
            steps,
        )
    }
}

/// Removes an operation's work directory (the decrypted staging included).
fn discard(work: &Work) {
    let _ = fsops::remove_tree(&work.dir);
}

/// The snapshot-restore tool a restore of this platform runs (`None`: the platform restores
/// without one): `etcdutl` given, else found on the node, else the tool of etcd's image.
pub fn restore_tool(
    platform: Platform,
    host: &HostRoot,
    etcdutl: Option<&Path>,
) -> anyhow::Result<Option<RestoreTool>> {
    if !super::platform::of(platform).needs_tool() {
        return Ok(None);
    }
    let image = super::platform::kubeadm::kubeadm_etcd(host)
        .ok()
        .and_then(|e| e.image);
    RestoreTool::find_or_image(etcdutl, host, image.as_deref()).map(Some)
}
