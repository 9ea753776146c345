//! `cpbackup restore`: picks the mode from the flags — a restore from a backup (or its dry
//! run), `--disable-etcd` for the other masters, `--continue`, `--rollback`, `--post-restore`
//! alone — and runs it on `restore::session` / `restore::whole`, with the plan, the
//! confirmation and the final report on the terminal.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{BackupRef, RestoreArgs};
use crate::commands::choose;
use crate::error::usage;
use crate::host::Platform;
use crate::keys::Identities;
use crate::output::{self, OutputFormat};
use crate::restore::RestorePlatform;
use crate::restore::journal::{Journal, Operation};
use crate::restore::session::{Session, Ui};
use crate::restore::steps::Step;
use crate::restore::whole::{Restore, Target};
use crate::settings::Settings;

/// What one invocation does.
enum Mode {
    /// `--post-restore` alone.
    PostOnly,
    Continue,
    Rollback,
    DisableEtcd,
    Rejoin,
    /// From a backup (`--dry-run`: verify and plan only).
    Restore,
}

impl Mode {
    fn of(a: &RestoreArgs) -> Self {
        if a.continue_ {
            Mode::Continue
        } else if a.rollback {
            Mode::Rollback
        } else if a.disable_etcd {
            Mode::DisableEtcd
        } else if a.rejoin {
            Mode::Rejoin
        } else if a.post_restore && a.backup.is_none() && !a.latest {
            Mode::PostOnly
        } else {
            Mode::Restore
        }
    }
}

/// Restore, `--disable-etcd`, `--continue`, `--rollback` or `--post-restore` alone.
pub fn run(args: &RestoreArgs, s: &Settings) -> anyhow::Result<()> {
    let state_dir = s.state_dir(args.state_dir.as_deref());
    let session = Session::open(
        s.host(),
        &state_dir,
        Duration::from_secs(args.wait_timeout.max(1)),
    )?;
    let ui = Terminal {
        yes: args.yes,
        quiet: s.quiet,
        format: s.output,
        restore_dir: session.restore_dir.clone(),
    };
    match Mode::of(args) {
        Mode::PostOnly => {
            let platform = session.existing.as_ref().map(|j| j.platform);
            post(
                args,
                platform.unwrap_or_else(|| Platform::detect(&session.host)),
            )
        }
        Mode::Continue => {
            let etcd = crate::host::EtcdSettings {
                endpoint: args.etcd.etcd_endpoint.clone(),
                cacert: args.etcd.etcd_cacert.clone(),
                cert: args.etcd.etcd_cert.clone(),
                key: args.etcd.etcd_key.clone(),
                ..Default::default()
            };
            let j = session.resume(&ui, &etcd)?;
            ui.finished(&j)?;
            if j.operation == Operation::Restore {
                post(args, j.platform)?;
            }
            Ok(())
        }
        Mode::Rollback => session.roll_back(args.dry_run, &ui),
        Mode::DisableEtcd => {
            session.refuse_if_unfinished()?;
            session.disable_etcd(platform(args, &session), args.dry_run, &ui)
        }
        Mode::Rejoin if args.new_host => {
            session.refuse_if_unfinished()?;
            restore(args, s, &session, &ui)
        }
        Mode::Rejoin => {
            session.refuse_if_unfinished()?;
            if args.backup.is_some() || args.latest {
                return Err(usage(
                    "--rejoin takes no backup: this node joins the restored cluster through --etcd-endpoint. \
                     On a new machine, add --new-host (its files then come from the backup)",
                ));
            }
            if args.etcd.etcd_endpoint.is_none() {
                return Err(usage(
                    "--rejoin needs --etcd-endpoint https://<recovery node>:2379: the restored member this node joins through",
                ));
            }
            let etcd = crate::settings::etcd::resolve(&args.etcd, &s.file.etcd)?;
            let rejoin = crate::restore::rejoin::Rejoin {
                session: &session,
                etcd: &etcd,
            };
            match rejoin.run(platform(args, &session), args.dry_run, &ui)? {
                Some(j) => ui.finished(&j),
                None => Ok(()),
            }
        }
        Mode::Restore => {
            session.refuse_if_unfinished()?;
            restore(args, s, &session, &ui)
        }
    }
}

