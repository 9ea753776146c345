//! The TOML config file and the `.cpb.json` record: untrusted text read from disk or a bucket.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = cpbackup::settings::FileConfig::parse(text);
    }
    let _ = cpbackup::store::Record::parse(data);
});
