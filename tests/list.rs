//! `cpbackup list` and `--latest` at fleet scale: on a real S3 server with Object Lock (moto),
//! behind a proxy that logs every request, listing costs one ListObjectVersions pass plus only
//! the per-backup reads a command needs; filters, `--fast`, `--summary` and `--latest` say the
//! same as a full listing would.

use cpbackup_testkit as support;

use serde_json::Value;
use support::*;

/// Plants `per_node` hourly backups for each of clusters a, b and nodes m1, m2 (bundle bytes and
/// a record each, both locked), ending an hour ago (m2's a minute before m1's).
fn plant(moto: &Moto, per_node: usize) {
    moto.py(&format!(
        r#"
now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
until = now + datetime.timedelta(days=2)
for c in ['a', 'b']:
    for n in ['m1', 'm2']:
        for i in range({per_node}):
            t = now - datetime.timedelta(hours={per_node} - i, minutes=int(n == 'm2'))
            name = '%s/%s/%s-rev%d.cpb' % (c, n, t.strftime('%Y%m%dT%H%M%SZ'), i + 1)
            body = b'x' * (100 + i)
            rec = dict(format_version=1, name=name, created=t.strftime('%Y-%m-%dT%H:%M:%SZ'),
                cluster=c, node=n, etcd_revision=i + 1, etcd_version='3.5.1', etcd_member_id='1',
                etcd_cluster_id='2', snapshot_size=1, bundle_size=len(body), bundle_sha256='00',
                recipients=[], forced=False, tool_version='0')
            for key, data in [('fleet/' + name, body), ('fleet/' + name + '.json', json.dumps(rec).encode())]:
                s3.put_object(Bucket='locked', Key=key, Body=data, ObjectLockMode='COMPLIANCE',
                    ObjectLockRetainUntilDate=until)
"#
    ));
}

fn list(
    moto: &Moto,
    proxy: &RequestLog,
    dir: &std::path::Path,
    args: &[&str],
) -> (Value, Vec<String>) {
    proxy.take();
    let mut c = moto.cpbackup(dir);
    c.env("CPBACKUP_S3_ENDPOINT", format!("http://{}", proxy.addr));
    c.args(["--output", "json", "list", "--store", "s3://locked/fleet"])
        .args(args);
    let o = run(c);
    assert!(o.status.success(), "{}", stderr(&o));
    (serde_json::from_slice(&o.stdout).unwrap(), proxy.take())
}

