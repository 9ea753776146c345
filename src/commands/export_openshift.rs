//! `cpbackup export-openshift`: a backup as the two files OpenShift's restore scripts expect.

use crate::bundle::export;
use crate::cli::ExportArgs;
use crate::commands::{choose, open_stores};
use crate::config::{self, FileConfig};
use crate::keys::Identities;
use crate::output;
use crate::output::OutputFormat;

pub fn run(args: &ExportArgs, file: &FileConfig, format: OutputFormat) -> anyhow::Result<()> {
    let ids = Identities::load(&config::resolve_identities(&args.identities, file)?)?;
    let stores = open_stores(&crate::commands::stores_for(
        &args.which,
        &args.stores,
        file,
    )?)?;
    let chosen = choose(&args.which, &stores)?;
    let out = export::export_openshift(
        chosen.reader,
        &ids,
        &crate::bundle::check::Expectation::from_record(chosen.listing.record.as_ref()),
        &args.out,
    )
    .map_err(|e| e.context(format!("exporting {}", chosen.listing.name)))?;
    tracing::warn!(dir = %args.out.display(), "the exported files are NOT encrypted and hold every control-plane key; delete them after the restore");
    output::emit(format, &out, |o| {
        format!(
            "{}\n{}",
            o.snapshot.display(),
            o.static_kuberesources.display()
        )
    })
}
