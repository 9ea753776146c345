//! Writing extracted objects: one multi-document YAML stream or one JSON `List` (stdout), or a
//! directory with one file per object named in apply order (`007-secret-db.yaml`), so that
//! `kubectl apply -f DIR` applies them in order. The directory is written under a temporary name
//! and renamed when complete; it is 0700 and Secret files are 0600. Values that could not be
//! decoded are never dropped: they go to `undecoded/` (directory) or are listed with their bytes
//! in base64 (stream).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine;
use serde_json::{Value, json};

use crate::extract::object::Object;

/// Output format of the objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Yaml,
    Json,
}

impl Format {
    fn ext(self) -> &'static str {
        match self {
            Format::Yaml => "yaml",
            Format::Json => "json",
        }
    }
}

/// A stored value that did not decode, kept as it was.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Undecoded {
    pub key: String,
    pub reason: String,
    #[serde(skip)]
    pub value: Vec<u8>,
}

/// What a directory write produced.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Written {
    pub dir: PathBuf,
    pub files: usize,
    pub secret_files: usize,
    pub undecoded_files: usize,
}

pub fn yaml(v: &Value) -> anyhow::Result<String> {
    serde_saphyr::to_string(v).context("rendering YAML")
}

fn render(o: &Object, format: Format) -> anyhow::Result<String> {
    Ok(match format {
        Format::Yaml => format!("{}{}", lossy_comment(o), yaml(&o.json)?),
        Format::Json => format!("{}\n", serde_json::to_string_pretty(&o.json)?),
    })
}

/// For an object the schema did not fully know, YAML comment lines naming what is missing (a
/// comment, not an annotation: the object itself is left as decoded).
pub fn lossy_comment(o: &Object) -> String {
    if !o.is_lossy() {
        return String::new();
    }
    let mut s = format!(
        "# LOSSY: {} was stored with protobuf fields the schema does not know; they are not below:\n",
        o.unknown.message
    );
    for f in &o.unknown.fields {
        s.push_str(&format!("#   {}\n", one_line(&f.to_string())));
    }
    if o.unknown.more > 0 {
        s.push_str(&format!("#   and {} more\n", o.unknown.more));
    }
    s.push_str("# decode them with --proto-path and the .proto files of the cluster's release\n");
    s
}

