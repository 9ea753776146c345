//! What a reader asks of a store's listing before anything per backup is read: which cluster,
//! node and time range (all told by the names alone), and the per-cluster fleet summary that
//! needs nothing but the listing pass.

use std::collections::BTreeMap;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{BackupState, BundleName, Listing};

/// `--since`/`--until`: an RFC 3339 time, or an age before now (`90m`, `36h`, `7d`, `2w`).
pub fn parse_when(s: &str) -> Result<OffsetDateTime, String> {
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t);
    }
    let bad = || {
        format!(
            "{s:?} is neither an RFC 3339 time (2026-11-30T00:00:00Z) nor an age (90m, 36h, 7d)"
        )
    };
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = s.split_at(split);
    let n: i64 = n.parse().map_err(|_| bad())?;
    let age = match unit {
        "s" => time::Duration::seconds(n),
        "m" => time::Duration::minutes(n),
        "h" => time::Duration::hours(n),
        "d" => time::Duration::days(n),
        "w" => time::Duration::weeks(n),
        _ => return Err(bad()),
    };
    Ok(OffsetDateTime::now_utc() - age)
}

/// Which backups, by what their names say.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Only this cluster.
    pub cluster: Option<String>,
    /// Only this node.
    pub node: Option<String>,
    /// Taken at or after.
    pub since: Option<OffsetDateTime>,
    /// Taken before.
    pub until: Option<OffsetDateTime>,
}

impl Query {
    /// Whether the backup named `name` is asked for (a name without a time passes time bounds
    /// only when none are given).
    pub fn matches(&self, name: &str) -> bool {
        let Some(n) = BundleName::parse(name) else {
            return false;
        };
        let t = n.time();
        self.cluster.as_deref().is_none_or(|c| n.cluster == c)
            && self.node.as_deref().is_none_or(|w| n.node == w)
            && self.since.is_none_or(|s| t.is_some_and(|t| t >= s))
            && self.until.is_none_or(|u| t.is_some_and(|t| t < u))
    }
}

/// One cluster's line of `list --summary`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClusterSummary {
    /// The cluster's name.
    pub cluster: String,
    /// Backups listed (every state).
    pub backups: usize,
    /// Of those, with bundle and record both present (not checked further).
    pub whole: usize,
    /// The newest backup with both files, by the time in its name.
    pub newest: Option<String>,
    /// Its age in seconds.
    pub newest_age_seconds: Option<i64>,
    /// Bytes of bundles (originals) the store holds for it.
    pub bytes: u64,
    /// Backups whose keys were written again (the listing shows more than one version).
    pub tampered: usize,
    /// Nodes that took them.
    pub nodes: usize,
}

/// The fleet view: one line per cluster from listings alone.
pub fn summarize(listings: &[Listing], now: OffsetDateTime) -> Vec<ClusterSummary> {
    let mut by: BTreeMap<String, (ClusterSummary, std::collections::BTreeSet<String>)> =
        BTreeMap::new();
    for l in listings {
        let Some(n) = BundleName::parse(&l.name) else {
            continue;
        };
        let (s, nodes) = by.entry(n.cluster.clone()).or_insert_with(|| {
            (
                ClusterSummary {
                    cluster: n.cluster.clone(),
                    backups: 0,
                    whole: 0,
                    newest: None,
                    newest_age_seconds: None,
                    bytes: 0,
                    tampered: 0,
                    nodes: 0,
                },
                Default::default(),
            )
        });
        nodes.insert(n.node.clone());
        s.backups += 1;
        s.bytes += l.size.unwrap_or(0);
        s.tampered += usize::from(!l.tampered.is_empty());
        let whole = matches!(
            l.state,
            BackupState::Unchecked | BackupState::Complete | BackupState::Tampered
        );
        if whole {
            s.whole += 1;
            let newer = match (&s.newest, n.time()) {
                (None, _) => true,
                (Some(old), Some(t)) => BundleName::parse(old)
                    .and_then(|o| o.time())
                    .is_none_or(|o| t > o),
                (Some(_), None) => false,
            };
            if newer {
                s.newest = Some(l.name.clone());
                s.newest_age_seconds = n.time().map(|t| (now - t).whole_seconds());
            }
        }
    }
    by.into_values()
        .map(|(mut s, nodes)| {
            s.nodes = nodes.len();
            s
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(name: &str, state: BackupState, size: u64) -> Listing {
        Listing {
            name: name.into(),
            store: "s".into(),
            size: Some(size),
            state,
            record: None,
            pending: vec![],
            tampered: vec![],
            record_error: None,
            version_id: None,
            record_version: None,
        }
    }

    #[test]
    fn times_and_ages() {
        let t = parse_when("2026-11-30T00:00:00Z").unwrap();
        assert_eq!(t.unix_timestamp(), 1_795_996_800);
        let age = OffsetDateTime::now_utc() - parse_when("36h").unwrap();
        assert!((age.whole_minutes() - 36 * 60).abs() <= 1);
        for bad in ["yesterday", "7y", "h", ""] {
            assert!(parse_when(bad).unwrap_err().contains("RFC 3339"), "{bad}");
        }
    }

    #[test]
    fn queries_read_names_only() {
        let q = Query {
            cluster: Some("prod".into()),
            since: parse_when("2026-11-22T00:00:00Z").ok(),
            until: parse_when("2026-11-23T00:00:00Z").ok(),
            ..Default::default()
        };
        assert!(q.matches("prod/m1/20261122T221005Z-rev7.cpb"));
        assert!(
            !q.matches("prod/m1/20261123T000000Z-rev7.cpb"),
            "until is exclusive"
        );
        assert!(!q.matches("prod/m1/20261121T235959Z-rev7.cpb"));
        assert!(!q.matches("staging/m1/20261122T221005Z-rev7.cpb"));
        assert!(!q.matches("prod/m1/odd.cpb"), "no time, time bounds given");
        assert!(Query::default().matches("prod/m1/odd.cpb"));
    }

    #[test]
    fn summary_per_cluster() {
        let mut tampered = listing("a/m2/20261122T230000Z-rev9.cpb", BackupState::Tampered, 5);
        tampered.tampered.push("x".into());
        let all = vec![
            listing("a/m1/20261122T220000Z-rev7.cpb", BackupState::Unchecked, 10),
            tampered,
            listing("a/m1/20261123T000000Z-rev9.cpb", BackupState::Incomplete, 3),
            listing("b/m1/20261122T220000Z-rev1.cpb", BackupState::Unchecked, 1),
        ];
        let now = parse_when("2026-11-23T01:00:00Z").unwrap();
        let s = summarize(&all, now);
        assert_eq!(s.len(), 2);
        assert_eq!(
            (
                s[0].backups,
                s[0].whole,
                s[0].bytes,
                s[0].tampered,
                s[0].nodes
            ),
            (3, 2, 18, 1, 2)
        );
        assert_eq!(
            s[0].newest.as_deref(),
            Some("a/m2/20261122T230000Z-rev9.cpb")
        );
        assert_eq!(s[0].newest_age_seconds, Some(7200));
        assert_eq!(s[1].cluster, "b");
    }
}
