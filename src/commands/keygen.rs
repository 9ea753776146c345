//! `cpbackup keygen`: a new age identity file (0600) and its recipient on stdout.

use crate::cli::{KeygenArgs, OutputFormat};
use crate::keys;
use crate::output;

#[derive(serde::Serialize)]
struct Report {
    identity_file: String,
    recipient: String,
    fingerprint: String,
}

pub fn run(args: &KeygenArgs, format: OutputFormat) -> anyhow::Result<()> {
    let recipient = keys::generate_identity_file(&args.out)?;
    tracing::info!(
        file = %args.out.display(),
        "identity written (mode 0600): keep it off the control-plane nodes and store a copy offline"
    );
    let report = Report {
        identity_file: args.out.display().to_string(),
        fingerprint: keys::fingerprint(&recipient),
        recipient,
    };
    output::emit(format, &report, |r| r.recipient.clone())
}
