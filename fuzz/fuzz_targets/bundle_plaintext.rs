//! The decrypted bundle stream (gzip members → tar → manifest JSON, snapshot checks): any bytes
//! must give Ok or a VerifyError, never a panic, a hang or an unbounded allocation.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cpbackup::bundle::reader::check_plaintext(data);
});
