//! The `cpbackup` binary: parse the CLI, resolve the settings once, run one command, map errors
//! to exit codes (0 ok, 1 failed, 2 bad usage or config).

use std::process::ExitCode;

use clap::Parser;

use cpbackup::cli::Cli;
use cpbackup::commands;
use cpbackup::error::exit_code;
use cpbackup::logging::LogFormat;
use cpbackup::settings::Settings;

fn main() -> ExitCode {
    quiet_on_closed_stdout();
    let mut cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return parse_failure(e),
    };
    let settings = match Settings::load(&cli.global) {
        Ok(s) => s,
        Err(e) => return fail(&e, cli.global.log_format.unwrap_or(LogFormat::Text)),
    };
    commands::apply_file_defaults(&mut cli.command, &settings);
    cpbackup::logging::init(settings.log_format, cli.global.verbose, settings.quiet);
    match commands::run(&cli.command, &settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e, settings.log_format),
    }
}

/// A command line clap refuses: clap's own message, or under `--log-format json` (flag or
/// `CPBACKUP_LOG_FORMAT`) the same as one JSON log object, exit code 2. Help and version are
/// printed as asked.
fn parse_failure(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let shown = matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
        || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand;
    if shown || !json_logs_asked() {
        e.exit();
    }
    let text = e.render().to_string();
    let message = text.trim().trim_start_matches("error: ");
    fail(&cpbackup::error::usage(message), LogFormat::Json)
}

/// Whether the command line or the environment asks for JSON logs (read by hand: the command
/// line did not parse).
fn json_logs_asked() -> bool {
    let args: Vec<String> = std::env::args().collect();
    let flag = args
        .windows(2)
        .any(|w| w[0] == "--log-format" && w[1] == "json")
        || args.iter().any(|a| a == "--log-format=json");
    flag || std::env::var("CPBACKUP_LOG_FORMAT").is_ok_and(|v| v == "json")
}

/// The last word on stderr: a line for people, or under `--log-format json` one more JSON log
/// object (the shape of the others, with the exit code), so a log pipeline parses every line.
fn fail(e: &anyhow::Error, format: LogFormat) -> ExitCode {
    if reader_went_away(e) {
        return ExitCode::SUCCESS;
    }
    let code = exit_code(e);
    match format {
        LogFormat::Text => eprintln!("cpbackup: error: {e:#}"),
        LogFormat::Json => {
            let now = time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            let line = serde_json::json!({
                "timestamp": now,
                "level": "ERROR",
                "fields": {"message": format!("{e:#}"), "exit_code": code},
                "target": "cpbackup",
            });
            eprintln!("{line}");
        }
    }
    ExitCode::from(code)
}

/// `cpbackup extract … | head`: the reader closed stdout. Nothing is wrong and nothing is left to
/// say (as grep and ripgrep do), so the end is quiet and successful. Only a write to stdout is
/// marked so: a broken pipe to a store or to etcd stays a failure.
fn reader_went_away(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<cpbackup::error::StdoutClosed>())
}

/// `println!` panics when stdout is a closed pipe; that one panic ends the process quietly
/// instead (SIGPIPE stays ignored: a restore must never die of a peer closing a socket).
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}