fn platform(args: &RestoreArgs, session: &Session) -> Platform {
    match args.platform {
        RestorePlatform::Openshift => Platform::Openshift,
        RestorePlatform::Kubeadm => Platform::Kubeadm,
        RestorePlatform::Auto => Platform::detect(&session.host),
    }
}

/// A restore from a backup (or, with `--rejoin --new-host`, a join whose files come from
/// one): everything that can be checked without side effects first.
fn restore(
    args: &RestoreArgs,
    s: &Settings,
    session: &Session,
    ui: &Terminal,
) -> anyhow::Result<()> {
    // --rejoin --new-host: the restored member to join through
    let via = match (args.rejoin, &args.etcd.etcd_endpoint) {
        (false, _) => None,
        (true, Some(e)) => Some(e.clone()),
        (true, None) => {
            return Err(usage(
                "--rejoin needs --etcd-endpoint https://<recovery node>:2379: the restored member this node joins through",
            ));
        }
    };
    let which = BackupRef {
        backup: args.backup.clone(),
        latest: args.latest,
        cluster: args.cluster.clone(),
        node: args.from_node.clone(),
        trust: args.trust.clone(),
    };
    crate::commands::check_backup_arg(&which, "restore")?;
    if !args.dry_run {
        // Before the bundle is fetched and decrypted: a question nobody can answer would only
        // come after minutes of work.
        ui.can_confirm("restore")?;
    }
    let new_host = new_host(args)?;
    if new_host.is_some() && args.trust.trust_signers.is_empty() {
        ui.say(
            "WARNING: a new host runs the backup's own static pod manifests (images, commands, host mounts), \
             and anyone with the recipient and write access to the store can write a backup. \
             Pass --trust-signer (or set trusted_signers) so that only backups signed by your masters are accepted",
        );
    }
    let (platform, etcdutl) = match via {
        Some(_) => (Platform::Kubeadm, None), // a join restores no snapshot
        None => (platform(args, session), args.etcdutl.as_deref()),
    };
    let target = Target::check(&session.host, platform, etcdutl, new_host.is_some())?;
    let etcd = crate::settings::etcd::resolve(&args.etcd, &s.file.etcd)?;
    let ids = Identities::load(&s.identities(&args.identities)?)?;
    let stores = crate::store::open_all(&crate::commands::stores_for(&which, &args.stores, s)?)?;
    let chosen = choose(&which, &stores)?;
    let restore = Restore {
        session,
        target: &target,
        etcd: &etcd,
        ids: &ids,
        progress: s.progress(),
        bump: args
            .bump_revision
            .unwrap_or(crate::restore::plan::DEFAULT_BUMP),
        new_host: new_host.as_ref(),
    };
    if let Some(via) = via {
        return match restore.rejoin_new_host(chosen, &via, args.dry_run, ui)? {
            Some(j) => ui.finished(&j),
            None => Ok(()),
        };
    }
    if args.dry_run {
        return restore.dry_run(chosen, ui);
    }
    let j = restore.run(chosen, ui)?;
    ui.finished(&j)?;
    post(args, j.platform)
}

/// `--new-host --node-name N --node-ip IP`, checked.
fn new_host(args: &RestoreArgs) -> anyhow::Result<Option<crate::restore::newhost::NewHost>> {
    if !args.new_host {
        return Ok(None);
    }
    let (Some(name), Some(ip)) = (&args.node_name, args.node_ip) else {
        return Err(usage(
            "--new-host needs --node-name NAME and --node-ip IP: the name and address this host takes in the cluster",
        ));
    };
    crate::restore::newhost::NewHost::new(name, ip, args.keep_old_nodes).map(Some)
}

/// `--post-restore`, when asked for.
fn post(args: &RestoreArgs, platform: Platform) -> anyhow::Result<()> {
    if !args.post_restore {
        return Ok(());
    }
    let settle = crate::kubeapi::openshift::Settle {
        timeout: Duration::from_secs(args.settle_timeout),
        stable_for: Duration::from_secs(args.stable_period),
        poll: Duration::from_secs(5),
    };
    crate::restore::post::run(platform, args.kubeconfig.as_deref(), settle, &mut |l| {
        eprintln!("{l}")
    })
}

