//! A decoded protobuf message → the JSON the API server would serve for it.
//!
//! The schema says field names, numbers and types; what it cannot say is how Kubernetes' Go
//! types marshal to JSON. Those rules live here, keyed by message and field:
//! - `meta.v1.Time` → RFC 3339 in seconds, `MicroTime` → microseconds, `Duration` → Go's
//!   `1h2m3s`; a zero time (empty message) is `null`, as Go writes it;
//! - `IntOrString` → a number or a string, `Quantity` → its string;
//! - `RawExtension` and `FieldsV1` hold JSON (or a nested `k8s\0` object) and are embedded;
//! - `[]string` wrapper messages (`ExtraValue`, `Verbs`, …: one repeated `items`) → an array;
//! - Go structs embedded with `json:",inline"` are a sub-message on the wire and flattened here;
//! - bytes → base64; integers → numbers; map keys sorted as Go sorts them;
//! - a few proto names differ from the JSON tag (`Webhooks`, `aPIGroup`, …).

use base64::Engine;
use prost_reflect::{
    DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage, Value,
};
use serde_json::{Map, Value as Json};

const META: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.";

/// Embedded (inlined) Go structs: (message, field) whose fields belong to the parent in JSON.
const INLINE: &[(&str, &str)] = &[
    ("*", "localObjectReference"),
    ("Volume", "volumeSource"),
    ("PersistentVolumeSpec", "persistentVolumeSource"),
    ("Probe", "handler"),
    ("EphemeralContainer", "ephemeralContainerCommon"),
    ("IngressRule", "ingressRuleValue"),
    ("RuleWithOperations", "rule"),
    ("MutatingWebhook", "ruleWithOperations"),
    ("NamedRuleWithOperations", "ruleWithOperations"),
    ("DeviceClaimConfiguration", "deviceConfiguration"),
    ("DeviceClassConfiguration", "deviceConfiguration"),
    ("DeviceAllocationConfiguration", "deviceConfiguration"),
];

/// Turns a decoded message into JSON; `nested` decodes a `k8s\0` object found inside a
/// `RawExtension`.
pub fn message_to_json(msg: &DynamicMessage, nested: &dyn Fn(&[u8]) -> Option<Json>) -> Json {
    Walker { nested }.message(msg)
}

struct Walker<'a> {
    nested: &'a dyn Fn(&[u8]) -> Option<Json>,
}