fn count(requests: &[String], f: impl Fn(&str) -> bool) -> usize {
    requests.iter().filter(|r| f(r)).count()
}

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn listing_costs_one_pass_plus_only_the_reads_each_command_needs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let moto = Moto::start(dir);
    moto.create_bucket("locked", true);
    plant(&moto, 15);
    let proxy = RequestLog::start(moto.endpoint.trim_start_matches("http://"));
    let listing = |r: &str| r.starts_with("GET ") && r.contains("versions");
    let record = |r: &str| r.starts_with("GET ") && r.contains(".json?") && !r.contains("versions");
    let head = |r: &str| r.starts_with("HEAD ");
    // (ListObjectVersions, record GETs, HeadObjects) among the requests
    let kinds = |reqs: &[String]| (count(reqs, listing), count(reqs, record), count(reqs, head));

    // everything: one listing, then a record and a lock state per backup
    let (all, reqs) = list(&moto, &proxy, dir, &[]);
    assert_eq!(all.as_array().unwrap().len(), 60);
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .all(|l| l["state"] == "complete" && l["record"]["lock_mode"] == "COMPLIANCE"),
        "{all:#}"
    );
    assert_eq!(kinds(&reqs), (1, 60, 60), "{reqs:#?}");
    assert_eq!(reqs.len(), 121, "{reqs:#?}");

    // the second time, records (a version never changes) and COMPLIANCE locks (never
    // shortened) come from the cache: the listing alone, and the same answer
    let remembered = files_under(&dir.join("cache"));
    assert!(
        remembered
            .iter()
            .any(|f| f.starts_with("s3/") && f.ends_with(".json")),
        "where --cache-dir (CPBACKUP_CACHE_DIR) says: {remembered:?}"
    );
    let (again, reqs) = list(&moto, &proxy, dir, &[]);
    assert_eq!(reqs.len(), 1, "{reqs:#?}");
    assert_eq!(again, all);
    let (asked, reqs) = list(&moto, &proxy, dir, &["--no-cache"]);
    assert_eq!(kinds(&reqs), (1, 60, 60), "{reqs:#?}");
    assert_eq!(asked, all);

    // --fast: the listing only, every whole backup `unchecked`
    let (fast, reqs) = list(&moto, &proxy, dir, &["--fast"]);
    assert_eq!(reqs.len(), 1, "{reqs:#?}");
    assert_eq!(names(&fast), names(&all));
    assert!(
        fast.as_array()
            .unwrap()
            .iter()
            .all(|l| l["state"] == "unchecked")
    );

    // filters: chosen from the names, then only those read
    let since = all[20]["record"]["created"].as_str().unwrap().to_owned();
    let (some, reqs) = list(
        &moto,
        &proxy,
        dir,
        &[
            "--cluster",
            "a",
            "--node",
            "m2",
            "--since",
            &since,
            "--limit",
            "3",
            "--reverse",
            "--no-cache",
        ],
    );
    let want: Vec<String> = names(&all)
        .into_iter()
        .filter(|n| n.starts_with("a/m2/"))
        .rev()
        .take(3)
        .collect();
    assert_eq!(names(&some), want);
    assert_eq!(kinds(&reqs), (1, 3, 3));
    let (none, _) = list(&moto, &proxy, dir, &["--until", "2000-01-01T00:00:00Z"]);
    assert_eq!(none.as_array().unwrap().len(), 0);

    // the fleet view: one line per cluster, from the listing alone
    let (summary, reqs) = list(&moto, &proxy, dir, &["--summary"]);
    assert_eq!(reqs.len(), 1, "{reqs:#?}");
    let newest_a = names(&all)
        .into_iter()
        .filter(|n| n.starts_with("a/"))
        .max_by_key(|n| n.split('/').nth(2).unwrap().to_owned());
    assert_eq!(summary[0]["cluster"], "a");
    assert_eq!(summary[0]["backups"], 30);
    assert_eq!(summary[0]["nodes"], 2);
    assert_eq!(summary[0]["newest"].as_str(), newest_a.as_deref());
    assert!(summary[0]["newest_age_seconds"].as_i64().unwrap() >= 3600);
    assert_eq!(summary[1]["cluster"], "b");

    // --latest reads the records of the newest few, not of all 30 of the cluster
    proxy.take();
    let mut c = moto.cpbackup(dir);
    c.env("CPBACKUP_S3_ENDPOINT", format!("http://{}", proxy.addr));
    let (key, _) = keygen(dir, "k");
    c.args([
        "verify",
        "--latest",
        "--cluster",
        "a",
        "--store",
        "s3://locked/fleet",
        "--identity",
    ])
    .arg(&key);
    let o = run(c);
    let reqs = proxy.take();
    let err = stderr(&o);
    let newest = newest_a.unwrap();
    assert!(err.contains(&format!("--latest chose {newest}")), "{err}");
    assert!(count(&reqs, record) <= 8, "{reqs:#?}");

    // prune --dry-run plans from the names and reads lock state (no record) only for what it
    // would delete: the plan shown is the plan run (everything due is still locked); with the
    // locks remembered, the listing alone. The real run then deletes nothing, asks nothing.
    let prune = |extra: &[&str]| {
        proxy.take();
        let mut c = moto.cpbackup(dir);
        c.env("CPBACKUP_S3_ENDPOINT", format!("http://{}", proxy.addr));
        c.args([
            "--output",
            "json",
            "prune",
            "--keep-last",
            "10",
            "--store",
            "s3://locked/fleet",
        ])
        .args(extra);
        let o = run(c);
        assert!(o.status.success(), "{}", stderr(&o));
        let rows: Value = serde_json::from_slice(&o.stdout).unwrap();
        (rows, proxy.take())
    };
    for (extra, want) in [
        (&["--dry-run", "--no-cache"][..], (1, 0, 20)),
        (&["--dry-run"][..], (1, 0, 0)),
        (&[][..], (1, 0, 0)),
    ] {
        let (rows, reqs) = prune(extra);
        let rows = rows.as_array().unwrap();
        let action = |a: &str| rows.iter().filter(|r| r["action"] == a).count();
        assert_eq!(
            (action("keep"), action("locked"), action("delete")),
            (40, 20, 0),
            "{extra:?}: {rows:#?}"
        );
        assert!(rows.iter().filter(|r| r["action"] == "locked").all(|r| {
            r["reason"]
                .as_str()
                .unwrap()
                .contains("Object Lock keeps it until")
        }));
        let deletes = count(&reqs, |r| r.starts_with("DELETE "));
        let uploads = count(&reqs, |r| r.contains("uploads"));
        assert_eq!((kinds(&reqs), deletes), (want, 0), "{extra:?}: {reqs:#?}");
        assert_eq!(reqs.len(), 1 + want.2 + uploads, "{extra:?}: {reqs:#?}");
    }
    let (again, _) = list(&moto, &proxy, dir, &["--no-cache"]);
    assert_eq!(again, all, "prune deleted nothing locked");
}

