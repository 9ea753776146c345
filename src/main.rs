//! The `cpbackup` binary: parse the CLI, load the config, run one command, map errors to exit
//! codes (0 ok, 1 failed, 2 bad usage or config).

use std::process::ExitCode;

use clap::Parser;

use cpbackup::cli::{Cli, Command};
use cpbackup::commands;
use cpbackup::config::{self, Common, FileConfig};
use cpbackup::error::exit_code;
use cpbackup::logging::LogFormat;

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    let file = match FileConfig::load(cli.config.as_deref()) {
        Ok(f) => f,
        Err(e) => return fail(&e),
    };
    config::default_trusted_signers(&mut cli.command, &file);
    let log_format = cli
        .log_format
        .or(file.log_format)
        .unwrap_or(LogFormat::Text);
    cpbackup::logging::init(log_format, cli.verbose, cli.quiet);
    match run(&cli, &file) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn run(cli: &Cli, file: &FileConfig) -> anyhow::Result<()> {
    let common = Common::resolve(cli, file);
    match &cli.command {
        Command::Keygen(a) => commands::keygen::run(a, common.output),
        Command::List(a) => {
            commands::list::run(&config::resolve_stores(&a.stores, file)?, common.output)
        }
        Command::Verify(a) if a.ciphertext_only => commands::verify::run_ciphertext_only(
            &a.which,
            &commands::stores_for(&a.which, &a.stores, file)?,
            common.output,
        ),
        Command::Verify(a) => commands::verify::run(
            &a.which,
            &config::resolve_identities(&a.identities, file)?,
            &commands::stores_for(&a.which, &a.stores, file)?,
            common.output,
            cli.quiet,
        ),
        Command::ExportOpenshift(a) => commands::export_openshift::run(a, file, common.output),
        Command::Prune(a) => commands::prune::run(a, file, common.output),
        Command::Inspect(a) => commands::inspect::run(a, file, common.output),
        Command::Extract(a) => commands::extract::run(a, file, common.output, cli.quiet),
        Command::Restore(a) => commands::restore::run(a, &common, file, cli.quiet),
        Command::Daemon(a) => commands::daemon::run(cli, a, file),
        Command::Backup(a) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?
            .block_on(commands::backup::run(a, &common, file, cli.quiet)),
    }
}

fn fail(e: &anyhow::Error) -> ExitCode {
    eprintln!("cpbackup: error: {e:#}");
    ExitCode::from(exit_code(e))
}
