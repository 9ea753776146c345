//! The contract every store kind meets, run against a real instance of each (a directory, a
//! moto S3 server with Object Lock): what backup, `list`, the readers and retention rely on.
//! A new kind adds one test here that builds it and calls [`meets_the_contract`].

use std::io::{Read, Write};

use super::{BackupState, BundleName, Deleted, Record, Store};

/// Checks `store`, which must start empty.
pub(crate) fn meets_the_contract(store: &dyn Store) {
    let name = BundleName::parse("c/n/20260101T000000Z-rev7.cpb").unwrap();
    let key = name.key();
    assert!(
        store.list().unwrap().is_empty(),
        "a new store lists nothing"
    );
    store.abort_unfinished("c", "n").unwrap();

    // An upload dropped before its commit leaves no backup behind.
    {
        let mut u = store.create(&name).unwrap();
        u.write_all(b"half a bundle").unwrap();
    }
    assert!(
        store.list().unwrap().iter().all(|l| l.name != key),
        "an uncommitted upload is not listed"
    );

    // Committed: the bundle, then its record, listed complete and read back byte for byte.
    let bundle: Vec<u8> = (0..300_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let record = Record::sample(&key, bundle.len() as u64);
    let mut u = store.create(&name).unwrap();
    u.write_all(&bundle).unwrap();
    u.commit(&record).unwrap();
    let listed = store.list().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let l = &listed[0];
    assert_eq!(
        (l.name.as_str(), l.state),
        (key.as_str(), BackupState::Complete)
    );
    assert_eq!(l.size, Some(bundle.len() as u64));
    assert_eq!(
        l.record.as_ref().map(|r| r.name.as_str()),
        Some(key.as_str())
    );
    for mut reader in [store.open(&key).unwrap(), store.open_listed(l).unwrap()] {
        let mut back = Vec::new();
        reader.read_to_end(&mut back).unwrap();
        assert!(back == bundle, "what is read back is what was written");
    }

    // Never overwritten: a second backup under the same name fails, the first stays whole.
    let again = store.create(&name).and_then(|mut u| {
        u.write_all(b"something else")?;
        u.commit(&record)
    });
    assert!(
        again.is_err(),
        "a second backup of the same name is refused"
    );
    let mut back = Vec::new();
    store.open(&key).unwrap().read_to_end(&mut back).unwrap();
    assert!(back == bundle, "the first backup is intact");

    // Retention: gone, or kept (and still complete) while its lock holds.
    match store.delete(&key).unwrap() {
        Deleted::Gone => assert!(store.list().unwrap().is_empty()),
        Deleted::Locked { until } => {
            assert!(!until.is_empty());
            assert_eq!(store.list().unwrap()[0].state, BackupState::Complete);
        }
    }
    assert!(
        store.open("c/n/../../etc/passwd.cpb").is_err(),
        "names are checked"
    );
}

#[test]
fn a_local_store_meets_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    meets_the_contract(&super::LocalStore::new(dir.path()));
}

#[test]
fn an_s3_store_with_object_lock_meets_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let moto = cpbackup_testkit::Moto::start(dir.path());
    moto.create_bucket("contract", true);
    // SAFETY: each test runs in a process of its own (nextest); nothing else reads the
    // environment while it is set.
    unsafe {
        for (k, v) in [
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ] {
            std::env::set_var(k, v);
        }
    }
    let settings = super::s3::S3Settings {
        endpoint: Some(moto.endpoint.clone()),
        path_style: true,
        retain_days: 1,
        ..Default::default()
    };
    let store = super::s3::S3Store::new("s3://contract/backups", settings).unwrap();
    store.preflight_write().unwrap();
    meets_the_contract(&store);
}
