//! The retention policy: which backups `prune` keeps and why. A pure function of the backups'
//! times, so it is tested without any store.
//!
//! Per cluster and node: a backup is kept when any keep rule selects it (`keep_last` newest;
//! the newest in each of the last N hours/days/weeks/months). Backups older than `max_age` go
//! even if a rule selects them. Whatever the rules, the newest complete backup always stays, and
//! with no rule at all nothing is deleted. Incomplete backups (no record) older than a day go.

pub mod apply;

use std::collections::{BTreeMap, HashSet};

use time::{Duration, OffsetDateTime};

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub keep_last: Option<u32>,
    pub keep_hourly: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    pub max_age_days: Option<u32>,
}

impl Policy {
    pub fn is_empty(&self) -> bool {
        self.keep_last.is_none()
            && self.keep_hourly.is_none()
            && self.keep_daily.is_none()
            && self.keep_weekly.is_none()
            && self.keep_monthly.is_none()
            && self.max_age_days.is_none()
    }
}

/// One backup as the policy sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub name: String,
    /// `cluster/node`.
    pub group: String,
    pub time: OffsetDateTime,
    pub complete: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Decision {
    pub name: String,
    pub keep: bool,
    pub reason: String,
}

/// Maps a backup's time to its hour/day/week/month bucket.
type BucketOf = fn(OffsetDateTime) -> String;

/// Decides, per group, which backups stay and why (newest first within each group).
pub fn plan(backups: &[Candidate], policy: &Policy, now: OffsetDateTime) -> Vec<Decision> {
    let mut groups: BTreeMap<&str, Vec<&Candidate>> = BTreeMap::new();
    for b in backups {
        groups.entry(&b.group).or_default().push(b);
    }
    let mut out = Vec::new();
    for (_, mut list) in groups {
        list.sort_by(|a, b| b.time.cmp(&a.time).then(b.name.cmp(&a.name)));
        let reasons = keep_reasons(&list, policy);
        out.extend(
            list.into_iter()
                .map(|b| decide(b, reasons.get(b.name.as_str()), policy, now)),
        );
    }
    out
}

const NEWEST: &str = "newest complete backup";

/// Why each complete backup of one group (newest first) is kept, by the rules that select it.
fn keep_reasons<'a>(list: &[&'a Candidate], policy: &Policy) -> BTreeMap<&'a str, Vec<String>> {
    let complete: Vec<&Candidate> = list.iter().copied().filter(|b| b.complete).collect();
    let mut reasons: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    if let Some(newest) = complete.first() {
        reasons.entry(&newest.name).or_default().push(NEWEST.into());
    }
    if let Some(n) = policy.keep_last {
        for b in complete.iter().take(n as usize) {
            reasons
                .entry(&b.name)
                .or_default()
                .push(format!("keep_last {n}"));
        }
    }
    let buckets: [(Option<u32>, &str, BucketOf); 4] = [
        (policy.keep_hourly, "hourly", |t| {
            format!("{}-{}", t.date(), t.hour())
        }),
        (policy.keep_daily, "daily", |t| t.date().to_string()),
        (policy.keep_weekly, "weekly", |t| {
            format!("{}-W{}", t.year(), t.iso_week())
        }),
        (policy.keep_monthly, "monthly", |t| {
            format!("{}-{}", t.year(), u8::from(t.month()))
        }),
    ];
    for (n, what, bucket) in buckets {
        let Some(n) = n else { continue };
        let mut seen = HashSet::new();
        for b in &complete {
            if seen.len() >= n as usize {
                break;
            }
            if seen.insert(bucket(b.time)) {
                reasons
                    .entry(&b.name)
                    .or_default()
                    .push(format!("keep_{what} {n}"));
            }
        }
    }
    reasons
}

