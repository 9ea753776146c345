//! Protobuf fields the schema does not know: a newer Kubernetes (or OpenShift) release wrote them,
//! or the `.proto` files given are older than the cluster. Decoding keeps them aside (they are
//! not in the JSON), so every one is found here, at any depth, and named to the user: the object
//! they sit in is lossy and must not be mistaken for a faithful copy.

use prost_reflect::prost::encoding::WireType;
use prost_reflect::{DynamicMessage, Kind, ReflectMessage, Value};

use crate::k8s::json::{is_inline, json_name, map_key};

const RAW_EXTENSION: &str = "k8s.io.apimachinery.pkg.runtime.RawExtension";

/// Decodes an embedded `k8s\0` object and says what it did not know (`None`: not decoded).
pub type Embedded<'a> = dyn Fn(&[u8]) -> Option<Unknown> + 'a;

/// At most this many unknown fields are listed per object (a crafted value may hold millions);
/// the rest are counted.
pub const MAX_LISTED: usize = 64;

/// One field the schema does not know.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UnknownField {
    /// Where it sits in the object's JSON, `spec.template.spec.containers[0]` (`""`: the top).
    pub path: String,
    /// The protobuf message it sits in, `k8s.io.api.core.v1.Container`.
    pub message: String,
    /// Its field number.
    pub number: u32,
    /// Its wire type: `varint`, `i64`, `len`, `group` or `i32`.
    pub wire_type: &'static str,
}

impl std::fmt::Display for UnknownField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = if self.path.is_empty() {
            "top level"
        } else {
            &self.path
        };
        write!(
            f,
            "field {} ({}) at {at} in {}",
            self.number, self.wire_type, self.message
        )
    }
}