/// `count` hourly backups of prod/m1 in a local store, ending an hour ago: (file, record).
fn plant_local(store: &std::path::Path, count: i64) -> Vec<(String, Value)> {
    let node = store.join("prod/m1");
    std::fs::create_dir_all(&node).unwrap();
    let start = time::OffsetDateTime::now_utc() - time::Duration::hours(count + 1);
    let fmt = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let mut names = Vec::new();
    for i in 0..count {
        let t = start + time::Duration::hours(i);
        let file = format!("{}-rev{}.cpb", t.format(&fmt).unwrap(), i + 1);
        let name = format!("prod/m1/{file}");
        std::fs::write(node.join(&file), b"bundle").unwrap();
        let created = t
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        let rec = serde_json::json!({"format_version": 1, "name": name, "created": created,
            "cluster": "prod", "node": "m1", "etcd_revision": i + 1, "etcd_version": "3.5.1",
            "etcd_member_id": "1", "etcd_cluster_id": "2", "snapshot_size": 1, "bundle_size": 6,
            "bundle_sha256": "00", "recipients": [], "forced": false, "tool_version": "0"});
        std::fs::write(node.join(format!("{file}.json")), rec.to_string()).unwrap();
        names.push((file, rec));
    }
    names
}

/// A store that does not answer is named, and the others are still listed and chosen from.
#[test]
fn a_dead_store_does_not_hide_the_others() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = dir.join("store");
    let names = plant_local(&store, 3);
    let dead = format!("http://127.0.0.1:{}", free_port());
    let newest = format!("prod/m1/{}", names[2].0);
    let with = |args: &[&str]| {
        let mut c = cpbackup(dir);
        c.env("CPBACKUP_S3_ENDPOINT", &dead)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("CPBACKUP_S3_PATH_STYLE", "true");
        c.args(args).arg("--store").arg(&store);
        c.args(["--store", "s3://gone/prod"]);
        run(c)
    };
    let o = with(&["list"]);
    let err = fails_with(&o, 1, "1 of 2 stores did not answer (s3://gone/prod)");
    assert!(
        err.contains("WARNING: store s3://gone/prod did not answer"),
        "{err}"
    );
    assert!(stdout(&o).contains(&newest), "{}", stdout(&o));
    let o = with(&["verify", "--ciphertext-only", "--latest"]);
    let err = stderr(&o);
    assert!(err.contains("--latest chooses among the others"), "{err}");
    assert!(err.contains(&format!("--latest chose {newest}")), "{err}");
}

/// 30,000 backups in a local store, the newest four broken in four ways: `list` names each with
/// its state, and `--latest` (which reads only the newest few records) picks the backup a full
/// scan ranks first.
#[test]
fn latest_among_thirty_thousand_is_what_a_full_scan_picks_and_broken_records_keep_their_state() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = dir.join("store");
    let node = store.join("prod/m1");
    let names = plant_local(&store, 30_000);
    let newest = |k: usize| &names[names.len() - 1 - k];
    // newest: a record lying about the bundle's size; then an unreadable record; then none;
    // then a record whose time disagrees with its name
    let (f, r) = newest(0);
    let mut lying = r.clone();
    lying["bundle_size"] = 7.into();
    std::fs::write(node.join(format!("{f}.json")), lying.to_string()).unwrap();
    std::fs::write(node.join(format!("{}.json", newest(1).0)), b"{not json").unwrap();
    std::fs::remove_file(node.join(format!("{}.json", newest(2).0))).unwrap();
    let (f, r) = newest(3);
    let mut forged = r.clone();
    forged["created"] = "2000-01-01T00:00:00Z".into();
    std::fs::write(node.join(format!("{f}.json")), forged.to_string()).unwrap();

    let mut c = cpbackup(dir);
    c.args(["--output", "json", "list", "--store"]).arg(&store);
    let o = run(c);
    assert!(o.status.success(), "{}", stderr(&o));
    let all: Value = serde_json::from_slice(&o.stdout).unwrap();
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 30_000, "every backup is listed");
    let state = |k: usize| all[all.len() - 1 - k]["state"].as_str().unwrap().to_owned();
    assert_eq!(
        [state(0), state(1), state(2), state(3), state(4)],
        [
            "size-mismatch",
            "incomplete",
            "incomplete",
            "complete",
            "complete"
        ]
    );
    assert!(
        all[all.len() - 2]["record_error"]
            .as_str()
            .unwrap()
            .contains("not a valid record")
    );
    // what a full scan ranks first: the newest complete backup whose record agrees with its name
    let want = all
        .iter()
        .filter(|l| l["state"] == "complete" && l["record"]["created"] != "2000-01-01T00:00:00Z")
        .max_by_key(|l| l["record"]["created"].as_str().unwrap().to_owned())
        .unwrap()["name"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(want, format!("prod/m1/{}", newest(4).0));

    let mut c = cpbackup(dir);
    c.args(["verify", "--ciphertext-only", "--latest", "--store"])
        .arg(&store);
    let err = stderr(&run(c));
    assert!(err.contains(&format!("--latest chose {want}")), "{err}");
    assert!(err.contains("one of them was forged"), "{err}");
    let read: usize = err
        .split(" record(s) read")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count of records read in {err}"));
    assert!(read <= 16, "--latest read {read} records of 30,000");
}