impl Walker<'_> {
    fn message(&self, msg: &DynamicMessage) -> Json {
        let desc = msg.descriptor();
        if let Some(special) = self.special(&desc, msg) {
            return special;
        }
        let mut out = Map::new();
        self.fields_into(msg, &mut out);
        Json::Object(out)
    }

    fn fields_into(&self, msg: &DynamicMessage, out: &mut Map<String, Json>) {
        let desc = msg.descriptor();
        // every ObjectMeta/ListMeta field is `omitempty` in Go, but the protobuf encoder writes
        // its plain strings and numbers even when empty (generateName "", generation 0)
        let omit_empty = matches!(
            desc.full_name().strip_prefix(META),
            Some("ObjectMeta" | "ListMeta")
        );
        let mut fields: Vec<(FieldDescriptor, &Value)> = msg.fields().collect();
        fields.sort_by_key(|(f, _)| f.number());
        for (field, value) in fields {
            if omit_empty && matches!(value, Value::I64(0) | Value::I32(0))
                || matches!(value, Value::String(s) if omit_empty && s.is_empty())
            {
                continue;
            }
            if let Value::Message(child) = value
                && is_inline(&desc, &field)
            {
                self.fields_into(child, out);
                continue;
            }
            out.insert(json_name(&desc, &field), self.value(value));
        }
    }

    fn value(&self, value: &Value) -> Json {
        match value {
            Value::List(items) => Json::Array(items.iter().map(|v| self.scalar(v)).collect()),
            Value::Map(map) => {
                let mut entries: Vec<(String, Json)> = map
                    .iter()
                    .map(|(k, v)| (map_key(k), self.scalar(v)))
                    .collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                Json::Object(entries.into_iter().collect())
            }
            v => self.scalar(v),
        }
    }

    fn scalar(&self, value: &Value) -> Json {
        match value {
            Value::Bool(b) => Json::Bool(*b),
            Value::I32(n) => Json::from(*n),
            Value::I64(n) => Json::from(*n),
            Value::U32(n) => Json::from(*n),
            Value::U64(n) => Json::from(*n),
            Value::F32(n) => Json::from(f64::from(*n)),
            Value::F64(n) => Json::from(*n),
            Value::String(s) => Json::String(s.clone()),
            Value::Bytes(b) => Json::String(base64::engine::general_purpose::STANDARD.encode(b)),
            Value::EnumNumber(n) => Json::from(*n),
            Value::Message(m) => self.message(m),
            Value::List(items) => Json::Array(items.iter().map(|v| self.scalar(v)).collect()),
            Value::Map(_) => Json::Null,
        }
    }

    /// Messages whose JSON is not an object of their fields.
    fn special(&self, desc: &MessageDescriptor, msg: &DynamicMessage) -> Option<Json> {
        let name = desc.full_name();
        if let Some(meta) = name.strip_prefix(META) {
            match meta {
                "Time" => return Some(time(msg, false)),
                "MicroTime" => return Some(time(msg, true)),
                "Duration" => return Some(Json::String(go_duration(int(msg, "duration")))),
                "FieldsV1" => return Some(self.raw_json(bytes(msg, "Raw"))),
                _ => {}
            }
        }
        match name {
            "k8s.io.apimachinery.pkg.util.intstr.IntOrString" => {
                return Some(if int(msg, "type") == 1 {
                    Json::String(string(msg, "strVal"))
                } else {
                    Json::from(int(msg, "intVal"))
                });
            }
            "k8s.io.apimachinery.pkg.api.resource.Quantity" => {
                return Some(Json::String(string(msg, "string")));
            }
            "k8s.io.apimachinery.pkg.runtime.RawExtension" => {
                return Some(self.raw_json(bytes(msg, "raw")));
            }
            _ => {}
        }
        // a Go `[]string` (ExtraValue, Verbs, …) travels as a message with one repeated `items`
        let mut fields = desc.fields();
        if let (Some(only), None) = (fields.next(), fields.next())
            && only.name() == "items"
            && only.is_list()
            && !matches!(only.kind(), Kind::Message(_))
        {
            return Some(match msg.get_field(&only).as_ref() {
                Value::List(items) => Json::Array(items.iter().map(|v| self.scalar(v)).collect()),
                _ => Json::Array(Vec::new()),
            });
        }
        None
    }

    /// Embedded JSON bytes; a nested `k8s\0` object is decoded; anything else stays base64.
    fn raw_json(&self, raw: Vec<u8>) -> Json {
        if raw.is_empty() {
            return Json::Null;
        }
        if let Ok(v) = serde_json::from_slice(&raw) {
            return v;
        }
        if let Some(v) = (self.nested)(&raw) {
            return v;
        }
        Json::String(base64::engine::general_purpose::STANDARD.encode(raw))
    }
}

pub(crate) fn is_inline(desc: &MessageDescriptor, field: &FieldDescriptor) -> bool {
    INLINE
        .iter()
        .any(|(m, f)| (*m == "*" || *m == desc.name()) && *f == field.name())
}

/// The JSON tag of a field: the proto name, except where Go's generator kept the Go spelling.
pub(crate) fn json_name(desc: &MessageDescriptor, field: &FieldDescriptor) -> String {
    let name = field.name();
    match (desc.name(), name) {
        (_, "aPIGroup") => "apiGroup".into(),
        (_, "uID") => "uid".into(),
        ("DaemonEndpoint", "Port") => name.to_owned(),
        _ if name.starts_with(|c: char| c.is_ascii_uppercase()) => {
            let mut s = name.to_owned();
            s[..1].make_ascii_lowercase();
            s
        }
        _ => name.to_owned(),
    }
}

