//! The offline edits of a restored database (the revision bump, `--new-host`'s deletions) on
//! arbitrary bytes written to a file: each must refuse or write, never panic, loop or allocate
//! without bound; a file it bumped must open again with the reader and hold the bumped
//! revision at its head, and after the deletions the deleted key is gone.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("db");
    std::fs::write(&path, data).expect("written");
    if let Ok(b) = cpbackup::snapshot::bump::bump_revision(&path, 1000) {
        let after = std::fs::read(&path).expect("read back");
        let db = cpbackup::snapshot::db::Db::open(&after).expect("a bumped file opens");
        let ks = cpbackup::snapshot::mvcc::keyspace(&db).expect("and reads");
        assert_eq!(ks.head_revision(), b.bumped);
        let key = ks.live.keys().next().map(|k| k.to_vec());
        drop(ks);
        if let Some(key) = key {
            let at = cpbackup::snapshot::bump::delete_keys(&path, &[key.clone()])
                .expect("a bumped file takes a deletion");
            let after = std::fs::read(&path).expect("read back");
            let db = cpbackup::snapshot::db::Db::open(&after).expect("an edited file opens");
            let ks = cpbackup::snapshot::mvcc::keyspace(&db).expect("and reads");
            assert_eq!(Some(ks.head_revision()), at);
            assert!(!ks.live.contains_key(key.as_slice()));
        }
    }
});
