//! The node's checks: platform and static pod resources, the etcd member (reachable with the
//! discovered certificates, healthy, its database against its quota), certificate expiry, free
//! space for a restore, the restore tool, and whether backups are scheduled.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Check, Status, certs::CertInfo, days_until, rfc3339};
use crate::backup::BackupJob;
use crate::host::{Platform, discover, etcd_manifest, static_pods};
use crate::output::human_size;
use crate::restore::tools::ToolKind;

/// etcd's default backend quota (`--quota-backend-bytes` unset).
const DEFAULT_QUOTA: u64 = 2 << 30;

pub(super) fn platform(job: &BackupJob, checks: &mut Vec<Check>) -> Platform {
    let p = Platform::detect(&job.host);
    checks.push(match p {
        Platform::Unknown => Check::bad(
            Status::Fail,
            "platform",
            format!(
                "neither OpenShift nor kubeadm files under {}",
                job.host.root().display()
            ),
            "run on a control-plane node, or pass --host-root where its filesystem is mounted (/host under `oc debug node/…`)",
        ),
        p => Check::ok("platform", p.as_str()),
    });
    p
}

/// Checks the static pod resources a backup takes; returns them (for the certificate scan).
pub(super) fn static_pods(
    job: &BackupJob,
    platform: Platform,
    checks: &mut Vec<Check>,
) -> Vec<PathBuf> {
    match static_pods::plan(&job.host, job.mode, platform, &job.extra) {
        Ok(plan) if plan.sources.is_empty() => {
            checks.push(Check::bad(
                Status::Warn,
                "static pod resources",
                "none in scope: backups hold etcd only, and a restore cannot put certificates or manifests back",
                "unless this is intended, set static_pods = \"auto\" (the default)",
            ));
            Vec::new()
        }
        Ok(plan) => {
            checks.push(Check::ok(
                "static pod resources",
                format!(
                    "{} source(s) found ({} layout)",
                    plan.sources.len(),
                    plan.layout.as_str()
                ),
            ));
            plan.sources.into_iter().map(|s| s.path).collect()
        }
        Err(e) => {
            checks.push(Check::bad(
                Status::Fail,
                "static pod resources",
                format!("{e:#}"),
                "check --host-root and static_pods in the config",
            ));
            Vec::new()
        }
    }
}

/// What the etcd check learnt.
pub(super) struct EtcdFacts {
    pub cluster_id: String,
    pub db_size: i64,
}

/// The etcd member: reachable with the discovered certificates, no alarm, database below quota.
pub(super) fn etcd(
    job: &BackupJob,
    platform: Platform,
    checks: &mut Vec<Check>,
) -> Option<EtcdFacts> {
    let access = match discover::etcd_access(&job.host, platform, &job.etcd, job.node.as_deref()) {
        Ok(a) => a,
        Err(e) => {
            checks.push(Check::bad(
                Status::Fail,
                "etcd",
                format!("{e:#}"),
                "pass --etcd-endpoint (and --etcd-cacert/--etcd-cert/--etcd-key), or --host-root",
            ));
            return None;
        }
    };
    let timeout = job.etcd.connect_timeout;
    let answer = crate::store::bridge::block(async {
        let (mut client, status) = crate::etcd::connect(&access, timeout).await?;
        let alarms = tokio::time::timeout(
            timeout,
            client.alarm(
                etcd_client::AlarmAction::Get,
                etcd_client::AlarmType::None,
                None,
            ),
        )
        .await
        .map_err(|_| {
            anyhow::anyhow!("etcd did not list its alarms within {}s", timeout.as_secs())
        })??;
        let alarms: Vec<String> = alarms
            .alarms()
            .iter()
            .map(|a| format!("{:?}", a.alarm()))
            .collect();
        anyhow::Ok((status, alarms))
    });
    let (status, alarms) = match answer {
        Ok(v) => v,
        Err(e) => {
            checks.push(Check::bad(
                Status::Fail,
                "etcd",
                format!("{e:#}"),
                "start etcd, or fix the endpoint and certificates (--etcd-endpoint, --etcd-cacert, --etcd-cert, --etcd-key)",
            ));
            return None;
        }
    };
    let facts = EtcdFacts {
        cluster_id: status.cluster_id.clone(),
        db_size: status.db_size,
    };
    let detail = format!(
        "{} answers: etcd {}, member {}, revision {}",
        status.endpoint, status.version, status.member_id, status.revision
    );
    checks.push(if alarms.is_empty() {
        Check::ok("etcd", detail)
    } else {
        Check::bad(
            Status::Fail,
            "etcd",
            format!("{detail}; alarms raised: {}", alarms.join(", ")),
            "NOSPACE: compact and defragment (`etcdctl compact`, `etcdctl defrag`), then `etcdctl alarm disarm`; CORRUPT: restore this member from a backup",
        )
    });
    let quota = quota(job, platform);
    let used = status.db_size.max(0) as u64;
    let share = used as f64 / quota as f64;
    let detail = format!(
        "{} of {} quota ({:.0} %)",
        human_size(used),
        human_size(quota),
        share * 100.0
    );
    checks.push(if share < 0.8 {
        Check::ok("etcd database size", detail)
    } else {
        Check::bad(
            if share < 0.95 { Status::Warn } else { Status::Fail },
            "etcd database size",
            detail,
            "defragment (`etcdctl defrag`) or raise --quota-backend-bytes: at the quota etcd accepts no writes",
        )
    });
    Some(facts)
}

