//! A stored value → the object as JSON, whatever its encoding: encrypted values are decrypted
//! first (when keys were given), protobuf is decoded with the schema, JSON passes through, CBOR
//! and types without a schema are reported (the caller keeps the raw bytes; nothing is dropped).
//! Protobuf fields the schema does not know come back beside the JSON ([`Decoded::unknown`]).

use prost_reflect::{DynamicMessage, ReflectMessage};
use serde_json::{Map, Value as Json};

use crate::k8s::encryption::{DecryptError, Keyring};
use crate::k8s::envelope::{self, Stored};
use crate::k8s::json::message_to_json;
use crate::k8s::schema::Schema;
use crate::k8s::unknown::Unknown;

/// How deep objects embedded in objects (`RawExtension` holding `k8s\0…`) are decoded; deeper
/// ones stay base64 (a crafted value could otherwise nest until the stack runs out).
const MAX_NESTING: usize = 8;

/// Why a value did not become a JSON object.
#[allow(missing_docs)] // the #[error] messages say what each variant and field means
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Undecodable {
    #[error("no schema for {api_version} {kind} (add its .proto files with --proto-path)")]
    NoSchema { api_version: String, kind: String },
    #[error("CBOR-encoded (the CBORServingAndStorage feature); not decoded")]
    Cbor,
    #[error("encrypted at rest with {provider} key {key:?}: {reason}")]
    Encrypted {
        provider: String,
        key: String,
        reason: DecryptError,
    },
    #[error("malformed {0}")]
    Malformed(String),
    #[error("not a Kubernetes object ({0} bytes of something else)")]
    NotAnObject(usize),
}

/// A stored value as JSON, and what of it the schema did not know (not in the JSON).
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The object as the API server would serve it (as far as the schema knows it).
    pub json: Json,
    /// Protobuf fields the schema does not know; empty for JSON values.
    pub unknown: Unknown,
}

impl Decoded {
    fn whole(json: Json) -> Self {
        Decoded {
            json,
            unknown: Unknown::default(),
        }
    }
}

/// Decodes stored values with one schema and one set of encryption keys.
pub struct Decoder {
    schema: Schema,
    keys: Keyring,
}

impl Decoder {
    /// A decoder with this schema and these keys.
    pub fn new(schema: Schema, keys: Keyring) -> Self {
        Decoder { schema, keys }
    }

    /// The object stored under `key` (needed as the authenticated data of AES-GCM).
    pub fn decode(&self, key: &[u8], value: &[u8]) -> Result<Decoded, Undecodable> {
        match envelope::classify(value).map_err(|e| Undecodable::Malformed(e.to_string()))? {
            Stored::Encrypted {
                provider,
                version,
                key_name,
                body,
            } => {
                let plain = self
                    .keys
                    .decrypt(&provider, &version, &key_name, body, key)
                    .map_err(|reason| Undecodable::Encrypted {
                        provider: provider.clone(),
                        key: key_name.clone(),
                        reason,
                    })?;
                // a decrypted value is never itself encrypted
                if plain.starts_with(b"k8s:enc:") {
                    return Err(Undecodable::Malformed("doubly encrypted value".into()));
                }
                self.decode(key, &plain)
            }
            Stored::Protobuf {
                api_version,
                kind,
                raw,
                ..
            } => self.protobuf(&api_version, &kind, &raw, false, 0),
            Stored::Json(bytes) => serde_json::from_slice(bytes)
                .map(Decoded::whole)
                .map_err(|e| Undecodable::Malformed(format!("JSON: {e}"))),
            Stored::Cbor(_) => Err(Undecodable::Cbor),
            Stored::Other(bytes) => Err(Undecodable::NotAnObject(bytes.len())),
        }
    }

    /// Like [`Decoder::decode`] for a protobuf value whose envelope names no type (wire types
    /// such as `WatchEvent` travel that way; the reader knows the type from context).
    pub fn decode_as(
        &self,
        value: &[u8],
        api_version: &str,
        kind: &str,
    ) -> Result<Decoded, Undecodable> {
        match envelope::classify(value).map_err(|e| Undecodable::Malformed(e.to_string()))? {
            Stored::Protobuf {
                api_version: a,
                kind: k,
                raw,
                ..
            } if a.is_empty() && k.is_empty() => self.protobuf(api_version, kind, &raw, true, 0),
            _ => self.decode(b"", value),
        }
    }