/// The operator's terminal: plans and reports on stdout, questions and progress on stderr.
struct Terminal {
    yes: bool,
    quiet: bool,
    format: OutputFormat,
    restore_dir: PathBuf,
}

#[derive(serde::Serialize)]
struct PlanReport<'a> {
    operation: Operation,
    dry_run: bool,
    backup: Option<&'a str>,
    platform: Platform,
    journal: PathBuf,
    steps: Vec<&'a Step>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    changes: &'a [String],
}

impl Ui for Terminal {
    fn plan(&self, j: &Journal, dry_run: bool) -> anyhow::Result<()> {
        // JSON is one document per run: the plan of a dry run, or the outcome of a real one
        // (which names the journal holding the plan).
        if self.format == OutputFormat::Json && !dry_run {
            return Ok(());
        }
        let report = PlanReport {
            operation: j.operation,
            dry_run,
            backup: j.backup.as_deref(),
            platform: j.platform,
            journal: Journal::path(&self.restore_dir),
            steps: j.steps.iter().map(|s| &s.step).collect(),
            changes: &j.changes,
        };
        output::emit(self.format, "RestorePlan", &report, |r| {
            let mut s = format!(
                "{} plan ({} node{}), journal {}:",
                r.operation.as_str(),
                r.platform.as_str(),
                r.backup
                    .map(|b| format!(", backup {b}"))
                    .unwrap_or_default(),
                r.journal.display()
            );
            for (i, step) in r.steps.iter().enumerate() {
                s.push_str(&format!("\n  {}. {}", i + 1, step.describe()));
            }
            if !r.changes.is_empty() {
                s.push_str("\nfor this new host, the backup's files change so:");
                for c in r.changes {
                    s.push_str(&format!("\n  {c}"));
                }
            }
            s
        })
    }

    /// Asks on a terminal; without one, --yes is required.
    fn confirm(&self, what: &str) -> anyhow::Result<()> {
        if self.yes {
            return Ok(());
        }
        self.can_confirm(what)?;
        eprint!("Type yes to {what}: ");
        std::io::stderr().flush()?;
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        if line.trim() != "yes" {
            anyhow::bail!("not confirmed; nothing was changed");
        }
        Ok(())
    }

    fn say(&self, line: &str) {
        eprintln!("{line}");
    }

    fn quiet(&self) -> bool {
        self.quiet
    }
}

impl Terminal {
    /// Whether a confirmation can be had: --yes, or a terminal to ask on.
    fn can_confirm(&self, what: &str) -> anyhow::Result<()> {
        if self.yes || std::io::stdin().is_terminal() {
            return Ok(());
        }
        Err(usage(format!(
            "refusing to {what} without confirmation: no terminal to ask on. Read the plan (--dry-run), then pass --yes"
        )))
    }

    /// The report of a completed operation: where the old data is, what to do next.
    fn finished(&self, j: &Journal) -> anyhow::Result<()> {
        let aside: Vec<String> = j
            .steps
            .iter()
            .filter_map(|s| s.step.keeps_old_data_in())
            .map(|p| p.display().to_string())
            .collect();
        // The placeholder of the recovery member's URL, where this restore knows it.
        let served = j.steps.iter().find_map(|s| match &s.step {
            Step::WaitServing(w) => Some(w.target.endpoint.clone()),
            _ => None,
        });
        let next: Vec<String> = crate::restore::post::next_steps(j.platform)
            .into_iter()
            .map(|n| match &served {
                Some(url) => n.replace("https://<recovery-ip>:2379", url),
                None => n,
            })
            .collect();
        let json = serde_json::json!({
            "operation": j.operation,
            "id": j.id,
            "backup": j.backup,
            "outcome": "completed",
            "journal": Journal::path(&self.restore_dir),
            "steps": j.steps.iter().map(|s| &s.step).collect::<Vec<_>>(),
            "previous_etcd_data": aside,
            "next_steps": next,
        });
        output::emit(self.format, "RestoreReport", &json, |_| {
            let mut s = format!("{} {} completed.", j.operation.as_str(), j.id);
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
        })
    }
}