/// `--quota-backend-bytes` of the etcd static pod, else etcd's default.
fn quota(job: &BackupJob, platform: Platform) -> u64 {
    let manifest = match platform {
        Platform::Openshift => "/etc/kubernetes/manifests/etcd-pod.yaml",
        _ => "/etc/kubernetes/manifests/etcd.yaml",
    };
    std::fs::read_to_string(job.host.path(manifest))
        .ok()
        .and_then(|t| {
            etcd_manifest::command_flags(&t)
                .get("quota-backend-bytes")
                .and_then(|v| v.parse().ok())
        })
        .filter(|q| *q > 0)
        .unwrap_or(DEFAULT_QUOTA)
}

/// Certificates in the backup's scope: expired ones fail, those within `warn_days` warn.
pub(super) fn certificates(certs: &[CertInfo], warn_days: i64) -> Check {
    let name = "certificates";
    let Some(first) = certs.first() else {
        return Check::ok(name, "none in the backup's scope");
    };
    let expired: Vec<&CertInfo> = certs
        .iter()
        .filter(|c| days_until(c.not_after) < 0)
        .collect();
    let soon: Vec<&CertInfo> = certs
        .iter()
        .filter(|c| (0..warn_days).contains(&days_until(c.not_after)))
        .collect();
    let list = |v: &[&CertInfo]| {
        let mut s: Vec<String> = v
            .iter()
            .take(5)
            .map(|c| {
                format!(
                    "{} ({}, {})",
                    c.path.display(),
                    c.subject,
                    rfc3339(c.not_after)
                )
            })
            .collect();
        if v.len() > 5 {
            s.push(format!("{} more", v.len() - 5));
        }
        s.join("; ")
    };
    if !expired.is_empty() {
        return Check::bad(
            Status::Fail,
            name,
            format!(
                "{} of {} expired: {}",
                expired.len(),
                certs.len(),
                list(&expired)
            ),
            "renew them now (kubeadm: `kubeadm certs renew all`, then restart the control-plane pods); a restore puts these files back as they are",
        );
    }
    if !soon.is_empty() {
        return Check::bad(
            Status::Warn,
            name,
            format!(
                "{} of {} expire within {warn_days} days: {}",
                soon.len(),
                certs.len(),
                list(&soon)
            ),
            "renew them before they expire (kubeadm: `kubeadm certs renew all`); backups taken before the renewal restore the old ones",
        );
    }
    Check::ok(
        name,
        format!(
            "{} valid; the first to expire is {} on {} ({} days)",
            certs.len(),
            first.path.display(),
            rfc3339(first.not_after),
            days_until(first.not_after)
        ),
    )
}

