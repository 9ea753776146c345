//! `cpbackup restore`: whole-cluster restore on this node, `--disable-etcd` for the other
//! masters, `--continue` and `--rollback` from the journal.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use crate::bundle::reader::{self, Expectation};
use crate::bundle::unpack;
use crate::cli::{BackupRef, RestoreArgs};
use crate::commands::choose;
use crate::error::usage;
use crate::host::Platform;
use crate::keys::Identities;
use crate::lock::NodeLock;
use crate::output;
use crate::output::OutputFormat;
use crate::restore::RestorePlatform;
use crate::restore::journal::{Journal, JournalStep, Operation, Outcome, StepState};
use crate::restore::steps::{Ctx, Step};
use crate::restore::tools::RestoreTool;
use crate::restore::{fsops, plan, rollback, run_steps};
use crate::settings::Settings;

#[derive(serde::Serialize)]
struct PlanReport<'a> {
    operation: Operation,
    dry_run: bool,
    backup: Option<&'a str>,
    platform: Platform,
    journal: PathBuf,
    steps: Vec<&'a Step>,
}

/// Restore, `--disable-etcd`, `--continue`, `--rollback` or `--post-restore` alone.
pub fn run(args: &RestoreArgs, s: &Settings) -> anyhow::Result<()> {
    let host = s.host();
    let quiet = s.quiet;
    let state_dir = s.state_dir(args.state_dir.as_deref());
    let restore_dir = state_dir.join("restore");
    let _lock = NodeLock::acquire(&state_dir, "restore")?;
    let existing = Journal::load(&restore_dir)?;
    remove_stale_staging(&restore_dir, existing.as_ref().filter(|j| j.in_progress()));
    let timeout = Duration::from_secs(args.wait_timeout.max(1));
    let ctx_for = |j: &Journal, staging_verified: bool| Ctx {
        host_root: s.host_root.clone(),
        staging_verified,
        wait_timeout: timeout,
        rolled_back: j.work_dir.join("rolled-back"),
    };

    let post = |j: Option<&Journal>| -> anyhow::Result<()> {
        if !args.post_restore {
            return Ok(());
        }
        post_restore(
            args,
            j.map(|j| j.platform)
                .unwrap_or_else(|| Platform::detect(&host)),
        )
    };
    if args.post_restore
        && args.backup.is_none()
        && !args.latest
        && !args.continue_
        && !args.rollback
        && !args.disable_etcd
    {
        return post(existing.as_ref());
    }
    if args.continue_ {
        let mut j = existing.filter(Journal::in_progress).ok_or_else(|| {
            usage("no restore is in progress on this node (no unfinished journal): nothing to continue")
        })?;
        let left = j
            .steps
            .iter()
            .filter(|s| s.state != StepState::Done)
            .count();
        eprintln!(
            "continuing {} {}: {left} step(s) left",
            op_name(j.operation),
            j.id
        );
        let ctx = ctx_for(&j, false);
        run_steps(&mut j, &restore_dir, &ctx, quiet)?;
        finished(&j, s.output)?;
        return if j.operation == Operation::Restore {
            post(Some(&j))
        } else {
            Ok(())
        };
    }
    if args.rollback {
        let mut j = existing
            .filter(|j| j.outcome != Some(Outcome::RolledBack))
            .ok_or_else(|| usage("no restore to roll back on this node"))?;
        let undo: Vec<&Step> = j
            .steps
            .iter()
            .rev()
            .filter(|s| matches!(s.state, StepState::Running | StepState::Done))
            .map(|s| &s.step)
            .collect();
        eprintln!(
            "rolling back {} {}: {} step(s) to undo",
            op_name(j.operation),
            j.id,
            undo.len()
        );
        for (i, s) in undo.iter().enumerate() {
            eprintln!("  {}. undo: {}", i + 1, s.describe());
        }
        if args.dry_run {
            return Ok(());
        }
        if j.outcome == Some(Outcome::Completed) {
            eprintln!(
                "WARNING: this restore completed; rolling back discards every write made to the restored etcd since."
            );
        }
        confirm(args.yes, "roll back")?;
        let ctx = ctx_for(&j, false);
        rollback(&mut j, &restore_dir, &ctx, quiet)?;
        remove_stale_staging(&restore_dir, None);
        eprintln!(
            "rolled back: the node's original manifests, files and etcd data are back in place"
        );
        return Ok(());
    }
    if let Some(j) = existing.as_ref().filter(|j| j.in_progress()) {
        return Err(usage(format!(
            "a {} ({}) is unfinished on this node (journal {}): finish it with `cpbackup restore --continue` or undo it with `cpbackup restore --rollback`",
            op_name(j.operation),
            j.id,
            Journal::path(&restore_dir).display()
        )));
    }
    let platform = match args.platform {
        RestorePlatform::Openshift => Platform::Openshift,
        RestorePlatform::Kubeadm => Platform::Kubeadm,
        RestorePlatform::Auto => Platform::detect(&host),
    };
    let id = time::OffsetDateTime::now_utc().format(time::macros::format_description!(
        "[year][month][day]T[hour][minute][second]Z"
    ))?;
    let work_dir = restore_dir.join(&id);

    if args.disable_etcd {
        let steps = plan::disable_etcd(&host, platform, &work_dir)?;
        let mut j = new_journal(
            &id,
            Operation::DisableEtcd,
            None,
            platform,
            &work_dir,
            steps,
        );
        print_plan(&j, &restore_dir, args.dry_run, s.output)?;
        if args.dry_run {
            return Ok(());
        }
        confirm(args.yes, "stop etcd on this node")?;
        let ctx = ctx_for(&j, false);
        run_steps(&mut j, &restore_dir, &ctx, quiet)?;
        eprintln!(
            "etcd is stopped on this node (its manifest is in {}). Now restore on the recovery master; \
             `cpbackup restore --rollback` here starts etcd again.",
            work_dir.join("manifests-stopped").display()
        );
        return Ok(());
    }

    // Everything that can be checked without side effects, first.
    if args.backup.is_none() && !args.latest {
        return Err(usage(
            "which backup? Give a name from `cpbackup list`, a path to a .cpb file, or --latest",
        ));
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
    let etcd = crate::settings::etcd::resolve(&args.etcd, &s.file.etcd)?;
    let ids = Identities::load(&s.identities(&args.identities)?)?;
    let tool = match platform {
        Platform::Openshift => None,
        _ => Some(RestoreTool::find(args.etcdutl.as_deref(), &host)?),
    };
    // kubeadm: the etcd manifest must be readable now (and names the data directory).
    let data_dir_host = match platform {
        Platform::Openshift => plan::OPENSHIFT_DATA_DIR.to_owned(),
        _ => plan::kubeadm_etcd(&host)?.data_dir_host,
    };
    let which = BackupRef {
        backup: args.backup.clone(),
        latest: args.latest,
        cluster: args.cluster.clone(),
        node: args.from_node.clone(),
        trust: args.trust.clone(),
    };
    let stores = crate::store::open_all(&crate::commands::stores_for(&which, &args.stores, s)?)?;
    let chosen = choose(&which, &stores)?;
    let data_dir = host.path(&data_dir_host);
    if let Some(r) = &chosen.listing.record {
        check_space(&data_dir, r.snapshot_size)?;
    }
    let token = format!(
        "cpbackup-{}-{:08x}",
        id.to_lowercase(),
        rand::random::<u32>()
    );
    let staged = work_dir.join("staged");

    if args.dry_run {
        eprintln!(
            "verifying {} (nothing will be changed)…",
            chosen.listing.name
        );
        let expect = Expectation::from_record(chosen.listing.record.as_ref());
        let report = reader::verify(chosen.reader, &ids, &expect, Box::new(|_| {}))
            .map_err(anyhow::Error::new)
            .context("the backup does not verify; it cannot be restored")?;
        check_space(&data_dir, report.snapshot.size)?;
        let steps = plan::restore(&plan::PlanInput {
            host: &host,
            platform,
            id: &id,
            work_dir: &work_dir,
            staged: &staged,
            manifest: &report.manifest,
            etcd: &etcd,
            tool: tool.as_ref(),
            token: &token,
        })?;
        let j = new_journal(
            &id,
            Operation::Restore,
            Some(&chosen.listing.name),
            platform,
            &work_dir,
            steps,
        );
        print_plan(&j, &restore_dir, true, s.output)?;
        eprintln!(
            "dry run: the backup verifies and nothing was changed; run again without --dry-run to restore"
        );
        return Ok(());
    }

    eprintln!(
        "unpacking and verifying {} into {} …",
        chosen.listing.name,
        staged.display()
    );
    fsops::create_private_dir(&work_dir)?;
    let bar = crate::progress::bytes_bar(chosen.listing.size.unwrap_or(0), s.progress(), "unpack");
    let b = bar.clone();
    let started = std::time::Instant::now();
    let expect = Expectation::from_record(chosen.listing.record.as_ref());
    let unpacked = unpack::unpack(
        chosen.reader,
        &ids,
        &expect,
        &staged,
        Box::new(move |n| b.inc(n)),
    );
    bar.finish_and_clear();
    tracing::info!(
        seconds = format!("{:.2}", started.elapsed().as_secs_f64()),
        ok = unpacked.is_ok(),
        "unpacked and verified the backup"
    );
    let unpacked = match unpacked {
        Ok(u) => u,
        Err(e) => {
            let _ = fsops::remove_tree(&work_dir);
            return Err(
                e.context("the backup cannot be restored; nothing on this node was changed")
            );
        }
    };
    let planned = check_space(&data_dir, unpacked.snapshot_check.size).and_then(|()| {
        plan::restore(&plan::PlanInput {
            host: &host,
            platform,
            id: &id,
            work_dir: &work_dir,
            staged: &staged,
            manifest: &unpacked.manifest,
            etcd: &etcd,
            tool: tool.as_ref(),
            token: &token,
        })
    });
    let steps = match planned {
        Ok(s) => s,
        Err(e) => {
            let _ = fsops::remove_tree(&work_dir);
            return Err(e.context("nothing on this node was changed"));
        }
    };
    let mut j = new_journal(
        &id,
        Operation::Restore,
        Some(&chosen.listing.name),
        platform,
        &work_dir,
        steps,
    );
    print_plan(&j, &restore_dir, false, s.output)?;
    if let Err(e) = confirm(args.yes, "restore this node") {
        let _ = fsops::remove_tree(&work_dir);
        return Err(e);
    }
    let ctx = ctx_for(&j, true);
    run_steps(&mut j, &restore_dir, &ctx, quiet)?;
    finished(&j, s.output)?;
    post(Some(&j))
}

/// Removes decrypted staging directories (`<restore dir>/<id>/staged`) that no unfinished
/// journal needs: what a restore killed while unpacking, or one rolled back, left behind.
fn remove_stale_staging(restore_dir: &std::path::Path, keep: Option<&Journal>) {
    let Ok(dirs) = std::fs::read_dir(restore_dir) else {
        return;
    };
    for d in dirs.flatten() {
        let work = d.path();
        let staged = work.join("staged");
        if keep.is_some_and(|j| j.work_dir == work)
            || !staged.symlink_metadata().is_ok_and(|m| m.is_dir())
        {
            continue;
        }
        match fsops::remove_tree(&staged) {
            Ok(()) => {
                eprintln!(
                    "removed {}: decrypted backup content left by an interrupted or rolled-back restore",
                    staged.display()
                );
                if fsops::is_empty_dir(&work) {
                    let _ = std::fs::remove_dir(&work);
                }
            }
            Err(e) => eprintln!(
                "WARNING: cannot remove the decrypted staging directory {}: {e:#}; remove it by hand",
                staged.display()
            ),
        }
    }
}

/// `--post-restore`: the platform's follow-up steps through the API.
fn post_restore(args: &RestoreArgs, platform: Platform) -> anyhow::Result<()> {
    if platform != Platform::Openshift {
        eprintln!(
            "--post-restore: nothing to do through the API on a {platform:?} node; follow the next steps above"
        );
        return Ok(());
    }
    let kubeconfig = args
        .kubeconfig
        .clone()
        .context("--post-restore needs --kubeconfig")?;
    let settle = crate::kubeapi::openshift::Settle {
        timeout: Duration::from_secs(args.settle_timeout),
        stable_for: Duration::from_secs(args.stable_period),
        poll: Duration::from_secs(5),
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let client = crate::kubeapi::client_from_kubeconfig(&kubeconfig).await?;
            crate::kubeapi::openshift::post_restore(&client, settle, &mut |s| {
                eprintln!("post-restore: {s}")
            })
            .await
        })
        .context("the post-restore steps failed; fix the cause and run `cpbackup restore --post-restore --kubeconfig …` again")
}