/// Control characters escaped, so a comment stays one line whatever the data.
fn one_line(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// All objects as one stream.
pub fn stream(
    objects: &[Object],
    undecoded: &[Undecoded],
    format: Format,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let b64 = base64::engine::general_purpose::STANDARD;
    match format {
        Format::Json => {
            let mut list = json!({
                "apiVersion": "v1",
                "kind": "List",
                "items": objects.iter().map(|o| &o.json).collect::<Vec<_>>(),
            });
            if !undecoded.is_empty() {
                list["undecoded"] = undecoded
                    .iter()
                    .map(|u| json!({"key": u.key, "reason": u.reason, "value": b64.encode(&u.value)}))
                    .collect();
            }
            writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
        }
        Format::Yaml => {
            for (i, o) in objects.iter().enumerate() {
                if i > 0 {
                    writeln!(out, "---")?;
                }
                out.write_all(render(o, format)?.as_bytes())?;
            }
            for u in undecoded {
                writeln!(out, "# undecoded {} ({})", u.key, u.reason)?;
                writeln!(out, "# value (base64): {}", b64.encode(&u.value))?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// Longest file name most file systems take (bytes).
const MAX_NAME: usize = 255;

/// `raw` as one safe file name: bytes other than ASCII letters, digits and `-._~` are written
/// `%XX`, a name made only of dots gets a `%2E` for its first, and a name longer than `max`
/// bytes is cut and ends in `-` and 12 hex digits of the SHA-256 of `raw`, so two names never
/// meet.
fn safe_name(raw: &str, max: usize) -> String {
    use sha2::{Digest, Sha256};
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.bytes().all(|b| b == b'.') {
        out.replace_range(..1.min(out.len()), "%2E");
    }
    if out.len() > max {
        let hash = hex::encode(&Sha256::digest(raw.as_bytes())[..6]);
        out.truncate(max - hash.len() - 1);
        out.push('-');
        out.push_str(&hash);
    }
    out
}

fn file_name(index: usize, o: &Object, format: Format) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-._".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let head = format!("{index:03}-{}-", clean(&o.kind().to_ascii_lowercase()));
    let tail = format!(".{}", format.ext());
    let room = MAX_NAME.saturating_sub(head.len() + tail.len());
    format!("{head}{}{tail}", safe_name(&clean(o.name()), room))
}

/// Removes what extractions killed before their rename left in `parent` (decrypted objects):
/// `.cpbackup-extract-<pid>-*` directories whose process is gone.
fn remove_abandoned_staging(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(STAGING_PREFIX)
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        // EPERM means alive (another user's process); only ESRCH means gone.
        let alive = rustix::process::Pid::from_raw(pid).is_none_or(|p| {
            !matches!(
                rustix::process::test_kill_process(p),
                Err(rustix::io::Errno::SRCH)
            )
        });
        if !alive && e.file_type().is_ok_and(|t| t.is_dir()) {
            match std::fs::remove_dir_all(e.path()) {
                Ok(()) => eprintln!(
                    "removed {}: decrypted objects left by an interrupted extraction",
                    e.path().display()
                ),
                Err(err) => eprintln!(
                    "WARNING: cannot remove {} (decrypted objects of an interrupted extraction): {err}",
                    e.path().display()
                ),
            }
        }
    }
}

const STAGING_PREFIX: &str = ".cpbackup-extract-";

/// One file per object in a new directory `dir` (which must not exist or be empty).
pub fn directory(
    dir: &Path,
    objects: &[Object],
    undecoded: &[Undecoded],
    format: Format,
) -> anyhow::Result<Written> {
    usable_out(dir)?;
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    remove_abandoned_staging(parent);
    let staging = tempfile::Builder::new()
        .prefix(&format!("{STAGING_PREFIX}{}-", std::process::id()))
        .tempdir_in(parent)
        .with_context(|| format!("cannot create a directory in {}", parent.display()))?;
    std::fs::set_permissions(
        staging.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )?;
    let written = write_all(staging.path(), dir, objects, undecoded, format)?;
    // Renamed only when every file is written, so an interrupted run leaves no directory that
    // looks complete. No fsync: this is a working copy for `kubectl apply`, not a backup, and a
    // flush per file (or of the whole file system) would cost more than the extraction itself.
    // On any failure the staging directory (decrypted objects) goes with `staging`'s drop.
    if dir.exists() {
        std::fs::remove_dir(dir)
            .with_context(|| format!("cannot replace the empty directory {}", dir.display()))?;
    }
    std::fs::rename(staging.path(), dir)
        .with_context(|| format!("cannot move the output to {}", dir.display()))?;
    let _renamed = staging.keep();
    Ok(written)
}

/// `--out` must be a new or empty real directory (not a link, not a mount point).
fn usable_out(dir: &Path) -> anyhow::Result<()> {
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_symlink() => anyhow::bail!(
            "{} is a symlink; give a new directory (the real path) with --out, nothing is written through a link",
            dir.display()
        ),
        Ok(m) if !m.is_dir() => anyhow::bail!(
            "{} exists and is not a directory; give a new directory with --out",
            dir.display()
        ),
        Ok(_) if crate::fsutil::is_mount_point(dir) => anyhow::bail!(
            "{} is a mount point, which cannot be replaced by the finished output; give a new directory below it with --out",
            dir.display()
        ),
        _ => {}
    }
    if dir.exists() {
        let empty = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .next()
            .is_none();
        anyhow::ensure!(
            empty,
            "{} is not empty; give a new directory with --out so an earlier extraction is not mixed in",
            dir.display()
        );
    }
    Ok(())
}

/// Every object (and every undecoded value, under `undecoded/`) as a file in `staging`.
fn write_all(
    staging: &Path,
    dir: &Path,
    objects: &[Object],
    undecoded: &[Undecoded],
    format: Format,
) -> anyhow::Result<Written> {
    let mut written = Written {
        dir: dir.to_owned(),
        files: 0,
        secret_files: 0,
        undecoded_files: 0,
    };
    for (i, o) in objects.iter().enumerate() {
        let mode = if o.is_secret() { 0o600 } else { 0o644 };
        write_file(
            &staging.join(file_name(i + 1, o, format)),
            render(o, format)?.as_bytes(),
            mode,
        )?;
        written.files += 1;
        written.secret_files += usize::from(o.is_secret());
    }
    if !undecoded.is_empty() {
        let raw = staging.join("undecoded");
        std::fs::DirBuilder::new().mode(0o700).create(&raw)?;
        for u in undecoded {
            let name = safe_name(&u.key.trim_start_matches('/').replace('/', "~"), MAX_NAME);
            // stored bytes may be secrets (encrypted or not): 0600
            write_file(&raw.join(name), &u.value, 0o600)?;
            written.undecoded_files += 1;
        }
    }
    Ok(written)
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(bytes)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_becomes_one_safe_file_name() {
        assert_eq!(
            safe_name("registry~secrets~shop~db", 255),
            "registry~secrets~shop~db"
        );
        assert_eq!(safe_name("a/b\0c", 255), "a%2Fb%00c");
        assert_eq!(safe_name("..", 255), "%2E.");
        assert_eq!(safe_name(".", 255), "%2E");
        let long = "x".repeat(300);
        let s = safe_name(&long, 255);
        assert_eq!(s.len(), 255);
        assert_ne!(
            s,
            safe_name(&format!("{long}y"), 255),
            "cut names stay distinct"
        );
        // a 253-character object name fits with its index, kind and extension
        let room = MAX_NAME - "001-configmap-".len() - ".yaml".len();
        assert!(safe_name(&"n".repeat(253), room).len() <= room);
    }

    #[test]
    fn yaml_keeps_strings_that_look_like_other_things_strings() {
        let v = json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x","labels":{"a":"b"}},
            "data":{"yes":"yes","on":"on","t":"true","n":"null","tilde":"~","num":"0777","f":"1.0","e":"1e3",
            "empty":"","multi":"line1\nline2\n","colon":"a: b","hash":"# c","lead":" x","date":"2024-01-01",
            "octal":"0o17","hex":"0x1F","bool":"False","y":"y","no":"NO"},
            "spec":{"n":0,"list":[1,"2"],"obj":{},"arr":[]}});
        let text = yaml(&v).unwrap();
        // kubectl's order: apiVersion, kind, metadata, then the rest as stored
        assert!(
            text.starts_with("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n"),
            "{text}"
        );
        let back: Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(back, v, "{text}");
    }
}
