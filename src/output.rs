//! Reports on stdout: one JSON document with `--output json`, aligned text otherwise.

use clap::ValueEnum;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    Text,
    Json,
}

/// The version of the JSON outputs' shapes (docs/output.md), in every object as
/// `format_version`: raised only when a documented field changes meaning or goes away (new
/// fields may appear at any time).
pub const FORMAT_VERSION: u32 = 1;

/// `value` as JSON, each document object saying what it is: `kind` and `format_version` first
/// in the object itself, or in each object of a top-level array (`list`, `prune`).
pub fn stamped<T: Serialize>(kind: &str, value: &T) -> serde_json::Result<serde_json::Value> {
    use serde_json::{Map, Value};
    let stamp = |v: Value| match v {
        Value::Object(fields) => {
            let mut o = Map::with_capacity(fields.len() + 2);
            o.insert("kind".into(), kind.into());
            o.insert("format_version".into(), FORMAT_VERSION.into());
            o.extend(fields);
            Value::Object(o)
        }
        other => other,
    };
    Ok(match serde_json::to_value(value)? {
        Value::Array(items) => Value::Array(items.into_iter().map(stamp).collect()),
        v => stamp(v),
    })
}

/// `value` stamped with `kind` (see [`stamped`]) as pretty JSON text.
pub fn json_text<T: Serialize>(kind: &str, value: &T) -> serde_json::Result<String> {
    serde_json::to_string_pretty(&stamped(kind, value)?)
}

/// Prints `value` as pretty JSON (its objects of kind `kind`, see [`stamped`]), or calls `text`
/// for the human form.
pub fn emit<T: Serialize>(
    format: OutputFormat,
    kind: &str,
    value: &T,
    text: impl FnOnce(&T) -> String,
) -> anyhow::Result<()> {
    match format {
        OutputFormat::Json => println!("{}", json_text(kind, value)?),
        OutputFormat::Text => {
            let s = text(value);
            if !s.is_empty() {
                println!("{}", s.trim_end());
            }
        }
    }
    Ok(())
}

/// Human size with binary units (e.g. "1.5 GiB").
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Renders rows as left-aligned columns.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = line(header.to_vec());
    for r in rows {
        out.push('\n');
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// The error of a write to stdout: [`crate::error::StdoutClosed`] when it was a broken pipe.
pub fn stdout_error(e: anyhow::Error) -> anyhow::Error {
    let broken = e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    });
    if broken {
        anyhow::Error::new(crate::error::StdoutClosed)
    } else {
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn sizes() {
        assert_eq!(human_size(10), "10 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(3 << 30), "3.0 GiB");
    }

    #[test]
    fn every_document_object_says_its_kind_first() {
        let one = stamped(
            "VerifyReport",
            &serde_json::json!({"name": "n", "details": {"a": 1}}),
        )
        .unwrap();
        assert_eq!(
            serde_json::to_string(&one).unwrap(),
            r#"{"kind":"VerifyReport","format_version":1,"name":"n","details":{"a":1}}"#,
            "first, and only at the top"
        );
        let many = stamped(
            "Backup",
            &serde_json::json!([{"name": "a", "record": {"format_version": 1}}, {"name": "b"}]),
        )
        .unwrap();
        assert_eq!(many[0]["kind"], "Backup");
        assert_eq!(many[1]["format_version"], FORMAT_VERSION);
        assert!(many[0]["record"].get("kind").is_none());
        assert_eq!(
            stamped("Backup", &Vec::<u8>::new()).unwrap(),
            serde_json::json!([])
        );
    }
}
