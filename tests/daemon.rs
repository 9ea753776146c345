//! `cpbackup daemon` with real processes: a 3-member etcd cluster on loopback and several
//! daemons sharing one store; metrics scraped over HTTP and parsed as Prometheus text; signals
//! sent by PID; S3 on moto.

use cpbackup_testkit as support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::*;

/// Every record (`*.cpb.json`) under a local store, parsed.
fn records(store: &Path) -> Vec<serde_json::Value> {
    files_under(store)
        .into_iter()
        .filter(|f| f.ends_with(".cpb.json"))
        .map(|f| serde_json::from_slice(&fs::read(store.join(&f)).unwrap()).unwrap())
        .collect()
}

/// slot → nodes that backed it up.
fn by_slot(store: &Path) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in records(store) {
        let slot = r["slot"].as_str().expect("daemon backups name their slot");
        m.entry(slot.to_owned())
            .or_default()
            .push(r["node"].as_str().unwrap().to_owned());
    }
    m
}

fn wait_for(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50)); // condition poll
    }
}

fn node_config(
    dir: &Path,
    node: &str,
    endpoint: &str,
    recipient: &str,
    store: &Path,
    schedule: &str,
) -> String {
    format!(
        r#"recipients = ["{recipient}"]
static_pods = "none"
node_name = "{node}"
cluster_name = "prod"
state_dir = "{state}"
[etcd]
endpoint = "{endpoint}"
connect_timeout = 2
[[store]]
url = "{store}"
[schedule]
cron = "{schedule}"
election_ttl_seconds = 2
retry_backoff_seconds = 1
"#,
        state = dir.join(format!("state-{node}")).display(),
        store = store.display(),
    )
}

fn stop(mut d: Daemon) {
    d.signal(Signal::SIGTERM);
    let status = d.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{}", d.log_text());
}

#[test]
fn one_per_cluster_takes_each_slot_once_and_survives_the_leader_dying() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let cluster = EtcdCluster::start(Version::V35, dir, 3);
    let (_, r) = keygen(dir, "k");
    let store = dir.join("store");
    let mut daemons: Vec<Option<Daemon>> = cluster
        .members
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let node = format!("master-{i}");
            let cfg = node_config(dir, &node, &m.endpoint, &r, &store, "*/2 * * * * *")
                + "mode = \"one-per-cluster\"\n";
            Some(Daemon::start(dir, &node, &cfg, &[]))
        })
        .collect();
    wait_for(60, "three slots backed up", || by_slot(&store).len() >= 3);

    // Kill (SIGKILL, no clean-up) the node that took the latest slot, once it has finished it.
    let (_, nodes) = by_slot(&store).into_iter().next_back().unwrap();
    let leader: usize = nodes[0].trim_start_matches("master-").parse().unwrap();
    let d = daemons[leader].as_ref().unwrap();
    d.wait_until(20, "the leader to close its slot", |d| {
        let taken = records(&store)
            .iter()
            .filter(|r| r["node"] == nodes[0].as_str())
            .count() as f64;
        d.metric("cpbackup_schedule_slots_total", &[("outcome", "backed_up")]) == Some(taken)
    });
    let killed_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    daemons[leader].take().unwrap(); // dropping kills by PID
    wait_for(60, "another node to take a later slot", || {
        by_slot(&store)
            .into_iter()
            .any(|(slot, nodes)| slot > killed_at && nodes[0] != format!("master-{leader}"))
    });
    let survivor = daemons.iter().flatten().next().unwrap();
    assert!(
        survivor
            .metric(
                "cpbackup_schedule_slots_total",
                &[("outcome", "taken_by_other_node")]
            )
            .unwrap()
            >= 1.0,
        "followers count the slots another node took"
    );
    assert_eq!(survivor.metric("cpbackup_one_per_cluster", &[]), Some(1.0));
    for d in daemons.into_iter().flatten() {
        stop(d);
    }

    let slots = by_slot(&store);
    for (slot, nodes) in &slots {
        assert_eq!(nodes.len(), 1, "slot {slot} was backed up by {nodes:?}");
    }
    let takers: BTreeSet<&String> = slots.values().flatten().collect();
    assert!(
        takers.len() >= 2,
        "the slot moved to another node: {takers:?}"
    );
}