/// What one object's decoding did not understand.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Unknown {
    /// The object's protobuf message, `k8s.io.api.apps.v1.Deployment` (set when not empty).
    pub message: String,
    /// The first [`MAX_LISTED`] fields, in the order met.
    pub fields: Vec<UnknownField>,
    /// How many more there were.
    #[serde(skip_serializing_if = "is_zero")]
    pub more: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Unknown {
    /// Nothing unknown: the JSON is the whole object.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.more == 0
    }

    /// Every unknown field of `msg` and the messages inside it. Most objects have none: a walk
    /// that builds no paths looks first.
    pub fn of(msg: &DynamicMessage, embedded: &Embedded<'_>) -> Unknown {
        let mut u = Unknown::default();
        if needs_a_look(msg) {
            u.collect(msg, "", embedded);
        }
        u
    }

    /// Every unknown field of `msg` and the messages inside it; `path` is where `msg` sits.
    /// `embedded` reports those of an object a `RawExtension` holds (`k8s\0…`).
    fn collect(&mut self, msg: &DynamicMessage, path: &str, embedded: &Embedded<'_>) {
        let desc = msg.descriptor();
        if desc.full_name() == RAW_EXTENSION
            && let Some(Value::Bytes(raw)) = msg.get_field_by_name("raw").as_deref()
            && raw.starts_with(b"k8s\0")
            && let Some(inner) = embedded(raw)
        {
            self.extend_embedded(path, inner);
        }
        for u in msg.unknown_fields() {
            self.push(UnknownField {
                path: path.to_owned(),
                message: desc.full_name().to_owned(),
                number: u.number(),
                wire_type: wire_name(u.wire_type()),
            });
        }
        for (field, value) in msg.fields() {
            if !matches!(field.kind(), Kind::Message(_)) {
                continue;
            }
            // an inlined Go struct's fields are the parent's in JSON: so is its path
            let here = if is_inline(&desc, &field) {
                path.to_owned()
            } else {
                join(path, &json_name(&desc, &field))
            };
            match value {
                Value::Message(m) => self.collect(m, &here, embedded),
                Value::List(items) => {
                    for (i, item) in items.iter().enumerate() {
                        if let Value::Message(m) = item {
                            self.collect(m, &format!("{here}[{i}]"), embedded);
                        }
                    }
                }
                Value::Map(map) => {
                    for (k, v) in map {
                        if let Value::Message(m) = v {
                            // map keys are data: quoted and escaped, so a path never breaks a line or a comment
                            let at = format!("{here}[{:?}]", map_key(k));
                            self.collect(m, &at, embedded);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    fn extend_embedded(&mut self, path: &str, inner: Unknown) {
        for mut f in inner.fields {
            f.path = join(path, &f.path);
            self.push(f);
        }
        self.more += inner.more;
    }

    fn push(&mut self, f: UnknownField) {
        if self.fields.len() < MAX_LISTED {
            self.fields.push(f);
        } else {
            self.more += 1;
        }
    }

    /// `field 9 (len) at spec in k8s.io.api.apps.v1.DeploymentSpec; field 3 …`.
    pub fn summary(&self) -> String {
        let mut s: Vec<String> = self.fields.iter().map(ToString::to_string).collect();
        if self.more > 0 {
            s.push(format!("and {} more", self.more));
        }
        s.join("; ")
    }
}

/// Whether `msg` or a message inside it has an unknown field, or embeds an object (whose own
/// fields only decoding it tells).
fn needs_a_look(msg: &DynamicMessage) -> bool {
    if msg.unknown_fields().next().is_some() {
        return true;
    }
    if msg.descriptor().full_name() == RAW_EXTENSION {
        return matches!(msg.get_field_by_name("raw").as_deref(),
            Some(Value::Bytes(raw)) if raw.starts_with(b"k8s\0"));
    }
    msg.fields().any(|(_, value)| match value {
        Value::Message(m) => needs_a_look(m),
        Value::List(items) => items
            .iter()
            .any(|v| matches!(v, Value::Message(m) if needs_a_look(m))),
        Value::Map(map) => map
            .values()
            .any(|v| matches!(v, Value::Message(m) if needs_a_look(m))),
        _ => false,
    })
}

fn join(path: &str, name: &str) -> String {
    match (path.is_empty(), name.is_empty()) {
        (true, _) => name.to_owned(),
        (_, true) => path.to_owned(),
        _ if name.starts_with('[') => format!("{path}{name}"),
        _ => format!("{path}.{name}"),
    }
}

fn wire_name(w: WireType) -> &'static str {
    match w {
        WireType::Varint => "varint",
        WireType::SixtyFourBit => "i64",
        WireType::LengthDelimited => "len",
        WireType::StartGroup | WireType::EndGroup => "group",
        WireType::ThirtyTwoBit => "i32",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::decode::Decoder;
    use crate::k8s::encryption::Keyring;
    use crate::k8s::schema::Schema;
    use proptest::prelude::*;

    fn varint(out: &mut Vec<u8>, mut n: u64) {
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }

    /// One field of wire type `wire` (0 varint, 1 i64, 2 len, 5 i32).
    fn field(number: u32, wire: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        varint(&mut v, u64::from(number) << 3 | u64::from(wire));
        match wire {
            0 => varint(&mut v, payload.len() as u64),
            1 => v.extend([7u8; 8]),
            5 => v.extend([7u8; 4]),
            _ => {
                varint(&mut v, payload.len() as u64);
                v.extend_from_slice(payload);
            }
        }
        v
    }

    fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let tm = [
            field(1, 2, api_version.as_bytes()),
            field(2, 2, kind.as_bytes()),
        ]
        .concat();
        let mut v = b"k8s\0".to_vec();
        v.extend([field(1, 2, &tm), field(2, 2, raw)].concat());
        v
    }

    fn decoder() -> &'static Decoder {
        static D: std::sync::OnceLock<Decoder> = std::sync::OnceLock::new();
        D.get_or_init(|| Decoder::new(Schema::builtin().unwrap(), Keyring::empty()))
    }

    #[test]
    fn map_values_inlined_structs_and_embedded_objects_have_their_paths() {
        // a map of messages (CertificateSigningRequest spec.extra: ExtraValue), its key crafted
        let extra_value = [field(1, 2, b"x"), field(50, 0, b"")].concat();
        let entry = [field(1, 2, b"a\nkind: Evil"), field(2, 2, &extra_value)].concat();
        let spec = [field(6, 2, &entry)].concat();
        let csr = [field(1, 2, &field(1, 2, b"c")), field(2, 2, &spec)].concat();
        let got = decoder()
            .decode(
                b"/registry/certificatesigningrequests/c",
                &envelope("certificates.k8s.io/v1", "CertificateSigningRequest", &csr),
            )
            .unwrap();
        assert_eq!(got.unknown.fields.len(), 1, "{:?}", got.unknown);
        let f = &got.unknown.fields[0];
        assert_eq!(f.path, "spec.extra[\"a\\nkind: Evil\"]");
        assert_eq!(f.number, 50);
        assert!(!f.to_string().contains('\n'));
        // an inlined Go struct (Volume.volumeSource): the path is the parent's
        let empty_dir = field(60, 0, b"");
        let source = field(2, 2, &empty_dir);
        let volume = [field(1, 2, b"data"), field(2, 2, &source)].concat();
        let pod_spec = field(1, 2, &volume);
        let pod = [field(1, 2, &field(1, 2, b"p")), field(2, 2, &pod_spec)].concat();
        let got = decoder()
            .decode(b"/registry/pods/ns/p", &envelope("v1", "Pod", &pod))
            .unwrap();
        let f = &got.unknown.fields[0];
        assert_eq!(
            (f.path.as_str(), f.message.as_str()),
            (
                "spec.volumes[0].emptyDir",
                "k8s.io.api.core.v1.EmptyDirVolumeSource"
            )
        );
        // an object embedded in a ControllerRevision's data keeps its own unknown fields
        let inner = envelope(
            "v1",
            "ConfigMap",
            &[field(1, 2, b""), field(88, 0, b"")].concat(),
        );
        let revision = [
            field(1, 2, &field(1, 2, b"r")),
            field(2, 2, &field(1, 2, &inner)),
        ]
        .concat();
        let got = decoder()
            .decode(
                b"/registry/controllerrevisions/ns/r",
                &envelope("apps/v1", "ControllerRevision", &revision),
            )
            .unwrap();
        let f = &got.unknown.fields[0];
        assert_eq!((f.path.as_str(), f.number), ("data", 88));
        assert_eq!(f.message, "k8s.io.api.core.v1.ConfigMap");
    }

    #[test]
    fn a_flood_of_unknown_fields_is_counted_not_listed() {
        let mut cm = field(1, 2, &field(1, 2, b"c"));
        for i in 0..1000 {
            cm.extend(field(100 + i, 0, b""));
        }
        let got = decoder()
            .decode(
                b"/registry/configmaps/ns/c",
                &envelope("v1", "ConfigMap", &cm),
            )
            .unwrap();
        assert_eq!(got.unknown.fields.len(), MAX_LISTED);
        assert_eq!(got.unknown.more, 1000 - MAX_LISTED);
        assert!(
            got.unknown
                .summary()
                .ends_with(&format!("and {} more", 1000 - MAX_LISTED))
        );
    }

    proptest! {
        /// Fields appended at the top and inside ObjectMeta, of any wire type and number the
        /// schema lacks, are each found with their number, wire type and place; the known
        /// fields still decode.
        #[test]
        fn every_appended_field_is_found_where_it_is(
            top in prop::collection::vec((100u32..100_000, prop::sample::select(vec![0u8, 1, 2, 5])), 0..6),
            in_meta in prop::collection::vec((100u32..100_000, prop::sample::select(vec![0u8, 1, 2, 5])), 0..6),
            name in "[a-z]{1,10}",
        ) {
            let mut meta = field(1, 2, name.as_bytes());
            for (n, w) in &in_meta {
                meta.extend(field(*n, *w, b"abc"));
            }
            let mut cm = field(1, 2, &meta);
            for (n, w) in &top {
                cm.extend(field(*n, *w, b"abc"));
            }
            let got = decoder()
                .decode(b"/registry/configmaps/ns/c", &envelope("v1", "ConfigMap", &cm))
                .unwrap();
            prop_assert_eq!(got.json["metadata"]["name"].as_str(), Some(name.as_str()));
            let wire = |w: u8| match w { 0 => "varint", 1 => "i64", 2 => "len", _ => "i32" };
            let mut want: Vec<(String, u32, &str)> = top
                .iter()
                .map(|(n, w)| (String::new(), *n, wire(*w)))
                .chain(in_meta.iter().map(|(n, w)| ("metadata".to_owned(), *n, wire(*w))))
                .collect();
            let mut found: Vec<(String, u32, &str)> = got
                .unknown
                .fields
                .iter()
                .map(|f| (f.path.clone(), f.number, f.wire_type))
                .collect();
            want.sort();
            found.sort();
            prop_assert_eq!(found, want);
            prop_assert_eq!(got.unknown.is_empty(), top.is_empty() && in_meta.is_empty());
        }
    }
}
