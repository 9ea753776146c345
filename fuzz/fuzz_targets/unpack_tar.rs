//! Arbitrary tar bytes unpacked as a restore unpacks a bundle: whatever the entries say, nothing
//! may appear, change or be re-moded outside the staging directory (a marker tree and a
//! symlink to it sit beside it, as a host's files would).
#![no_main]
use std::fs;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::Path;

use libfuzzer_sys::fuzz_target;

/// Every path below `p` (but `skip`) with its mode, owner and size.
fn state(p: &Path, skip: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in fs::read_dir(p).unwrap().flatten() {
        if e.file_name() == skip {
            continue;
        }
        let m = fs::symlink_metadata(e.path()).unwrap();
        out.push(format!("{} {:o} {} {}", e.path().display(), m.mode(), m.uid(), m.len()));
        if m.is_dir() {
            out.extend(state(&e.path(), skip));
        }
    }
    out.sort();
    out
}

fuzz_target!(|data: &[u8]| {
    let t = tempfile::tempdir().unwrap();
    let outside = t.path().join("outside");
    fs::create_dir_all(outside.join("dir")).unwrap();
    fs::write(outside.join("file"), b"host file").unwrap();
    symlink(&outside, t.path().join("link-to-outside")).unwrap();
    let before = state(t.path(), "stage");
    let _ = cpbackup::bundle::unpack::unpack_tar(data, &t.path().join("stage"));
    assert_eq!(state(t.path(), "stage"), before, "something changed outside the staging directory");
    assert_eq!(fs::read(outside.join("file")).unwrap(), b"host file");
});
