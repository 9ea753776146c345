//! bbolt meta-page selection and the streaming snapshot checks on arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cpbackup::snapshot::meta::read_meta(data, data.len() as u64);
    let mut c = cpbackup::snapshot::SnapshotCheck::new(data.len() as u64);
    for part in data.chunks(97) {
        c.update(part);
    }
    let _ = c.finish();
});