    /// `untyped`: the envelope named no type, so the JSON carries none either.
    fn protobuf(
        &self,
        api_version: &str,
        kind: &str,
        raw: &[u8],
        untyped: bool,
        depth: usize,
    ) -> Result<Decoded, Undecodable> {
        let desc =
            self.schema
                .message_for(api_version, kind)
                .ok_or_else(|| Undecodable::NoSchema {
                    api_version: api_version.to_owned(),
                    kind: kind.to_owned(),
                })?;
        let msg = DynamicMessage::decode(desc, raw)
            .map_err(|e| Undecodable::Malformed(format!("{api_version} {kind}: {e}")))?;
        let embedded = |bytes: &[u8]| self.embedded(bytes, depth);
        let json = message_to_json(&msg, &|bytes| embedded(bytes).map(|d| d.json));
        let mut unknown = Unknown::of(&msg, &|bytes| embedded(bytes).map(|d| d.unknown));
        if !unknown.is_empty() {
            unknown.message = msg.descriptor().full_name().to_owned();
        }
        if untyped {
            return Ok(Decoded { json, unknown });
        }
        let mut out = Map::new();
        // TypeMeta lives only in the envelope; the API server puts it first
        if !api_version.is_empty() {
            out.insert("apiVersion".into(), Json::String(api_version.to_owned()));
        }
        if !kind.is_empty() {
            out.insert("kind".into(), Json::String(kind.to_owned()));
        }
        match json {
            Json::Object(fields) => out.extend(fields),
            other => {
                return Ok(Decoded {
                    json: other,
                    unknown,
                });
            }
        }
        Ok(Decoded {
            json: Json::Object(out),
            unknown,
        })
    }

    /// An object embedded in another (`RawExtension` holding `k8s\0…`), a few levels deep.
    fn embedded(&self, bytes: &[u8], depth: usize) -> Option<Decoded> {
        match envelope::classify(bytes).ok()? {
            Stored::Protobuf {
                api_version,
                kind,
                raw,
                ..
            } if depth < MAX_NESTING => self
                .protobuf(&api_version, &kind, &raw, false, depth + 1)
                .ok(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ld(out: &mut Vec<u8>, field: u8, payload: &[u8]) {
        out.push(field << 3 | 2);
        let mut n = payload.len();
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
        out.extend_from_slice(payload);
    }

    /// `k8s\0` + Unknown{apps/v1 ControllerRevision{data: RawExtension{raw: inner}}}.
    fn revision_holding(inner: &[u8]) -> Vec<u8> {
        let (mut raw_ext, mut cr, mut tm) = (Vec::new(), Vec::new(), Vec::new());
        ld(&mut raw_ext, 1, inner);
        ld(&mut cr, 2, &raw_ext);
        ld(&mut tm, 1, b"apps/v1");
        ld(&mut tm, 2, b"ControllerRevision");
        let mut v = b"k8s\0".to_vec();
        ld(&mut v, 1, &tm);
        ld(&mut v, 2, &cr);
        v
    }

    #[test]
    fn nested_objects_decode_a_few_levels_deep_and_a_crafted_tower_does_not_overflow() {
        let d = Decoder::new(Schema::builtin().unwrap(), Keyring::empty());
        let once = revision_holding(br#"{"a":1}"#);
        let twice = revision_holding(&once);
        let got = d
            .decode(b"/registry/controllerrevisions/ns/x", &twice)
            .unwrap()
            .json;
        assert_eq!(got["data"]["data"], serde_json::json!({"a": 1}));
        assert_eq!(got["data"]["kind"], "ControllerRevision");
        let mut tower = br#"{"a":1}"#.to_vec();
        for _ in 0..20_000 {
            tower = revision_holding(&tower);
        }
        let got = d
            .decode(b"/registry/controllerrevisions/ns/x", &tower)
            .unwrap()
            .json;
        let mut level = &got;
        for _ in 0..=MAX_NESTING {
            level = &level["data"];
        }
        assert!(level.is_string(), "deeper levels stay base64");
    }

    #[test]
    fn malformed_values_say_what_they_are() {
        let d = Decoder::new(Schema::builtin().unwrap(), Keyring::empty());
        let k = b"/registry/configmaps/ns/x";
        let json = d
            .decode(k, br#"{"kind": "ConfigMap", "metadata": "#)
            .unwrap_err();
        assert!(
            matches!(&json, Undecodable::Malformed(m) if m.starts_with("JSON")),
            "{json}"
        );
        // a ConfigMap whose metadata field claims more bytes than there are
        let mut v = b"k8s\0".to_vec();
        v.extend([0x0a, 0x0f, 0x0a, 0x02, b'v', b'1', 0x12, 0x09]);
        v.extend(b"ConfigMap");
        v.extend([0x12, 0x03, 0x0a, 0x7f, 0x00]);
        let pb = d.decode(k, &v).unwrap_err();
        assert!(
            matches!(&pb, Undecodable::Malformed(m) if m.contains("v1 ConfigMap")),
            "{pb}"
        );
        assert_eq!(
            d.decode(k, b"12345").unwrap_err(),
            Undecodable::NotAnObject(5)
        );
        let enc = d
            .decode(k, b"k8s:enc:aescbc:v1:k:0123456789abcdef0123456789abcdef")
            .unwrap_err();
        assert!(matches!(
            enc,
            Undecodable::Encrypted {
                reason: DecryptError::NoKey,
                ..
            }
        ));
    }
}