pub(crate) fn map_key(k: &prost_reflect::MapKey) -> String {
    use prost_reflect::MapKey;
    match k {
        MapKey::String(s) => s.clone(),
        MapKey::Bool(b) => b.to_string(),
        MapKey::I32(n) => n.to_string(),
        MapKey::I64(n) => n.to_string(),
        MapKey::U32(n) => n.to_string(),
        MapKey::U64(n) => n.to_string(),
    }
}

fn field<'m>(msg: &'m DynamicMessage, name: &str) -> Option<std::borrow::Cow<'m, Value>> {
    msg.get_field_by_name(name)
}

fn int(msg: &DynamicMessage, name: &str) -> i64 {
    match field(msg, name).as_deref() {
        Some(Value::I32(n)) => i64::from(*n),
        Some(Value::I64(n)) => *n,
        _ => 0,
    }
}

fn string(msg: &DynamicMessage, name: &str) -> String {
    match field(msg, name).as_deref() {
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    }
}

fn bytes(msg: &DynamicMessage, name: &str) -> Vec<u8> {
    match field(msg, name).as_deref() {
        Some(Value::Bytes(b)) => b.to_vec(),
        _ => Vec::new(),
    }
}

/// `meta.v1.Time` (seconds; Go drops the nanoseconds) or `MicroTime` (microseconds), UTC.
fn time(msg: &DynamicMessage, micro: bool) -> Json {
    let has = |n: &str| {
        msg.descriptor()
            .get_field_by_name(n)
            .is_some_and(|f| msg.has_field(&f))
    };
    if !has("seconds") && !has("nanos") {
        return Json::Null;
    }
    let secs = int(msg, "seconds");
    let nanos = int(msg, "nanos");
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(secs) else {
        return Json::Null;
    };
    let base = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    Json::String(if micro {
        format!("{base}.{:06}Z", nanos / 1000)
    } else {
        format!("{base}Z")
    })
}

/// Go's `time.Duration.String()`: `1h2m3.5s`, `300ms`, `0s`.
pub fn go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let neg = if ns < 0 { "-" } else { "" };
    let u = ns.unsigned_abs();
    if u < 1_000_000_000 {
        let (unit, div) = match u {
            0..1_000 => ("ns", 1u64),
            1_000..1_000_000 => ("µs", 1_000),
            _ => ("ms", 1_000_000),
        };
        return format!("{neg}{}{unit}", frac(u, div));
    }
    let h = u / 3_600_000_000_000;
    let m = (u / 60_000_000_000) % 60;
    let s = frac(u % 60_000_000_000, 1_000_000_000);
    match (h, m) {
        (0, 0) => format!("{neg}{s}s"),
        (0, m) => format!("{neg}{m}m{s}s"),
        (h, m) => format!("{neg}{h}h{m}m{s}s"),
    }
}

/// `n / div` with the fraction's trailing zeros dropped (`1500, 1000` → `1.5`).
fn frac(n: u64, div: u64) -> String {
    let whole = n / div;
    let rest = n % div;
    if rest == 0 {
        return whole.to_string();
    }
    let width = div.ilog10() as usize;
    let digits = format!("{rest:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::go_duration;

    #[test]
    fn durations_read_like_go() {
        for (ns, want) in [
            (0, "0s"),
            (1, "1ns"),
            (1_500, "1.5µs"),
            (300_000_000, "300ms"),
            (1_000_000_000, "1s"),
            (90_000_000_000, "1m30s"),
            (3_600_000_000_000, "1h0m0s"),
            (3_723_500_000_000, "1h2m3.5s"),
            (-2_000_000_000, "-2s"),
        ] {
            assert_eq!(go_duration(ns), want, "{ns}");
        }
    }
}
