//! Bundle names: `<cluster>/<node>/<UTC time>-rev<revision>.cpb`, the record beside it as
//! `….cpb.json`. Names sort by time within a node, and every part is safe as a path segment.

use time::OffsetDateTime;
use time::macros::format_description;

use crate::error::usage;

pub const BUNDLE_EXT: &str = ".cpb";
pub const RECORD_EXT: &str = ".cpb.json";

/// A backup's name, parsed: which cluster and node took it, and its file (time and revision).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleName {
    /// The cluster's name.
    pub cluster: String,
    /// The node's name.
    pub node: String,
    /// `<UTC time>-rev<revision>.cpb`.
    pub file: String,
}

/// Backups sort by the time in their file name, across clusters and nodes, then by name.
impl Ord for BundleName {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (&self.file, &self.cluster, &self.node).cmp(&(&other.file, &other.cluster, &other.node))
    }
}

impl PartialOrd for BundleName {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// As its key, `cluster/node/file.cpb`.
impl serde::Serialize for BundleName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl std::fmt::Display for BundleName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.cluster, self.node, self.file)
    }
}

impl BundleName {
    pub fn new(
        cluster: &str,
        node: &str,
        at: OffsetDateTime,
        revision: i64,
    ) -> anyhow::Result<Self> {
        let fmt = format_description!("[year][month][day]T[hour][minute][second]Z");
        let ts = at.to_offset(time::UtcOffset::UTC).format(&fmt)?;
        Ok(BundleName {
            cluster: segment(cluster, "cluster_name")?,
            node: segment(node, "node_name")?,
            file: format!("{ts}-rev{revision}{BUNDLE_EXT}"),
        })
    }

    /// `cluster/node/file.cpb`.
    pub fn key(&self) -> String {
        self.to_string()
    }

    /// What retention groups by: `cluster`, or `cluster/node`.
    pub fn group(&self, by_cluster: bool) -> String {
        if by_cluster {
            self.cluster.clone()
        } else {
            format!("{}/{}", self.cluster, self.node)
        }
    }

    /// The UTC time the name carries (`<time>-rev<N>.cpb`), if it has one.
    pub fn time(&self) -> Option<OffsetDateTime> {
        let fmt = format_description!("[year][month][day]T[hour][minute][second]Z");
        let ts = self.file.split('-').next()?;
        time::PrimitiveDateTime::parse(ts, &fmt)
            .ok()
            .map(|t| t.assume_utc())
    }

    /// Parses a key as `list` prints it.
    pub fn parse(key: &str) -> Option<Self> {
        let mut parts = key.trim_matches('/').split('/');
        let (c, n, f) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some()
            || !f.ends_with(BUNDLE_EXT)
            || [c, n, f].iter().any(|p| !is_safe(p))
        {
            return None;
        }
        Some(BundleName {
            cluster: c.into(),
            node: n.into(),
            file: f.into(),
        })
    }
}

fn is_safe(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Checks a name used as a path segment.
fn segment(s: &str, key: &str) -> anyhow::Result<String> {
    if is_safe(s) {
        Ok(s.to_owned())
    } else {
        Err(usage(format!(
            "{key} = {s:?} cannot be used in a backup name: use letters, digits, '-', '_' and '.' only"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn name_round_trip() {
        let n = BundleName::new(
            "prod",
            "master-0.example.com",
            datetime!(2026-11-22 22:10:05 UTC),
            4242,
        )
        .unwrap();
        assert_eq!(
            n.key(),
            "prod/master-0.example.com/20261122T221005Z-rev4242.cpb"
        );
        assert_eq!(n.time(), Some(datetime!(2026-11-22 22:10:05 UTC)));
        assert_eq!(BundleName::parse(&n.key()), Some(n));
    }

    #[test]
    fn names_sort_by_time_across_nodes() {
        let mut names: Vec<BundleName> = [
            "b/m2/20260102T000000Z-rev9.cpb",
            "a/m1/20260103T000000Z-rev1.cpb",
            "a/m1/20260101T000000Z-rev5.cpb",
        ]
        .iter()
        .map(|k| BundleName::parse(k).unwrap())
        .collect();
        names.sort();
        let keys: Vec<String> = names.iter().map(BundleName::key).collect();
        assert_eq!(
            keys,
            [
                "a/m1/20260101T000000Z-rev5.cpb",
                "b/m2/20260102T000000Z-rev9.cpb",
                "a/m1/20260103T000000Z-rev1.cpb"
            ]
        );
        assert_eq!(names[1].group(true), "b");
        assert_eq!(names[1].group(false), "b/m2");
    }

    #[test]
    fn unsafe_segments_are_refused() {
        assert!(BundleName::new("../x", "n", OffsetDateTime::UNIX_EPOCH, 1).is_err());
        assert!(BundleName::parse("a/../b.cpb").is_none());
        assert!(BundleName::parse("a/b/c.txt").is_none());
        assert!(BundleName::parse("a/b/.c.cpb").is_none());
    }
}