fn op_name(op: Operation) -> &'static str {
    match op {
        Operation::Restore => "restore",
        Operation::DisableEtcd => "disable-etcd",
    }
}

fn new_journal(
    id: &str,
    operation: Operation,
    backup: Option<&str>,
    platform: Platform,
    work_dir: &std::path::Path,
    steps: Vec<Step>,
) -> Journal {
    Journal {
        version: 1,
        id: id.to_owned(),
        operation,
        created: time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        backup: backup.map(str::to_owned),
        platform,
        work_dir: work_dir.to_path_buf(),
        steps: steps
            .into_iter()
            .map(|step| JournalStep {
                step,
                state: StepState::Pending,
            })
            .collect(),
        outcome: None,
    }
}

fn check_space(data_dir: &std::path::Path, snapshot: u64) -> anyhow::Result<()> {
    let free = fsops::free_bytes(data_dir)?;
    if free < snapshot.saturating_mul(2) {
        return Err(usage(format!(
            "{} has {} free; a restore of this {} snapshot needs at least twice that ({}). Free some space first; nothing was changed",
            data_dir.display(),
            output::human_size(free),
            output::human_size(snapshot),
            output::human_size(snapshot.saturating_mul(2))
        )));
    }
    Ok(())
}

fn print_plan(
    j: &Journal,
    restore_dir: &std::path::Path,
    dry_run: bool,
    format: OutputFormat,
) -> anyhow::Result<()> {
    let report = PlanReport {
        operation: j.operation,
        dry_run,
        backup: j.backup.as_deref(),
        platform: j.platform,
        journal: Journal::path(restore_dir),
        steps: j.steps.iter().map(|s| &s.step).collect(),
    };
    output::emit(format, &report, |r| {
        let mut s = format!(
            "{} plan ({:?} node{}), journal {}:",
            op_name(r.operation),
            r.platform,
            r.backup
                .map(|b| format!(", backup {b}"))
                .unwrap_or_default(),
            r.journal.display()
        );
        for (i, step) in r.steps.iter().enumerate() {
            s.push_str(&format!("\n  {}. {}", i + 1, step.describe()));
        }
        s
    })
}

