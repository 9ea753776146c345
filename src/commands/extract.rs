//! `cpbackup extract`: one namespace (or a key prefix) from a backup or a bare snapshot, decoded
//! offline, written as YAML/JSON that re-applies cleanly, or applied to a live cluster.

use std::collections::HashMap;

use anyhow::Context;

use crate::bundle::reader;
use crate::cli::{DryRun, ExtractArgs};
use crate::commands::{BackupInput, SnapshotInput, map_file, snapshot_input};
use crate::error::usage;
use crate::extract::reapply::Options;
use crate::extract::select::Filter;
use crate::extract::{self, Extraction, write};
use crate::k8s::decode::Decoder;
use crate::k8s::encryption::Keyring;
use crate::k8s::schema::Schema;
use crate::kubeapi::apply::{self, ApplyOptions};
use crate::output::OutputFormat;
use crate::settings::Settings;

/// Bundle entries looked at to find the encryption configuration (small files only).
const SMALL_FILE: u64 = 1024 * 1024;
const KUBEADM_APISERVER_MANIFEST: &str = "manifests/kube-apiserver.yaml";
const OPENSHIFT_ENCRYPTION_CONFIG: &str = "secrets/encryption-config/encryption-config";

/// The snapshot to read and the encryption configuration that came with it.
struct Source {
    name: String,
    snapshot: memmap2::Mmap,
    /// (where it came from, contents) of the bundle's EncryptionConfiguration.
    bundled_encryption: Option<(String, String)>,
    /// The Kubernetes version the bundle's manifest records.
    kubernetes_version: Option<String>,
}

#[derive(serde::Serialize)]
struct Report<'a> {
    source: &'a str,
    revision: i64,
    objects: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    written: Option<&'a write::Written>,
    skipped: &'a [extract::reapply::Skipped],
    undecoded: &'a [write::Undecoded],
    cluster_dependencies: &'a [extract::deps::Dependency],
    warnings: &'a [String],
    /// Objects written without protobuf fields the schema does not know.
    lossy: Vec<extract::Lossy>,
    /// The Kubernetes releases the built-in schema covers (`1.30` … `1.35`).
    schema_releases: &'static [&'static str],
    /// Secrets among the objects (written in clear text).
    secrets: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    applied: Option<&'a [apply::Applied]>,
}

impl<'a> Report<'a> {
    fn new(source: &'a str, found: &'a Extraction) -> Self {
        Report {
            source,
            revision: found.revision,
            objects: found.objects.len(),
            written: None,
            skipped: &found.skipped,
            undecoded: &found.undecoded,
            cluster_dependencies: &found.dependencies,
            warnings: &found.warnings,
            lossy: found.lossy(),
            schema_releases: Schema::releases(),
            secrets: found.objects.iter().filter(|o| o.is_secret()).count(),
            applied: None,
        }
    }
}

/// Extracts, writes or applies; the report goes to stderr when the objects go to stdout.
pub fn run(args: &ExtractArgs, s: &Settings) -> anyhow::Result<()> {
    let format = s.output;
    let filter = filter(args)?;
    let source = open_source(args, s)?;
    let decoder = decoder(args, &source)?;
    let opts = Options {
        raw: args.raw,
        keep_status: args.keep_status,
        keep_owned: args.keep_owned,
        to_namespace: args.to_namespace.clone(),
    };
    let mut found = extract::extract(
        &source.snapshot,
        &filter,
        &decoder,
        &opts,
        args.with_cluster_deps,
    )
    .with_context(|| format!("reading {}", source.name))?;
    found.warnings.extend(newer_cluster(&source, &found));
    // Everything needed is copied out: unmap the snapshot (it can be several GiB) before writing,
    // so that creating the output does not compete with it for memory.
    let Source { name, snapshot, .. } = source;
    drop(snapshot);
    let source_name = name;
    if let Filter::Namespace(ns) = &filter
        && found.objects.is_empty()
        && found.undecoded.is_empty()
    {
        anyhow::bail!(
            "namespace {ns} has no objects in {} (revision {}); `cpbackup inspect --by namespace` lists the namespaces it has",
            source_name,
            found.revision
        );
    }
    if args.apply {
        refuse_lossy(args, &found)?;
        return apply(args, &source_name, &found, format);
    }
    let written = match &args.out {
        Some(dir) => Some(write::directory(
            dir,
            &found.objects,
            &found.undecoded,
            args.format,
        )?),
        None => {
            write::stream(
                &found.objects,
                &found.undecoded,
                args.format,
                &mut std::io::stdout().lock(),
            )
            .map_err(crate::output::stdout_error)?;
            None
        }
    };
    let report = Report {
        written: written.as_ref(),
        ..Report::new(&source_name, &found)
    };
    // the objects may be on stdout: the report goes to stderr then
    let text = summary(&report, args.with_cluster_deps);
    match (format, written.is_some()) {
        (OutputFormat::Json, true) => {
            println!("{}", crate::output::json_text("ExtractReport", &report)?)
        }
        (OutputFormat::Json, false) => {
            eprintln!("{}", crate::output::json_text("ExtractReport", &report)?)
        }
        (OutputFormat::Text, true) => println!("{text}"),
        (OutputFormat::Text, false) => eprintln!("{text}"),
    }
    if format == OutputFormat::Text {
        say_lossy(&report.lossy);
    }
    if args.strict && !report.lossy.is_empty() {
        anyhow::bail!(
            "--strict: {} object(s) are lossy (written anyway, see above); give --proto-path with the \
             .proto files of the cluster's release to decode every field",
            report.lossy.len()
        );
    }
    Ok(())
}

