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

/// A document object saying what it is: `kind` and `format_version` first, then the fields of
/// `body` (a struct or a map), serialized as they stream (nothing is built in between).
#[derive(Serialize)]
struct Stamped<'a, T: ?Sized> {
    kind: &'a str,
    format_version: u32,
    #[serde(flatten)]
    body: &'a T,
}

/// `value` (a struct or a map) as pretty JSON text, stamped with `kind` (see [`Stamped`]).
pub fn json_text<T: Serialize + ?Sized>(kind: &str, value: &T) -> serde_json::Result<String> {
    serde_json::to_string_pretty(&Stamped {
        kind,
        format_version: FORMAT_VERSION,
        body: value,
    })
}

/// `items` as a pretty JSON array, each object stamped with `kind`.
pub fn json_text_each<T: Serialize>(kind: &str, items: &[T]) -> serde_json::Result<String> {
    let stamped: Vec<Stamped<'_, T>> = items
        .iter()
        .map(|body| Stamped {
            kind,
            format_version: FORMAT_VERSION,
            body,
        })
        .collect();
    serde_json::to_string_pretty(&stamped)
}

/// Prints `items` as a JSON array of objects of kind `kind` (see [`json_text_each`]), or calls
/// `text` for the human form.
pub fn emit_each<T: Serialize>(
    format: OutputFormat,
    kind: &str,
    items: &[T],
    text: impl FnOnce(&[T]) -> String,
) -> anyhow::Result<()> {
    match format {
        OutputFormat::Json => println!("{}", json_text_each(kind, items)?),
        OutputFormat::Text => print_text(text(items)),
    }
    Ok(())
}

/// Prints `value` (a struct or a map) as a pretty JSON object of kind `kind` (see
/// [`json_text`]), or calls `text` for the human form.
pub fn emit<T: Serialize>(
    format: OutputFormat,
    kind: &str,
    value: &T,
    text: impl FnOnce(&T) -> String,
) -> anyhow::Result<()> {
    match format {
        OutputFormat::Json => println!("{}", json_text(kind, value)?),
        OutputFormat::Text => print_text(text(value)),
    }
    Ok(())
}

fn print_text(s: String) {
    if !s.is_empty() {
        println!("{}", s.trim_end());
    }
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
        let one = json_text(
            "VerifyReport",
            &serde_json::json!({"name": "n", "details": {"a": 1}}),
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&one).unwrap();
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"kind":"VerifyReport","format_version":1,"name":"n","details":{"a":1}}"#,
            "first, and only at the top"
        );
        #[derive(Serialize)]
        struct Item {
            name: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            size: Option<u64>,
            record: serde_json::Value,
        }
        let items = [
            Item {
                name: "a",
                size: Some(1),
                record: serde_json::json!({"format_version": 1}),
            },
            Item {
                name: "b",
                size: None,
                record: serde_json::Value::Null,
            },
        ];
        let many: serde_json::Value =
            serde_json::from_str(&json_text_each("Backup", &items).unwrap()).unwrap();
        assert_eq!(many[0]["kind"], "Backup");
        assert_eq!(many[1]["format_version"], FORMAT_VERSION);
        assert_eq!(many[0]["size"], 1);
        assert!(many[1].get("size").is_none(), "skipped fields stay skipped");
        assert!(many[0]["record"].get("kind").is_none());
        assert_eq!(json_text_each::<Item>("Backup", &[]).unwrap(), "[]");
    }
}