/// One backup's fate: incomplete ones go after a day, the newest complete one always stays,
/// then max age, then the keep rules.
fn decide(
    b: &Candidate,
    why: Option<&Vec<String>>,
    policy: &Policy,
    now: OffsetDateTime,
) -> Decision {
    let age = now - b.time;
    let too_old = policy
        .max_age_days
        .is_some_and(|d| age > Duration::days(i64::from(d)));
    let newest = why.is_some_and(|r| r.iter().any(|x| x == NEWEST));
    let keep_rules = policy.keep_last.is_some()
        || policy.keep_hourly.is_some()
        || policy.keep_daily.is_some()
        || policy.keep_weekly.is_some()
        || policy.keep_monthly.is_some();
    let (keep, reason) = if !b.complete {
        if age > Duration::days(1) {
            (false, "incomplete for over a day".to_owned())
        } else {
            (true, "incomplete, may still be in progress".to_owned())
        }
    } else if newest {
        (true, why.map(|r| r.join(", ")).unwrap_or_default())
    } else if too_old {
        let days = policy.max_age_days.unwrap_or(0);
        (false, format!("older than max_age_days {days}"))
    } else if let Some(r) = why {
        (true, r.join(", "))
    } else if policy.is_empty() {
        (true, "no retention rule configured".to_owned())
    } else if !keep_rules {
        (true, "younger than max_age_days".to_owned())
    } else {
        (false, "selected by no keep rule".to_owned())
    };
    Decision {
        name: b.name.clone(),
        keep,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn c(name: &str, t: OffsetDateTime, complete: bool) -> Candidate {
        Candidate {
            name: name.into(),
            group: "c/n".into(),
            time: t,
            complete,
        }
    }

    fn kept(d: &[Decision]) -> Vec<&str> {
        d.iter()
            .filter(|d| d.keep)
            .map(|d| d.name.as_str())
            .collect()
    }

    #[test]
    fn no_rules_delete_nothing_but_old_incomplete() {
        let now = datetime!(2026-11-22 12:00 UTC);
        let b = [
            c("a", now - Duration::days(10), true),
            c("b", now - Duration::days(3), false),
            c("c", now - Duration::hours(1), false),
        ];
        let d = plan(&b, &Policy::default(), now);
        assert_eq!(kept(&d), vec!["c", "a"]);
    }

    #[test]
    fn keep_last_and_daily() {
        let now = datetime!(2026-11-22 12:00 UTC);
        let b: Vec<Candidate> = (0..10)
            .map(|i| c(&format!("h{i}"), now - Duration::hours(6 * i), true))
            .collect();
        let d = plan(
            &b,
            &Policy {
                keep_last: Some(2),
                ..Default::default()
            },
            now,
        );
        assert_eq!(kept(&d), vec!["h0", "h1"]);
        let d = plan(
            &b,
            &Policy {
                keep_daily: Some(2),
                ..Default::default()
            },
            now,
        );
        // the newest of the 22nd (h0, 12:00) and of the 21st (h3, 18:00)
        assert_eq!(kept(&d), vec!["h0", "h3"]);
    }

    #[test]
    fn the_newest_complete_backup_survives_max_age() {
        let now = datetime!(2026-11-22 12:00 UTC);
        let b = [
            c("old", now - Duration::days(40), true),
            c("older", now - Duration::days(50), true),
        ];
        let d = plan(
            &b,
            &Policy {
                max_age_days: Some(30),
                ..Default::default()
            },
            now,
        );
        assert_eq!(kept(&d), vec!["old"]);
        assert!(d[0].reason.contains("newest"));
    }

    #[test]
    fn groups_are_independent() {
        let now = datetime!(2026-11-22 12:00 UTC);
        let mut b = vec![
            c("a1", now - Duration::hours(2), true),
            c("a2", now - Duration::hours(1), true),
        ];
        b.push(Candidate {
            name: "b1".into(),
            group: "c/other".into(),
            time: now - Duration::hours(5),
            complete: true,
        });
        let d = plan(
            &b,
            &Policy {
                keep_last: Some(1),
                ..Default::default()
            },
            now,
        );
        let mut k = kept(&d);
        k.sort();
        assert_eq!(k, vec!["a2", "b1"]);
    }
}
