//! The parallel gunzip on arbitrary bytes (and on pargz output with bytes flipped): it must
//! produce exactly what the sequential MultiGzDecoder produces, or fail where it fails.
#![no_main]
use std::io::{Read, Write};

use libfuzzer_sys::fuzz_target;

fn both(gz: &[u8]) {
    let mut want = Vec::new();
    let seq = flate2::read::MultiGzDecoder::new(gz).read_to_end(&mut want);
    let mut got = Vec::new();
    let par = cpbackup::bundle::codec::gzip_read::ParGzReader::new(gz, 2).read_to_end(&mut got);
    match (seq, par) {
        (Ok(_), Ok(_)) => assert_eq!(got, want),
        (Err(_), Err(_)) => {}
        (s, p) => panic!("sequential {s:?} vs parallel {p:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    both(data);
    if data.len() > 2 {
        let mut w = cpbackup::bundle::codec::gzip_write::ParGzWriter::new(Vec::new(), 1, 2);
        w.write_all(&data[2..]).unwrap();
        let mut gz = w.finish().unwrap();
        let at = (data[0] as usize * 257 + data[1] as usize) % gz.len();
        gz[at] ^= data[1] | 1;
        both(&gz);
    }
});
