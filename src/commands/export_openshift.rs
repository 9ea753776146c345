//! `cpbackup export-openshift`: a backup as the two files OpenShift's restore scripts expect.

use crate::bundle::export;
use crate::cli::ExportArgs;
use crate::commands::choose;
use crate::keys::Identities;
use crate::output;
use crate::settings::Settings;

/// Writes the two files; refuses to replace existing ones.
pub fn run(args: &ExportArgs, s: &Settings) -> anyhow::Result<()> {
    crate::commands::check_backup_arg(&args.which, "export-openshift")?;
    let ids = Identities::load(&s.identities(&args.identities)?)?;
    let stores =
        crate::store::open_all(&crate::commands::stores_for(&args.which, &args.stores, s)?)?;
    let chosen = choose(&args.which, &stores)?;
    let out = export::export_openshift(
        chosen.reader,
        &ids,
        &crate::bundle::check::Expectation::from_record(chosen.listing.record.as_ref()),
        &args.out,
    )
    .map_err(|e| e.context(format!("exporting {}", chosen.listing.name)))?;
    tracing::warn!(dir = %args.out.display(), "the exported files are NOT encrypted and hold every control-plane key; delete them after the restore");
    output::emit(s.output, "ExportReport", &out, |o| {
        let mut s = format!(
            "{}\n{}",
            o.snapshot.display(),
            o.static_kuberesources.display()
        );
        if let Some(r) = &o.revision_json {
            s.push_str(&format!("\n{}", r.display()));
        }
        s
    })
}
