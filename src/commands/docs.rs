//! `cpbackup completion SHELL` and `cpbackup man`: shell completions and manual pages, both
//! generated from the same clap definition as `--help`, so they never drift from it.

use std::io::Write;

use anyhow::Context;
use clap::CommandFactory;

use crate::cli::{Cli, CompletionArgs, ManArgs};

/// Prints the completion script for one shell.
pub fn completion(args: &CompletionArgs) -> anyhow::Result<()> {
    let mut cmd = Cli::command();
    // generated into memory first: clap_complete panics on a write error (`| head`)
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "cpbackup", &mut script);
    let mut out = std::io::stdout().lock();
    out.write_all(&script)
        .and_then(|()| out.flush())
        .map_err(|e| crate::output::stdout_error(e.into()))
}

/// Prints cpbackup(1), or writes it and one page per command into `--out`.
pub fn man(args: &ManArgs) -> anyhow::Result<()> {
    let cmd = Cli::command();
    let Some(dir) = &args.out else {
        let mut out = std::io::stdout().lock();
        return clap_mangen::Man::new(cmd)
            .render(&mut out)
            .and_then(|()| out.flush())
            .map_err(|e| crate::output::stdout_error(e.into()));
    };
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let write = |name: &str, page: clap::Command| -> anyhow::Result<()> {
        let path = dir.join(format!("{name}.1"));
        let mut buf = Vec::new();
        clap_mangen::Man::new(page).render(&mut buf)?;
        std::fs::write(&path, buf).with_context(|| format!("cannot write {}", path.display()))
    };
    for sub in cmd.get_subcommands() {
        let name = format!("cpbackup-{}", sub.get_name());
        write(&name, sub.clone().name(name.clone()))?;
    }
    write("cpbackup", cmd)?;
    println!("wrote the manual pages into {}", dir.display());
    Ok(())
}
