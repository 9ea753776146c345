//! age keys: parsing recipients and identity files, making new identities, fingerprints.
//!
//! Only recipients (public keys) live on the node; identities are read only by commands that
//! decrypt. A fingerprint (`sha256:` + 16 hex digits of the recipient string's SHA-256) is what
//! records and error messages show, so a key mismatch can be explained without a key.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use age::x25519;
use anyhow::Context;
use sha2::{Digest, Sha256};

use crate::error::usage;

/// Recipients to encrypt to, with their fingerprints.
#[derive(Clone)]
pub struct Recipients {
    pub keys: Vec<x25519::Recipient>,
}

impl Recipients {
    /// Parses `--recipient` values and a recipients file. At least one is required.
    pub fn load(inline: &[String], file: Option<&Path>) -> anyhow::Result<Self> {
        let mut keys = Vec::new();
        for (i, r) in inline.iter().enumerate() {
            keys.push(parse_recipient(r).map_err(|e| usage(format!("recipients[{i}]: {e}")))?);
        }
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                usage(format!(
                    "recipients_file {}: {e}; write one age1… recipient per line",
                    path.display()
                ))
            })?;
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                keys.push(parse_recipient(line).map_err(|e| {
                    usage(format!(
                        "recipients_file {} line {}: {e}",
                        path.display(),
                        n + 1
                    ))
                })?);
            }
        }
        if keys.is_empty() {
            return Err(usage(
                "no recipients configured: backups are always encrypted. Make a key with `cpbackup keygen --out FILE` \
                 and pass its age1… recipient with --recipient (or recipients / recipients_file in the config)",
            ));
        }
        Ok(Recipients { keys })
    }

    pub fn fingerprints(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| fingerprint(&k.to_string()))
            .collect()
    }
}

fn parse_recipient(s: &str) -> Result<x25519::Recipient, String> {
    let s = s.trim();
    if s.starts_with("AGE-SECRET-KEY-") {
        return Err(
            "this is a private identity, not a recipient: never put it on the node; \
                    pass the age1… line printed by `cpbackup keygen`"
                .into(),
        );
    }
    x25519::Recipient::from_str(s)
        .map_err(|e| format!("{s:?} is not an age X25519 recipient (age1…): {e}"))
}

/// `sha256:` + 16 hex digits of the recipient's SHA-256.
pub fn fingerprint(recipient: &str) -> String {
    let d = Sha256::digest(recipient.as_bytes());
    format!("sha256:{}", hex::encode(&d[..8]))
}

/// Identities loaded from files, able to decrypt bundles.
pub struct Identities {
    pub keys: Vec<x25519::Identity>,
    pub files: Vec<PathBuf>,
}

impl Identities {
    pub fn load(files: &[PathBuf]) -> anyhow::Result<Self> {
        let mut keys = Vec::new();
        for path in files {
            let text = std::fs::read_to_string(path).map_err(|e| {
                usage(format!(
                    "identity file {}: {e}; pass the file written by `cpbackup keygen` (or age-keygen)",
                    path.display()
                ))
            })?;
            if let Ok(meta) = std::fs::metadata(path)
                && meta.permissions().mode() & 0o077 != 0
            {
                tracing::warn!(
                    file = %path.display(),
                    "identity file is readable by group or others; run chmod 600 on it"
                );
            }
            let before = keys.len();
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let id = x25519::Identity::from_str(line).map_err(|_| {
                    usage(format!(
                        "identity file {} line {}: not an AGE-SECRET-KEY-1… line (only X25519 identities are supported)",
                        path.display(),
                        n + 1
                    ))
                })?;
                keys.push(id);
            }
            if keys.len() == before {
                return Err(usage(format!(
                    "identity file {} holds no identity",
                    path.display()
                )));
            }
        }
        Ok(Identities {
            keys,
            files: files.to_vec(),
        })
    }

    pub fn fingerprints(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| fingerprint(&k.to_public().to_string()))
            .collect()
    }

    pub fn as_dyn(&self) -> impl Iterator<Item = &dyn age::Identity> {
        self.keys.iter().map(|k| k as &dyn age::Identity)
    }
}

/// A new file for a key: 0600, never over an existing one (which is a usage error).
pub fn create_key_file(path: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                usage(format!(
                    "{} already exists: refusing to overwrite a key; choose another --out path",
                    path.display()
                ))
            } else {
                anyhow::Error::new(e).context(format!("cannot create {}", path.display()))
            }
        })
}

/// Writes a new identity file (0600, never overwriting) and returns its recipient.
pub fn generate_identity_file(path: &Path) -> anyhow::Result<String> {
    let id = x25519::Identity::generate();
    let recipient = id.to_public().to_string();
    let mut f = create_key_file(path)?;
    let created = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    use age::secrecy::ExposeSecret;
    let body = format!(
        "# created: {created}\n# public key: {recipient}\n{}\n",
        id.to_string().expose_secret()
    );
    f.write_all(body.as_bytes())
        .and_then(|_| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(recipient)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keygen_then_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.txt");
        let r = generate_identity_file(&p).unwrap();
        assert!(r.starts_with("age1"));
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let ids = Identities::load(std::slice::from_ref(&p)).unwrap();
        assert_eq!(ids.fingerprints(), vec![fingerprint(&r)]);
        // never overwrites
        let e = generate_identity_file(&p).unwrap_err();
        assert_eq!(crate::error::exit_code(&e), 2);
    }

    #[test]
    fn recipients_file_with_comments() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.txt");
        let r = x25519::Identity::generate().to_public().to_string();
        std::fs::write(&p, format!("# ops team\n\n{r}\n")).unwrap();
        let rs = Recipients::load(&[], Some(&p)).unwrap();
        assert_eq!(rs.keys.len(), 1);
    }

    #[test]
    fn secret_key_as_recipient_is_refused_with_advice() {
        let e = Recipients::load(&["AGE-SECRET-KEY-1XYZ".into()], None)
            .err()
            .unwrap();
        assert!(e.to_string().contains("private identity"));
        let e = Recipients::load(&[], None).err().unwrap();
        assert!(e.to_string().contains("keygen"));
    }
}
