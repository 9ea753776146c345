//! The `cpbackup` binary: parse the CLI, resolve the settings once, run one command, map errors
//! to exit codes (0 ok, 1 failed, 2 bad usage or config).

use std::process::ExitCode;

use clap::Parser;

use cpbackup::cli::Cli;
use cpbackup::commands;
use cpbackup::error::exit_code;
use cpbackup::settings::Settings;

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    let settings = match Settings::load(&cli.global) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    commands::apply_file_defaults(&mut cli.command, &settings);
    cpbackup::logging::init(settings.log_format, cli.global.verbose, settings.quiet);
    match commands::run(&cli.command, &settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(e: &anyhow::Error) -> ExitCode {
    eprintln!("cpbackup: error: {e:#}");
    ExitCode::from(exit_code(e))
}