#[test]
fn per_node_mode_backs_up_every_member_each_slot() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let cluster = EtcdCluster::start(Version::V34, dir, 3);
    let (_, r) = keygen(dir, "k");
    let store = dir.join("store");
    let daemons: Vec<Daemon> = cluster
        .members
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let node = format!("master-{i}");
            let cfg = node_config(dir, &node, &m.endpoint, &r, &store, "*/2 * * * * *");
            Daemon::start(dir, &node, &cfg, &[])
        })
        .collect();
    wait_for(60, "two slots backed up by all three nodes", || {
        by_slot(&store).values().filter(|n| n.len() == 3).count() >= 2
    });
    for d in daemons {
        stop(d);
    }
    for (slot, nodes) in by_slot(&store) {
        let set: BTreeSet<_> = nodes.iter().collect();
        assert_eq!(
            set.len(),
            nodes.len(),
            "slot {slot}: a node twice: {nodes:?}"
        );
    }
    // Each node's backup holds its own member's identity.
    let members: BTreeSet<String> = records(&store)
        .iter()
        .map(|r| r["etcd_member_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(members.len(), 3);
}

#[test]
fn metrics_move_with_each_backup_and_health_follows_failures() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let etcd = Etcd::start(Version::V35, dir, "127.0.0.1", free_port(), None);
    etcd.put("/registry/namespaces/a", "{}");
    let (_, r) = keygen(dir, "k");
    let store = dir.join("store");
    // Another cluster's backups in the same store: the daemon's retention leaves them alone.
    for i in 0..3 {
        etcd.put(&format!("/registry/other/{i}"), "{}");
        let mut c = cpbackup(dir);
        etcd_backup(&mut c, &etcd.endpoint, &r);
        c.args(["--cluster-name", "other", "--node-name", "n1", "--store"])
            .arg(&store);
        assert!(run(c).status.success());
    }
    let cfg = node_config(dir, "n1", &etcd.endpoint, &r, &store, "* * * * * *")
        + "[retention]\nkeep_last = 2\n";
    let d = Daemon::start(dir, "good", &cfg, &[]);
    let ok = |d: &Daemon| d.metric("cpbackup_backups_succeeded_total", &[]).unwrap();
    d.wait_until(30, "a first backup", |d| ok(d) >= 1.0);
    let first = d.scrape();
    let last1 = metric_value(&first, "cpbackup_last_success_timestamp_seconds", &[]).unwrap();
    etcd.put("/registry/namespaces/b", "{}");
    d.wait_until(30, "a later backup", |d| ok(d) >= ok_at(&first) + 2.0);
    let s = d.scrape();
    let last2 = metric_value(&s, "cpbackup_last_success_timestamp_seconds", &[]).unwrap();
    assert!(last2 > last1, "last success moved: {last1} → {last2}");
    // After each slot the newest backup of this cluster is checked without the key: the
    // metric is that backup's creation time, never another cluster's.
    let unix = |r: &serde_json::Value| {
        time::OffsetDateTime::parse(
            r["created"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
        .unix_timestamp() as f64
    };
    let other_newest = records(&store)
        .iter()
        .filter(|r| r["cluster"] == "other")
        .map(unix)
        .fold(0.0, f64::max);
    d.wait_until(30, "a verified backup of this cluster", |d| {
        d.metric("cpbackup_last_verified_timestamp_seconds", &[])
            .is_some_and(|v| v > other_newest)
    });
    assert_eq!(d.metric("cpbackup_verify_failures_total", &[]), Some(0.0));
    assert_eq!(d.metric("cpbackup_tampered_backups", &[]), Some(0.0));
    assert_eq!(
        metric_value(&s, "cpbackup_etcd_revision", &[]),
        Some(etcd.revision() as f64)
    );
    assert!(metric_value(&s, "cpbackup_bundle_size_bytes", &[]).unwrap() > 0.0);
    assert!(metric_value(&s, "cpbackup_snapshot_size_bytes", &[]).unwrap() > 0.0);
    assert_eq!(
        metric_value(&s, "cpbackup_last_attempt_success", &[]),
        Some(1.0)
    );
    assert!(
        metric_value(
            &s,
            "cpbackup_stage_duration_seconds_count",
            &[("stage", "snapshot")]
        )
        .unwrap()
            >= 3.0
    );
    assert!(
        metric_value(
            &s,
            "cpbackup_stage_duration_seconds_count",
            &[("stage", "prune")]
        )
        .unwrap()
            >= 1.0
    );
    d.wait_until(30, "retention to delete", |d| {
        d.metric("cpbackup_pruned_backups_total", &[]).unwrap() >= 1.0
    });
    let ours = |c: &str| records(&store).iter().filter(|r| r["cluster"] == c).count();
    assert!(ours("prod") <= 3, "keep_last = 2 (+ one in flight)");
    assert_eq!(
        ours("other"),
        3,
        "another cluster's backups are not ours to prune"
    );
    assert_eq!(d.metric("cpbackup_healthy", &[]), Some(1.0));
    assert_eq!(http_get(&d.metrics, "/healthz").unwrap().0, 200);
    stop(d);

    // A daemon whose etcd is gone: failures by reason, last attempt failed, health turns 503
    // once the last success is older than twice the 1 s interval.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let cfg = node_config(dir, "n2", &dead, &r, &store, "* * * * * *") + "retries = 0\n";
    let d = Daemon::start(dir, "bad", &cfg, &[]);
    d.wait_until(30, "an etcd failure", |d| {
        d.metric("cpbackup_backup_failures_total", &[("reason", "etcd")])
            .unwrap()
            >= 1.0
    });
    assert_eq!(d.metric("cpbackup_last_attempt_success", &[]), Some(0.0));
    assert_eq!(
        d.metric("cpbackup_backup_failures_total", &[("reason", "store")]),
        Some(0.0),
        "every reason is exported, even at zero"
    );
    d.wait_until(30, "health to turn stale", |d| {
        http_get(&d.metrics, "/healthz").unwrap().0 == 503
    });
    let (_, body) = http_get(&d.metrics, "/healthz").unwrap();
    assert!(body.contains("no successful backup yet"), "{body}");
    let log = d.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("\"backup failed\"") && l.contains("\"reason\":\"etcd\"")),
        "one JSON line per failed backup with its reason: {log}"
    );
    assert!(!log.contains("AGE-SECRET-KEY"), "no secret in the log");
    stop(d);
}