/// Asks on a terminal; without one, --yes is required.
fn confirm(yes: bool, what: &str) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(usage(format!(
            "refusing to {what} without confirmation: no terminal to ask on. Read the plan (--dry-run), then pass --yes"
        )));
    }
    eprint!("Type yes to {what}: ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    if line.trim() != "yes" {
        anyhow::bail!("not confirmed; nothing was changed");
    }
    Ok(())
}

fn finished(j: &Journal, format: OutputFormat) -> anyhow::Result<()> {
    let aside: Vec<String> = j
        .steps
        .iter()
        .filter_map(|s| match &s.step {
            Step::MoveAside { to, .. } | Step::MoveContents { to, .. } => {
                Some(to.display().to_string())
            }
            _ => None,
        })
        .collect();
    let next = next_steps(j.platform);
    output::emit(
        format,
        &serde_json::json!({
            "operation": j.operation,
            "id": j.id,
            "backup": j.backup,
            "outcome": "completed",
            "previous_etcd_data": aside,
            "next_steps": next,
        }),
        |_| {
            let mut s = format!("{} {} completed.", op_name(j.operation), j.id);
            for a in &aside {
                s.push_str(&format!("\nThe previous etcd data is kept in {a}."));
            }
            if j.operation == Operation::Restore {
                s.push_str("\nNext steps:");
                for (i, n) in next.iter().enumerate() {
                    s.push_str(&format!("\n  {}. {n}", i + 1));
                }
            }
            s
        },
    )
}

