//! Structured logs on stderr: human text on a terminal, JSON with `--log-format json`.
//! `RUST_LOG` overrides the level chosen by `-v`/`-q`. Never log key material.

use clap::ValueEnum;
use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human text (coloured on a terminal).
    Text,
    /// One JSON object per line.
    Json,
}

/// Sets up logging: `-v` debug, `-vv` trace, `-q` warnings only; `RUST_LOG` overrides.
pub fn init(format: LogFormat, verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        _ => "trace",
    };
    // The AWS SDK's own warnings (every credential provider tried, IMDS dumps, checksum notes)
    // are not actionable: cpbackup says what failed and how to fix it. `-vv` shows them.
    let sdk = if verbose >= 2 { "debug" } else { "error" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "warn,cpbackup={level},aws_config={sdk},aws_smithy_runtime={sdk},aws_sdk_s3={sdk},\
             aws_smithy_http_client={sdk},aws_runtime={sdk}"
        ))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
}

/// A duration for a log field: a number of seconds to the hundredth (a number in JSON logs, not
/// a string).
pub fn seconds(secs: f64) -> f64 {
    (secs * 100.0).round() / 100.0
}

/// This process's peak resident memory in KiB (`VmHWM`; children not counted), for the logs
/// of long operations.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}
