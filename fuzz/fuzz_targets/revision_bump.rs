//! The offline revision bump on arbitrary bytes written to a file: it must refuse or bump,
//! never panic, loop or allocate without bound; a file it bumped must open again with the
//! reader and hold the bumped revision at its head.
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
    }
});