/// One line per lossy object, on stderr (the objects may be on stdout).
fn say_lossy(lossy: &[extract::Lossy]) {
    for l in lossy {
        eprintln!(
            "lossy: {} ({}): the schema does not know {}",
            l.object,
            l.key,
            l.unknown.summary()
        );
    }
}

/// `--apply` of an object that misses fields would re-create it without them: refused unless
/// `--allow-lossy`.
fn refuse_lossy(args: &ExtractArgs, found: &Extraction) -> anyhow::Result<()> {
    let lossy = found.lossy();
    if lossy.is_empty() || args.allow_lossy {
        return Ok(());
    }
    say_lossy(&lossy);
    let names: Vec<&str> = lossy.iter().map(|l| l.object.as_str()).collect();
    Err(crate::error::usage(format!(
        "not applied: {} object(s) were stored with fields the schema does not know ({}), and \
         applying them would re-create them without those fields. Give --proto-path with the \
         .proto files of the cluster's release, or --allow-lossy to apply them as decoded; \
         nothing was sent to the cluster",
        lossy.len(),
        names.join(", ")
    )))
}

/// The warning, once, when the bundle's manifest or the snapshot shows a Kubernetes release newer
/// than the schema (the manifest, written from the node's API server, goes first).
fn newer_cluster(source: &Source, found: &Extraction) -> Option<String> {
    let from_manifest = source.kubernetes_version.as_deref().and_then(|v| {
        let m = extract::version::minor(v)?;
        Some((m, format!("the backup's manifest records {v}")))
    });
    let (minor, said_by) = from_manifest.or_else(|| found.cluster_minor.clone())?;
    extract::version::newer_than_schema(minor, &said_by)
}

/// `--namespace NS` or `--prefix P`, and a valid `--to-namespace`.
fn filter(args: &ExtractArgs) -> anyhow::Result<Filter> {
    if let Some(to) = &args.to_namespace
        && !is_dns_label(to)
    {
        return Err(usage(format!(
            "--to-namespace {to:?} is not a valid namespace name: lower-case letters, digits and '-', \
             starting and ending with a letter or digit, at most 63 characters"
        )));
    }
    match (&args.namespace, &args.prefix) {
        (Some(ns), None) => Ok(Filter::Namespace(ns.clone())),
        (None, Some(p)) => Ok(Filter::Prefix(p.clone())),
        _ => Err(usage(
            "give exactly one of --namespace NS or --prefix KEYPREFIX",
        )),
    }
}

/// The schema (built in, plus `--proto-path`) and the keys for values encrypted at rest
/// (`--encryption-config`, else the backup's own).
fn decoder(args: &ExtractArgs, source: &Source) -> anyhow::Result<Decoder> {
    let keys = match (&args.encryption_config, &source.bundled_encryption) {
        (Some(path), _) => Keyring::load(path)?,
        (None, Some((origin, text))) => Keyring::parse(text, origin)?,
        (None, None) => Keyring::empty(),
    };
    let mut schema = Schema::builtin()?;
    for dir in &args.proto_path {
        schema.add_proto_dir(dir)?;
    }
    Ok(Decoder::new(schema, keys))
}