/// `cpbackup list | head -1`: the reader goes away; cpbackup ends quietly with 0, as grep does.
#[test]
fn a_reader_closing_the_pipe_ends_it_quietly() {
    use std::io::BufRead;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = dir.join("store");
    plant_local(&store, 3000); // a listing far larger than a pipe's buffer
    for args in [&["list"][..], &["--output", "json", "list"][..]] {
        let mut c = cpbackup(dir);
        c.args(args).arg("--store").arg(&store);
        c.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        let mut first = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert!(!first.is_empty());
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(stderr(&o), "", "nothing to say when the reader left");
    }
}

/// What anyone with PutObject can write into an S3 store, listed twice: the second time
/// (records and locks from the cache) every backup keeps the state the first listing gave it.
/// A record that does not parse is never remembered (asked for again), a record that lies is
/// remembered but judged again, and a record key written over after it was cached still reads
/// the original and still shows as tampered.
#[test]
fn crafted_records_keep_their_state_when_read_from_the_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let moto = Moto::start(dir);
    moto.create_bucket("locked", true);
    plant(&moto, 2);
    let crafted = |name: &str, body: &str, record: &str| {
        moto.py(&format!(
            r#"
until = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=2)
for key, data in [('fleet/{name}', b'x' * 100), ('fleet/{name}.json', {record:?}.encode())]:
    s3.put_object(Bucket='locked', Key=key, Body=data, ObjectLockMode='COMPLIANCE',
        ObjectLockRetainUntilDate=until)
"#,
            record = record.replace("BODY", body),
        ))
    };
    let lying = "c/m1/20200101T000000Z-rev1.cpb";
    let broken = "c/m1/20200101T010000Z-rev2.cpb";
    let record = r#"{"format_version": 1, "name": "NAME", "created": "2020-01-01T00:00:00Z", "cluster": "c", "node": "m1", "etcd_revision": 1, "etcd_version": "3.5.1", "etcd_member_id": "1", "etcd_cluster_id": "2", "snapshot_size": 1, "bundle_size": 7, "bundle_sha256": "00", "recipients": [], "forced": false, "tool_version": "0"}"#;
    crafted(lying, "", &record.replace("NAME", lying));
    crafted(broken, "", "{not json");
    let proxy = RequestLog::start(moto.endpoint.trim_start_matches("http://"));
    let record_get = |r: &str| r.starts_with("GET ") && r.contains(".json?");
    let states = |v: &Value| -> Vec<(String, String)> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|l| {
                let s = l["state"].as_str().unwrap().to_owned();
                (l["name"].as_str().unwrap().to_owned(), s)
            })
            .collect()
    };
    let state_of = |v: &Value, name: &str| {
        states(v)
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s)
            .unwrap()
    };

    let (cold, reqs) = list(&moto, &proxy, dir, &[]);
    assert_eq!(count(&reqs, record_get), 10, "{reqs:#?}");
    assert_eq!(state_of(&cold, lying), "size-mismatch");
    assert_eq!(state_of(&cold, broken), "incomplete");
    // the listing pass asks again only for the record that did not parse
    let (warm, reqs) = list(&moto, &proxy, dir, &[]);
    assert_eq!(warm, cold);
    assert_eq!(count(&reqs, record_get), 1, "{reqs:#?}");
    assert!(
        reqs.iter()
            .any(|r| r.contains("20200101T010000Z-rev2.cpb.json")),
        "{reqs:#?}"
    );

    // a record written over after it was cached: the original is still what is read, and the
    // backup shows as tampered whether the record comes from the cache or from the store
    let victim = names(&cold)
        .into_iter()
        .find(|n| n.starts_with("a/m1/"))
        .unwrap();
    moto.py(&format!(
        "s3.put_object(Bucket='locked', Key='fleet/{victim}.json', Body=b'{{\"format_version\": 1}}')"
    ));
    let (warm, _) = list(&moto, &proxy, dir, &[]);
    let (asked, _) = list(&moto, &proxy, dir, &["--no-cache"]);
    assert_eq!(warm, asked);
    assert_eq!(state_of(&warm, &victim), "tampered");
    let l = warm
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == victim.as_str())
        .unwrap();
    assert_eq!(
        l["record"]["name"],
        victim.as_str(),
        "the original record: {l:#}"
    );
}
