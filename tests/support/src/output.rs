//! JSON outputs against the contract in docs/output.md: each field a command prints is
//! documented with its type, and each documented field that is not optional is printed.

use std::collections::BTreeMap;
use std::fs;

use serde_json::Value;

/// section title → (field → (type, optional)), from the tables of docs/output.md.
fn documented() -> BTreeMap<String, BTreeMap<String, (String, bool)>> {
    let text =
        fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/output.md")).unwrap();
    let mut out: BTreeMap<String, BTreeMap<String, (String, bool)>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines() {
        if let Some(t) = line.strip_prefix("## ") {
            section = t.trim().to_owned();
            continue;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if section.is_empty() || cells.len() < 4 || !cells[1].starts_with('`') {
            continue;
        }
        let field = cells[1].trim_matches('`').to_owned();
        let (ty, optional) = match cells[2].strip_suffix('?') {
            Some(t) => (t.to_owned(), true),
            None => (cells[2].to_owned(), false),
        };
        out.entry(section.clone())
            .or_default()
            .insert(field, (ty, optional));
    }
    out
}

fn type_ok(ty: &str, v: &Value) -> bool {
    match ty {
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        _ => panic!("docs/output.md: unknown type {ty}"),
    }
}

/// The `kind` a section documents (the literal in its `kind` row's meaning cell).
fn documented_kind(section: &str) -> Option<String> {
    let text =
        fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/output.md")).unwrap();
    let mut current = "";
    for line in text.lines() {
        if let Some(t) = line.strip_prefix("## ") {
            current = t.trim();
        } else if current == section
            && let Some(rest) = line.strip_prefix("| `kind` | string | `")
        {
            return rest.split('`').next().map(str::to_owned);
        }
    }
    None
}

/// Checks one object against a section (its `kind` too, where the section documents one);
/// returns how many fields were checked.
pub fn conforms(section: &str, v: &Value) -> usize {
    let docs = documented();
    let fields = docs
        .get(section)
        .unwrap_or_else(|| panic!("docs/output.md has no section {section}"));
    if let Some(kind) = documented_kind(section) {
        assert_eq!(v["kind"], kind.as_str(), "{section}: kind");
        assert_eq!(v["format_version"], 1, "{section}: format_version");
    }
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("{section}: not an object: {v}"));
    for (k, val) in obj {
        let (ty, optional) = fields
            .get(k)
            .unwrap_or_else(|| panic!("{section}: field {k} is not in docs/output.md"));
        if val.is_null() {
            assert!(
                optional,
                "{section}: {k} is null but not documented as optional"
            );
        } else {
            assert!(type_ok(ty, val), "{section}: {k} = {val} is not a {ty}");
        }
    }
    for (k, (_, optional)) in fields {
        assert!(
            *optional || obj.contains_key(k),
            "{section}: documented field {k} missing from {v}"
        );
    }
    obj.len()
}
