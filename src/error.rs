//! Error classification shared by every command: what maps to which exit code.
//!
//! Exit codes are a contract: 0 success, 1 the operation failed, 2 bad usage or configuration.
//! Everything is an `anyhow::Error` at the edge; a [`UsageError`] anywhere in its chain makes the
//! process exit with 2.

use std::fmt;

/// Exit code for a failed operation.
pub const EXIT_FAILED: u8 = 1;
/// Exit code for bad usage or configuration.
pub const EXIT_USAGE: u8 = 2;

/// Bad usage or configuration: the user must change a flag, a key or a file before retrying.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Shorthand to build an `anyhow::Error` that exits with code 2.
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.into()))
}

/// Stdout's reader went away (`cpbackup … | head`): nothing failed and nothing is left to say.
/// Only errors from writing stdout become this, so a broken pipe anywhere else (a store, etcd)
/// is still a failure.
#[derive(Debug)]
pub struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stdout was closed by its reader")
    }
}

impl std::error::Error for StdoutClosed {}

/// The exit code an error maps to.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if err.chain().any(|e| e.is::<UsageError>()) {
        EXIT_USAGE
    } else {
        EXIT_FAILED
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn usage_errors_exit_2_even_with_context() {
        let e: anyhow::Result<()> = Err(usage("bad key"));
        let e = e.context("loading config").unwrap_err();
        assert_eq!(exit_code(&e), EXIT_USAGE);
        assert_eq!(exit_code(&anyhow::anyhow!("io")), EXIT_FAILED);
    }
}
