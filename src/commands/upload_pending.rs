//! `cpbackup backup --upload-pending`: the pending-copy engine (`store::pending::upload`) under
//! the node lock, and its report.

use crate::lock::NodeLock;
use crate::output;
use crate::settings::Settings;
use crate::settings::flags::BackupSettings;
use crate::store::pending::upload::upload_all;

/// Copies every pending local backup; exit 1 when a copy failed (it stays pending).
pub fn run(args: &BackupSettings, s: &Settings) -> anyhow::Result<()> {
    let specs = s.write_stores(&args.stores, args.state_dir.as_deref())?;
    let state_dir = s.state_dir(args.state_dir.as_deref());
    let _lock = NodeLock::acquire(&state_dir, "upload-pending")?;
    let done = upload_all(&specs)?;
    let failed = done.iter().filter(|c| !c.ok).count();
    output::emit_each(s.output, "PendingCopy", &done, |d| {
        if d.is_empty() {
            return "nothing pending".into();
        }
        d.iter()
            .map(|c| {
                format!(
                    "{} {} -> {}{}",
                    if c.ok { "uploaded" } else { "FAILED  " },
                    c.backup,
                    c.to,
                    c.error
                        .as_deref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    if failed > 0 {
        anyhow::bail!("{failed} pending upload(s) failed; they stay pending");
    }
    Ok(())
}