fn apply(
    args: &ExtractArgs,
    name: &str,
    found: &Extraction,
    format: OutputFormat,
) -> anyhow::Result<()> {
    // as kubectl: --kubeconfig, else $KUBECONFIG, else ~/.kube/config
    let kubeconfig = args
        .kubeconfig
        .clone()
        .or_else(|| std::env::var_os("KUBECONFIG").map(Into::into))
        .or_else(|| {
            let home = std::env::var_os("HOME")?;
            Some(std::path::Path::new(&home).join(".kube/config")).filter(|p| p.is_file())
        })
        .ok_or_else(|| {
            usage("--apply needs a kubeconfig: --kubeconfig FILE, KUBECONFIG, or ~/.kube/config")
        })?;
    let opts = ApplyOptions {
        server_dry_run: args.dry_run == Some(DryRun::Server),
        ..ApplyOptions::default()
    };
    if format == OutputFormat::Text {
        // what is left out and what the namespace needs from the cluster, before it is applied
        // undecoded values and warnings are said after the results; nothing is written to
        // disk here, so no warning about clear-text Secrets
        let before = Report {
            undecoded: &[],
            warnings: &[],
            secrets: 0,
            ..Report::new(name, found)
        };
        eprintln!("{}", summary(&before, args.with_cluster_deps));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let results = rt.block_on(async {
        let client = crate::kubeapi::client_from_kubeconfig(&kubeconfig).await?;
        crate::kubeapi::reachable(&client, &kubeconfig).await?;
        Ok::<_, anyhow::Error>(
            apply::apply_all(&client, &found.objects, &opts, |a| {
                if format == OutputFormat::Text {
                    println!("{}", a.line());
                }
            })
            .await,
        )
    })?;
    let failed = results.iter().filter(|r| r.failed()).count();
    if format == OutputFormat::Json {
        let report = Report {
            applied: Some(&results),
            ..Report::new(name, found)
        };
        println!("{}", crate::output::json_text("ApplyReport", &report)?);
    } else {
        for u in &found.undecoded {
            eprintln!("not applied, not decoded: {}: {}", u.key, u.reason);
        }
        for w in &found.warnings {
            eprintln!("warning: {w}");
        }
    }
    match failed {
        0 => Ok(()),
        n if n == results.len() => {
            anyhow::bail!("none of the {n} objects was applied (see the lines above)")
        }
        n => anyhow::bail!(
            "{n} of {} objects failed to apply (see the lines above); the others were applied",
            results.len()
        ),
    }
}

fn summary(r: &Report, with_deps: bool) -> String {
    let mut s = format!(
        "{}: {} objects at revision {}",
        r.source, r.objects, r.revision
    );
    if let Some(w) = r.written {
        s.push_str(&format!(
            " written to {} ({} files)",
            w.dir.display(),
            w.files
        ));
    }
    if r.secrets > 0 {
        s.push_str(&format!(
            "\nthe output contains {} Secret(s) in clear text: keep it private and delete it when done",
            r.secrets
        ));
    }
    if !r.skipped.is_empty() {
        s.push_str(&format!(
            "\nleft out ({}, --raw keeps everything):",
            r.skipped.len()
        ));
        for k in r.skipped {
            s.push_str(&format!("\n  {}: {}", k.object, k.reason));
        }
    }
    if !r.undecoded.is_empty() {
        s.push_str(&format!("\nnot decoded, kept raw ({}):", r.undecoded.len()));
        for u in r.undecoded {
            s.push_str(&format!("\n  {}: {}", u.key, u.reason));
        }
    }
    if !r.cluster_dependencies.is_empty() {
        s.push_str(&format!(
            "\ncluster-scoped dependencies ({}{}):",
            r.cluster_dependencies.len(),
            if with_deps {
                ", included"
            } else {
                "; --with-cluster-deps includes them"
            }
        ));
        for d in r.cluster_dependencies {
            s.push_str(&format!(
                "\n  {}{}: {}",
                d.object,
                if d.in_snapshot {
                    ""
                } else {
                    " (not in the snapshot)"
                },
                d.reasons.join("; ")
            ));
        }
    }
    if !r.lossy.is_empty() {
        s.push_str(&format!(
            "\nlossy ({}): stored with protobuf fields the schema (Kubernetes {}) does not know; \
             written without them (each is listed below, and in a comment above it in YAML)",
            r.lossy.len(),
            releases_span(r.schema_releases)
        ));
    }
    for w in r.warnings {
        s.push_str(&format!("\nwarning: {w}"));
    }
    s
}

/// `1.30 … 1.35`.
fn releases_span(r: &[&str]) -> String {
    match (r.first(), r.last()) {
        (Some(a), Some(b)) if a != b => format!("{a} … {b}"),
        (Some(a), _) => (*a).to_owned(),
        _ => String::new(),
    }
}

/// A Kubernetes namespace name (RFC 1123 label).
fn is_dns_label(s: &str) -> bool {
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    (1..=63).contains(&s.len())
        && s.chars().all(|c| ok(c) || c == '-')
        && s.starts_with(ok)
        && s.ends_with(ok)
}

fn open_source(args: &ExtractArgs, s: &Settings) -> anyhow::Result<Source> {
    let progress = s.progress();
    let input = snapshot_input(&args.source, s, "extract")?;
    let (chosen, ids, mut spool) = match input {
        SnapshotInput::Bare(path) => {
            return Ok(Source {
                snapshot: map_file(std::fs::File::open(&path)?, &path)?,
                name: path,
                bundled_encryption: None,
                kubernetes_version: None,
            });
        }
        SnapshotInput::Backup(input) => {
            let BackupInput { chosen, ids, spool } = *input;
            (chosen, ids, spool)
        }
    };
    // downloading and decrypting a large backup takes a while: a bar on a terminal
    let bar = crate::progress::bytes_bar(chosen.listing.size.unwrap_or(0), progress, "extract");
    let input = bar.wrap_read(chosen.reader);
    // only what can lead to the keys stays in memory (not the pki, not kubeconfigs)
    let keep = |path: &str, buf: &[u8]| {
        path == KUBEADM_APISERVER_MANIFEST
            || memchr::memmem::find(buf, b"EncryptionConfig").is_some()
    };
    let read = reader::extract_snapshot(
        input,
        &ids,
        &reader::Expectation::from_record(chosen.listing.record.as_ref()),
        &mut spool,
        SMALL_FILE,
        &keep,
    );
    bar.finish_and_clear();
    let read = read.with_context(|| format!("reading {}", chosen.listing.name))?;
    Ok(Source {
        snapshot: map_file(spool, &chosen.listing.name)?,
        bundled_encryption: bundled_encryption_config(&read.kept),
        kubernetes_version: read.report.manifest.kubernetes_version,
        name: chosen.listing.name,
    })
}

/// The EncryptionConfiguration the bundle carries: OpenShift's
/// `static-pod-resources/kube-apiserver-pod-N/secrets/encryption-config/encryption-config`
/// (newest N), or the file kubeadm's kube-apiserver manifest names with
/// `--encryption-provider-config`, when the bundle holds it.
fn bundled_encryption_config(files: &HashMap<String, Vec<u8>>) -> Option<(String, String)> {
    let text = |p: &String| {
        String::from_utf8(files.get(p)?.clone())
            .ok()
            .map(|t| (p.clone(), t))
    };
    let revision = |p: &str| -> Option<u64> {
        p.strip_prefix("static-pod-resources/kube-apiserver-pod-")?
            .split('/')
            .next()?
            .parse()
            .ok()
    };
    let openshift = files
        .keys()
        .filter(|p| p.ends_with(OPENSHIFT_ENCRYPTION_CONFIG) && revision(p).is_some())
        .max_by_key(|p| revision(p));
    if let Some(p) = openshift {
        return text(p);
    }
    let manifest = String::from_utf8_lossy(files.get(KUBEADM_APISERVER_MANIFEST)?);
    let flag = manifest
        .split(|c: char| c.is_whitespace() || c == '"' || c == '\'')
        .find_map(|w| w.strip_prefix("--encryption-provider-config="))?;
    let candidates = [
        flag.strip_prefix("/etc/kubernetes/").map(str::to_owned),
        Some(format!("extra{flag}")),
        Some(format!("extra/{}", flag.trim_start_matches('/'))),
    ];
    candidates.into_iter().flatten().find_map(|p| text(&p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_bundled_encryption_config() {
        let mut files = HashMap::new();
        files.insert(
            "static-pod-resources/kube-apiserver-pod-7/secrets/encryption-config/encryption-config"
                .to_owned(),
            b"seven".to_vec(),
        );
        files.insert(
            "static-pod-resources/kube-apiserver-pod-12/secrets/encryption-config/encryption-config".to_owned(),
            b"twelve".to_vec(),
        );
        assert_eq!(bundled_encryption_config(&files).unwrap().1, "twelve");
        let mut kubeadm = HashMap::new();
        kubeadm.insert(
            "manifests/kube-apiserver.yaml".to_owned(),
            b"    - --encryption-provider-config=/etc/kubernetes/enc/enc.yaml\n".to_vec(),
        );
        assert!(bundled_encryption_config(&kubeadm).is_none());
        kubeadm.insert(
            "enc/enc.yaml".to_owned(),
            b"kind: EncryptionConfiguration".to_vec(),
        );
        assert_eq!(
            bundled_encryption_config(&kubeadm).unwrap().0,
            "enc/enc.yaml"
        );
    }
}
