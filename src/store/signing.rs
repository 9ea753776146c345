//! Signed records: a node that holds an ed25519 signing key signs what identifies its backup
//! (name, time, cluster, node, revision, etcd cluster, and the ciphertext's size and SHA-256,
//! which the reader checks against the bytes). A reader given `--trust-signer` accepts only
//! backups whose record carries a valid signature by one of those keys, so write access to the
//! store and the public age recipient alone can no longer make a bundle that restores.
//!
//! Keys: `cpbackup keygen --signing --out FILE` writes the private key (PKCS#8, base64, 0600)
//! and prints the public key as `cpbsig1:<base64>`, the form `--trust-signer` takes.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

use super::Record;
use crate::error::usage;

const PUBLIC_PREFIX: &str = "cpbsig1:";
const PRIVATE_PREFIX: &str = "CPBACKUP-SIGNING-KEY-1:";

/// A record's signature: which key, and the signature over [`payload`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// The signer's public key (`cpbsig1:…`).
    pub key: String,
    /// Base64 ed25519 signature.
    pub sig: String,
}

/// What is signed, in a fixed order: everything that says which backup this is and what its
/// bytes are. Lock state and version ids are the store's, added later, and not signed.
#[derive(Serialize)]
struct Payload<'a> {
    context: &'static str,
    name: &'a str,
    created: &'a str,
    cluster: &'a str,
    node: &'a str,
    etcd_revision: i64,
    etcd_cluster_id: &'a str,
    etcd_member_id: &'a str,
    snapshot_size: u64,
    bundle_size: u64,
    bundle_sha256: &'a str,
    forced: bool,
}

fn payload(r: &Record) -> Vec<u8> {
    serde_json::to_vec(&Payload {
        context: "cpbackup record signature v1",
        name: &r.name,
        created: &r.created,
        cluster: &r.cluster,
        node: &r.node,
        etcd_revision: r.etcd_revision,
        etcd_cluster_id: &r.etcd_cluster_id,
        etcd_member_id: &r.etcd_member_id,
        snapshot_size: r.snapshot_size,
        bundle_size: r.bundle_size,
        bundle_sha256: &r.bundle_sha256,
        forced: r.forced,
    })
    .expect("a payload serialises")
}

/// A node's signing key.
pub struct SigningKey {
    pair: Ed25519KeyPair,
}

impl SigningKey {
    /// Loads a key written by [`generate`].
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the signing key {}", path.display()))?;
        let b64 = text
            .lines()
            .find_map(|l| l.trim().strip_prefix(PRIVATE_PREFIX))
            .ok_or_else(|| {
                usage(format!(
                    "{} is not a cpbackup signing key (make one with `cpbackup keygen --signing --out FILE`)",
                    path.display()
                ))
            })?;
        let der = B64
            .decode(b64)
            .map_err(|e| usage(format!("{}: the key is not base64: {e}", path.display())))?;
        let pair = Ed25519KeyPair::from_pkcs8(&der)
            .map_err(|e| usage(format!("{}: not an ed25519 key: {e}", path.display())))?;
        Ok(SigningKey { pair })
    }

    /// The public key in the form `--trust-signer` takes.
    pub fn public(&self) -> String {
        format!(
            "{PUBLIC_PREFIX}{}",
            B64.encode(self.pair.public_key().as_ref())
        )
    }

    /// Signs `record` in place.
    pub fn sign(&self, record: &mut Record) {
        record.signature = Some(Signature {
            key: self.public(),
            sig: B64.encode(self.pair.sign(&payload(record)).as_ref()),
        });
    }
}

/// Writes a new signing key to `path` (0600, never over an existing file); returns its public key.
pub fn generate(path: &Path) -> anyhow::Result<String> {
    let rng = ring::rand::SystemRandom::new();
    let der = Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|_| anyhow::anyhow!("cannot generate an ed25519 key"))?;
    let pair = Ed25519KeyPair::from_pkcs8(der.as_ref())
        .map_err(|_| anyhow::anyhow!("the generated key does not load"))?;
    let key = SigningKey { pair };
    let mut f = crate::keys::create_key_file(path)?;
    writeln!(
        f,
        "# cpbackup signing key: goes on the nodes that take backups (0600)\n# public key: {}\n{PRIVATE_PREFIX}{}",
        key.public(),
        B64.encode(der.as_ref())
    )?;
    f.sync_all()?;
    Ok(key.public())
}

/// Checks a `--trust-signer` value; a usage error says what the form is.
pub fn parse_trusted(s: &str) -> anyhow::Result<String> {
    let s = s.trim();
    let ok = s
        .strip_prefix(PUBLIC_PREFIX)
        .and_then(|b| B64.decode(b).ok())
        .is_some_and(|k| k.len() == 32);
    if !ok {
        return Err(usage(format!(
            "--trust-signer {s:?} is not a cpbackup signing public key (cpbsig1:…, printed by `cpbackup keygen --signing`)"
        )));
    }
    Ok(s.to_owned())
}

/// Whether `record` is signed by one of `trusted` (public keys); the reason when it is not.
pub fn check(record: &Record, trusted: &[String]) -> Result<(), String> {
    let Some(s) = &record.signature else {
        return Err("the record is not signed".into());
    };
    if !trusted.contains(&s.key) {
        return Err(format!(
            "the record is signed by {}, which is not a trusted signer",
            s.key
        ));
    }
    let public = B64
        .decode(s.key.trim_start_matches(PUBLIC_PREFIX))
        .map_err(|_| "the signer's key is not base64".to_owned())?;
    let sig = B64
        .decode(&s.sig)
        .map_err(|_| "the signature is not base64".to_owned())?;
    UnparsedPublicKey::new(&ED25519, public)
        .verify(&payload(record), &sig)
        .map_err(|_| "the signature does not match the record: it was changed or forged".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        Record::sample("c/n/20260101T000000Z-rev1.cpb", 20)
    }

    #[test]
    fn signed_records_check_and_any_change_is_caught() {
        let d = tempfile::tempdir().unwrap();
        let public = generate(&d.path().join("k")).unwrap();
        assert_eq!(parse_trusted(&public).unwrap(), public);
        let key = SigningKey::load(&d.path().join("k")).unwrap();
        assert_eq!(key.public(), public);
        let mut r = record();
        assert!(
            check(&r, std::slice::from_ref(&public))
                .unwrap_err()
                .contains("not signed")
        );
        key.sign(&mut r);
        check(&r, std::slice::from_ref(&public)).unwrap();
        // the store's own additions are not signed
        r.lock_mode = Some("COMPLIANCE".into());
        r.bundle_version_id = Some("v1".into());
        check(&r, std::slice::from_ref(&public)).unwrap();
        let mut changed = r.clone();
        changed.bundle_sha256 = "cd".into();
        assert!(
            check(&changed, std::slice::from_ref(&public))
                .unwrap_err()
                .contains("forged")
        );
        let other = generate(&d.path().join("other")).unwrap();
        assert!(
            check(&r, &[other])
                .unwrap_err()
                .contains("not a trusted signer")
        );
        assert!(parse_trusted("age1xyz").is_err());
        assert!(generate(&d.path().join("k")).is_err(), "never overwrites");
    }
}
