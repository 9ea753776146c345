//! The unknown-field walk on arbitrary protobuf bytes decoded as a Deployment (a deep message
//! with lists, maps, inlined structs and embedded objects): never panics, lists at most
//! `MAX_LISTED` fields, every path is one line, and a field appended at the top is always found.
#![no_main]
use std::sync::OnceLock;

use cpbackup::k8s::decode::Decoder;
use cpbackup::k8s::encryption::Keyring;
use cpbackup::k8s::schema::Schema;
use cpbackup::k8s::unknown::MAX_LISTED;
use libfuzzer_sys::fuzz_target;

fn decoder() -> &'static Decoder {
    static D: OnceLock<Decoder> = OnceLock::new();
    D.get_or_init(|| Decoder::new(Schema::builtin().unwrap(), Keyring::empty()))
}

fn varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn ld(out: &mut Vec<u8>, field: u32, payload: &[u8]) {
    varint(out, u64::from(field) << 3 | 2);
    varint(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

fn envelope(raw: &[u8]) -> Vec<u8> {
    let mut tm = Vec::new();
    ld(&mut tm, 1, b"apps/v1");
    ld(&mut tm, 2, b"Deployment");
    let mut v = b"k8s\0".to_vec();
    ld(&mut v, 1, &tm);
    ld(&mut v, 2, raw);
    v
}

fuzz_target!(|data: &[u8]| {
    let key = b"/registry/deployments/ns/d";
    let Ok(got) = decoder().decode(key, &envelope(data)) else {
        return;
    };
    let u = &got.unknown;
    assert!(u.fields.len() <= MAX_LISTED);
    assert!(u.fields.iter().all(|f| !f.path.chars().any(char::is_control)));
    assert_eq!(u.is_empty(), u.message.is_empty());
    let mut more = data.to_vec();
    ld(&mut more, 9999, b"future");
    let again = decoder().decode(key, &envelope(&more)).expect("a valid message plus one field");
    let found = again.unknown.fields.len() + again.unknown.more;
    assert_eq!(found, u.fields.len() + u.more + 1, "the appended field is found");
});
