//! The whole offline reader on arbitrary bytes: bbolt pages, buckets, MVCC revisions and the
//! inspect report. Must never panic, loop or allocate without bound.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cpbackup::snapshot::report::analyze(data);
});