fn ok_at(s: &prometheus_parse::Scrape) -> f64 {
    metric_value(s, "cpbackup_backups_succeeded_total", &[]).unwrap()
}

#[test]
fn sighup_reloads_the_config_and_a_bad_one_keeps_the_old() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let etcd = Etcd::start(Version::V35, dir, "127.0.0.1", free_port(), None);
    let (_, r) = keygen(dir, "k");
    let store = dir.join("store");
    let yearly = node_config(dir, "n1", &etcd.endpoint, &r, &store, "0 0 1 1 *");
    let d = Daemon::start(dir, "hup", &yearly, &[]);
    assert!(d.metric("cpbackup_schedule_interval_seconds", &[]).unwrap() > 300.0 * 86_400.0);
    let cfg_path = dir.join("hup.toml");
    fs::write(
        &cfg_path,
        node_config(dir, "n1", &etcd.endpoint, &r, &store, "* * * * * *"),
    )
    .unwrap();
    d.signal(Signal::SIGHUP);
    d.wait_until(30, "a backup on the reloaded schedule", |d| {
        d.metric("cpbackup_backups_succeeded_total", &[]).unwrap() >= 1.0
    });
    assert_eq!(
        d.metric("cpbackup_schedule_interval_seconds", &[]),
        Some(1.0)
    );

    fs::write(&cfg_path, "this is not toml = = =\n").unwrap();
    d.signal(Signal::SIGHUP);
    d.wait_until(10, "the reload error", |d| {
        d.log_text().contains("keeping the old one")
    });
    let before = d.metric("cpbackup_backups_succeeded_total", &[]).unwrap();
    d.wait_until(30, "backups to go on", |d| {
        d.metric("cpbackup_backups_succeeded_total", &[]).unwrap() > before
    });
    stop(d);
}

