//! What kind of value an etcd key under /registry holds.
//!
//! - protobuf: the magic `k8s\0`, then a `runtime.Unknown` message: 1 TypeMeta {1 apiVersion,
//!   2 kind}, 2 raw (the typed message), 3 contentEncoding, 4 contentType;
//! - JSON: custom resources, CRD-backed and aggregated types, older objects (`{`);
//! - CBOR: the self-described CBOR tag 55799 (`d9 d9 f7`), written by newer API servers;
//! - encrypted at rest: `k8s:enc:<provider>:<version>:<key name>:` then the provider's bytes.

use prost::Message;

/// The 4-byte magic before a protobuf-encoded object.
pub const PROTOBUF_MAGIC: &[u8] = b"k8s\0";
const CBOR_SELF_DESCRIBED: &[u8] = &[0xd9, 0xd9, 0xf7];
const ENCRYPTED_PREFIX: &[u8] = b"k8s:enc:";

#[derive(Clone, PartialEq, Message)]
struct TypeMeta {
    #[prost(string, optional, tag = "1")]
    api_version: Option<String>,
    #[prost(string, optional, tag = "2")]
    kind: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
struct Unknown {
    #[prost(message, optional, tag = "1")]
    type_meta: Option<TypeMeta>,
    #[prost(bytes = "vec", optional, tag = "2")]
    raw: Option<Vec<u8>>,
    #[prost(string, optional, tag = "3")]
    content_encoding: Option<String>,
    #[prost(string, optional, tag = "4")]
    content_type: Option<String>,
}

/// A stored value, classified.
#[derive(Debug, Clone, PartialEq)]
pub enum Stored<'a> {
    Protobuf {
        api_version: String,
        kind: String,
        /// The typed message.
        raw: Vec<u8>,
        content_encoding: String,
    },
    Json(&'a [u8]),
    Cbor(&'a [u8]),
    /// Encrypted at rest; `provider` is aescbc, aesgcm, secretbox, kms…
    Encrypted {
        provider: String,
        version: String,
        key_name: String,
        /// Everything after the prefix.
        body: &'a [u8],
    },
    /// Not a Kubernetes object encoding we know (reported and kept raw, never dropped).
    Other(&'a [u8]),
}

/// Why a value that claims an encoding does not parse as it.
#[allow(missing_docs)] // the #[error] messages say what each variant and field means
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EnvelopeError {
    #[error("protobuf envelope (k8s\\0 + runtime.Unknown) is malformed: {0}")]
    Protobuf(String),
    #[error("encryption prefix k8s:enc:… is malformed (want k8s:enc:<provider>:<version>:<key>:)")]
    EncryptedPrefix,
}

/// Classifies a value from etcd.
pub fn classify(value: &[u8]) -> Result<Stored<'_>, EnvelopeError> {
    if let Some(rest) = value.strip_prefix(PROTOBUF_MAGIC) {
        let u = Unknown::decode(rest).map_err(|e| EnvelopeError::Protobuf(e.to_string()))?;
        let tm = u.type_meta.unwrap_or_default();
        return Ok(Stored::Protobuf {
            api_version: tm.api_version.unwrap_or_default(),
            kind: tm.kind.unwrap_or_default(),
            raw: u.raw.unwrap_or_default(),
            content_encoding: u.content_encoding.unwrap_or_default(),
        });
    }
    if let Some(rest) = value.strip_prefix(ENCRYPTED_PREFIX) {
        // provider:version:keyname: — the key name may not contain ':'.
        let mut parts = rest.splitn(4, |b| *b == b':');
        let (Some(p), Some(v), Some(k), Some(body)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(EnvelopeError::EncryptedPrefix);
        };
        let text =
            |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| EnvelopeError::EncryptedPrefix);
        return Ok(Stored::Encrypted {
            provider: text(p)?,
            version: text(v)?,
            key_name: text(k)?,
            body,
        });
    }
    if value.starts_with(CBOR_SELF_DESCRIBED) {
        return Ok(Stored::Cbor(value));
    }
    if value
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{')
    {
        return Ok(Stored::Json(value));
    }
    Ok(Stored::Other(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn encrypted_prefixes() {
        let v = b"k8s:enc:aesgcm:v1:1:\x00\x01nonce-and-sealed";
        match classify(v).unwrap() {
            Stored::Encrypted {
                provider,
                version,
                key_name,
                body,
            } => {
                assert_eq!(
                    (provider.as_str(), version.as_str(), key_name.as_str()),
                    ("aesgcm", "v1", "1")
                );
                assert_eq!(body, b"\x00\x01nonce-and-sealed");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            classify(b"k8s:enc:kms"),
            Err(EnvelopeError::EncryptedPrefix)
        );
    }

    #[test]
    fn json_cbor_and_other() {
        assert!(matches!(
            classify(b"  {\"kind\":\"X\"}").unwrap(),
            Stored::Json(_)
        ));
        assert!(matches!(
            classify(&[0xd9, 0xd9, 0xf7, 0xa0]).unwrap(),
            Stored::Cbor(_)
        ));
        assert!(matches!(classify(b"hello").unwrap(), Stored::Other(_)));
        assert!(classify(b"k8s\0\xff\xff").is_err());
    }

    /// Every protobuf fixture of the 182 built-in types carries the apiVersion and kind its file
    /// name says.
    #[test]
    fn every_fixture_envelope_names_its_type() {
        let dir = std::env::var_os("CPBACKUP_K8S_FIXTURES")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../shared/fixtures/k8s-api-serialization-v1.35.0")
            });
        let Ok(entries) = std::fs::read_dir(&dir) else {
            // The fixtures live beside the checkout, not in it (they are upstream test data).
            eprintln!(
                "SKIPPED: no Kubernetes serialization fixtures at {} (set CPBACKUP_K8S_FIXTURES)",
                dir.display()
            );
            return;
        };
        let mut n = 0;
        let mut odd = Vec::new();
        for e in entries {
            let p = e.unwrap().path();
            if p.extension().is_none_or(|x| x != "pb") {
                continue;
            }
            let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
            let (gv, kind) = stem.rsplit_once('.').unwrap();
            let (group, version) = gv.rsplit_once('.').unwrap();
            let want_av = if group == "core" {
                version.to_owned()
            } else {
                format!("{group}/{version}")
            };
            let bytes = std::fs::read(&p).unwrap();
            match classify(&bytes).unwrap() {
                Stored::Protobuf {
                    api_version,
                    kind: k,
                    raw,
                    ..
                } => {
                    if (api_version.as_str(), k.as_str()) != (want_av.as_str(), kind) {
                        odd.push(format!("{stem}: {api_version:?} {k:?}"));
                    }
                    assert!(!raw.is_empty(), "{stem}");
                }
                other => panic!("{stem}: {other:?}"),
            }
            let json = std::fs::read(p.with_extension("json")).unwrap();
            assert!(
                matches!(classify(&json).unwrap(), Stored::Json(_)),
                "{stem}"
            );
            n += 1;
        }
        assert_eq!(n, 182);
        // WatchEvent is a wire type, never stored in etcd: its envelope carries no TypeMeta.
        assert_eq!(odd, ["core.v1.WatchEvent: \"\" \"\""], "{odd:#?}");
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut v = PROTOBUF_MAGIC.to_vec();
            v.extend_from_slice(&data);
            let _ = classify(&v);
            let _ = classify(&data);
        }
    }
}