/// Room for a restore in the state directory: the decrypted bundle is staged there and the
/// restored member needs as much again.
pub(super) fn free_space(state_dir: &Path, db_size: Option<i64>) -> Check {
    let name = "free space";
    let mut dir = state_dir;
    while !dir.exists() {
        match dir.parent() {
            Some(p) => dir = p,
            None => break,
        }
    }
    let free = match rustix::fs::statvfs(dir) {
        Ok(s) => s.f_bavail.saturating_mul(s.f_frsize),
        Err(e) => {
            return Check::bad(
                Status::Warn,
                name,
                format!("cannot read the free space of {}: {e}", dir.display()),
                "check the state directory (--state-dir)",
            );
        }
    };
    let Some(db) = db_size else {
        return Check::bad(
            Status::Warn,
            name,
            format!(
                "{} free in {}; etcd's size is unknown",
                human_size(free),
                dir.display()
            ),
            "fix the etcd check first",
        );
    };
    let need = (db.max(0) as u64).saturating_mul(2);
    let detail = format!(
        "{} free in {}, a restore needs about {} (twice the database)",
        human_size(free),
        dir.display(),
        human_size(need)
    );
    if free >= need {
        Check::ok(name, detail)
    } else {
        Check::bad(
            Status::Fail,
            name,
            detail,
            "free space there, or point state_dir at a larger filesystem",
        )
    }
}

/// The snapshot-restore tool a restore would use.
pub(super) fn restore_tool(job: &BackupJob, platform: Platform) -> Check {
    let name = "restore tool";
    if platform == Platform::Kubeadm
        && let Err(e) = crate::restore::platform::kubeadm::kubeadm_etcd(&job.host)
    {
        return Check::bad(
            Status::Fail,
            name,
            format!("a restore cannot plan this member: {e:#}"),
            "keep etcd's static pod manifest as kubeadm writes it (one `- --flag=value` per line)",
        );
    }
    match crate::restore::whole::restore_tool(platform, &job.host, None) {
        Ok(None) => Check::ok(
            name,
            "none needed: this platform's restore runs etcd's own image",
        ),
        Ok(Some(t)) => {
            let how = match (&t.image, t.kind, t.bump_revision) {
                (Some(img), _, _) => format!(
                    "none on the node: the restore runs {} from etcd's image {img} as a static pod",
                    t.path.display()
                ),
                (None, ToolKind::Etcdutl, true) => {
                    format!(
                        "{} {} (bumps revisions itself)",
                        t.path.display(),
                        t.version
                    )
                }
                (None, _, _) => format!(
                    "{} {} (cannot bump revisions: cpbackup does it on the restored database)",
                    t.path.display(),
                    t.version
                ),
            };
            Check::ok(name, how)
        }
        Err(e) => Check::bad(
            Status::Fail,
            name,
            format!("{e:#}"),
            "install etcdutl (from the etcd release matching the cluster) into /usr/local/bin, or pass --etcdutl to restore",
        ),
    }
}

/// Whether something takes backups on this node: the systemd timer or the daemon.
pub(super) fn schedule(job: &BackupJob) -> Check {
    let name = "schedule";
    let units = [
        "/etc/systemd/system/timers.target.wants/cpbackup-backup.timer",
        "/etc/systemd/system/multi-user.target.wants/cpbackup.service",
    ];
    let enabled: Vec<&str> = units
        .iter()
        .copied()
        .filter(|u| std::fs::symlink_metadata(job.host.path(u)).is_ok())
        .collect();
    if enabled.is_empty() {
        return Check::bad(
            Status::Warn,
            name,
            "neither cpbackup-backup.timer nor cpbackup.service is enabled on this node",
            "`systemctl enable --now cpbackup-backup.timer` (or cpbackup.service for the daemon); a DaemonSet from manifests/ is not visible from here",
        );
    }
    let names: Vec<&str> = enabled
        .iter()
        .filter_map(|u| Path::new(u).file_name()?.to_str())
        .collect();
    Check::ok(name, format!("{} enabled", names.join(" and ")))
}

/// A duration for people: `3h`, `2d`.
pub(super) fn age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..120 => format!("{s}s"),
        120..7_200 => format!("{}m", s / 60),
        7_200..172_800 => format!("{}h", s / 3_600),
        _ => format!("{}d", s / 86_400),
    }
}
