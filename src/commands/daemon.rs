//! `cpbackup daemon`: the daemon's settings resolved (and re-resolved on SIGHUP), then
//! `crate::daemon::run`.

use crate::cli::DaemonArgs;
use crate::daemon::slot::SlotConfig;
use crate::settings::{self, Settings};

fn resolve(args: &DaemonArgs, s: &Settings) -> anyhow::Result<SlotConfig> {
    settings::daemon::slot_config(
        &args.settings,
        &args.schedule,
        args.metrics_textfile.as_deref(),
        s,
    )
}

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(args: &DaemonArgs, s: &Settings) -> anyhow::Result<()> {
    let cfg = resolve(args, s)?;
    let listen = settings::daemon::metrics_address(args.metrics_address.as_deref(), s);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(crate::daemon::run(cfg, listen, || {
            s.reload().and_then(|new| resolve(args, &new))
        }))
}