/// What the operator does after the restore, per platform.
pub fn next_steps(platform: Platform) -> Vec<String> {
    match platform {
        Platform::Openshift => vec![
            "Wait for the API: `oc get nodes` (use the recovery kubeconfig /etc/kubernetes/static-pod-resources/kube-apiserver-certs/secrets/node-kubeconfigs/localhost-recovery.kubeconfig if needed).".into(),
            "OpenShift 4.18 and later: `oc patch etcd/cluster --type=merge -p '{\"spec\": {\"unsupportedConfigOverrides\": {\"useUnsupportedUnsafeNonHANonProductionUnstableEtcd\": true}}}'`, then `oc adm wait-for-stable-cluster`, then `oc patch etcd/cluster --type=merge -p '{\"spec\": {\"unsupportedConfigOverrides\": null}}'`.".into(),
            "Before 4.18: for each of etcd, kubeapiserver, kubecontrollermanager, kubescheduler: `oc patch <resource> cluster --type=merge -p '{\"spec\": {\"forceRedeploymentReason\": \"recovery-'\"$(date --rfc-3339=ns)\"'\"}}'` and wait until NodeInstallerProgressing shows AllNodesAtLatestRevision.".into(),
            "If nodes stay NotReady: approve pending CSRs (`oc get csr`, `oc adm certificate approve …`) and restart the kubelet on every node.".into(),
            "Or let cpbackup do the API steps: `cpbackup restore --post-restore --kubeconfig …`.".into(),
        ],
        _ => vec![
            "etcd runs as a single-member cluster with the backup's data; check it: `etcdctl endpoint status -w table`.".into(),
            "On every other control-plane node (after `cpbackup restore --disable-etcd` there): move its /var/lib/etcd aside, add it back with `etcdctl member add <name> --peer-urls=https://<ip>:2380` from here, then start it with --initial-cluster-state=existing.".into(),
            "Restart the kubelet on every node (`systemctl restart kubelet`) and check `kubectl get nodes`; controllers relist from the restored revision.".into(),
        ],
    }
}