#[test]
fn a_slot_that_overruns_makes_later_slots_missed_and_sigterm_publishes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let store = dir.join("store");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let f = frozen(
        dir,
        cpbackup(dir),
        &[
            "daemon",
            "--schedule",
            "* * * * * *",
            "--metrics-address",
            &addr,
        ],
        &[store.to_str().unwrap()],
    );
    // The first backup hangs in the frozen stream; the next ticks find it running.
    wait_for(30, "a missed slot", || {
        http_get(&addr, "/metrics").is_some_and(|(_, body)| {
            let s =
                prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).unwrap();
            metric_value(
                &s,
                "cpbackup_schedule_slots_total",
                &[("outcome", "missed")],
            )
            .unwrap_or(0.0)
                >= 2.0
        })
    });
    f.sigterm();
    let o = f.child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        files_under(&store)
            .iter()
            .all(|f| !f.ends_with(".cpb") && !f.ends_with(".json")),
        "nothing published: {:?}",
        files_under(&store)
    );
    let state: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("state/metrics.json")).unwrap()).unwrap();
    assert_eq!(state["failures"]["cancelled"], 1, "{state}");
}

#[test]
fn sigterm_mid_upload_to_s3_leaves_no_object_and_no_upload() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let moto = Moto::start(dir);
    moto.create_bucket("locked", true);
    let addr = format!("127.0.0.1:{}", free_port());
    let f = frozen(
        dir,
        moto.cpbackup(dir),
        &[
            "daemon",
            "--schedule",
            "* * * * * *",
            "--metrics-address",
            &addr,
        ],
        &["s3://locked/prod"],
    );
    let count = |what: &str| -> usize {
        moto.py(&format!(
            "r = s3.{what}(Bucket='locked'); print(len(r.get('Versions', r.get('Uploads', []))))"
        ))
        .trim()
        .parse()
        .unwrap()
    };
    assert_eq!(count("list_multipart_uploads"), 1, "an upload is in flight");
    f.sigterm();
    let o = f.child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(count("list_object_versions"), 0, "no object");
    assert_eq!(count("list_multipart_uploads"), 0, "no dangling upload");
}

#[test]
fn timer_mode_writes_a_textfile_whose_counters_carry_over() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let etcd = Etcd::start(Version::V35, dir, "127.0.0.1", free_port(), None);
    let (_, r) = keygen(dir, "k");
    let prom = dir.join("textfile/cpbackup.prom");
    fs::create_dir_all(prom.parent().unwrap()).unwrap();
    let backup = |endpoint: &str| {
        let mut c = cpbackup(dir);
        etcd_backup(&mut c, endpoint, &r);
        c.args(["--store", dir.join("store").to_str().unwrap()])
            .args(["--etcd-connect-timeout", "1", "--metrics-textfile"])
            .arg(&prom);
        run(c)
    };
    let parse = || {
        let text = fs::read_to_string(&prom).unwrap();
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap()
    };
    assert!(backup(&etcd.endpoint).status.success());
    let first = metric_value(&parse(), "cpbackup_last_success_timestamp_seconds", &[]).unwrap();
    etcd.put("/registry/namespaces/next", "{}"); // a new revision, so a new bundle name
    assert!(backup(&etcd.endpoint).status.success());
    let dead = format!("http://127.0.0.1:{}", free_port());
    assert_eq!(backup(&dead).status.code(), Some(1));
    let s = parse();
    assert_eq!(
        metric_value(&s, "cpbackup_backups_succeeded_total", &[]),
        Some(2.0)
    );
    assert_eq!(
        metric_value(&s, "cpbackup_backup_failures_total", &[("reason", "etcd")]),
        Some(1.0)
    );
    assert_eq!(
        metric_value(&s, "cpbackup_last_attempt_success", &[]),
        Some(0.0)
    );
    let last = metric_value(&s, "cpbackup_last_success_timestamp_seconds", &[]).unwrap();
    assert!(last >= first, "the last success survives a failed run");
    assert!(
        metric_value(
            &s,
            "cpbackup_stage_duration_seconds_count",
            &[("stage", "snapshot")]
        ) == Some(2.0)
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&prom).unwrap().permissions().mode() & 0o777,
        0o644
    );
    assert_eq!(
        fs::read_dir(prom.parent().unwrap()).unwrap().count(),
        1,
        "no temp file left for node_exporter to read"
    );
}
