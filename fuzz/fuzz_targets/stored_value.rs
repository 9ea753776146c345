//! Decoding a stored Kubernetes value on arbitrary bytes: the envelope, protobuf against the
//! built-in schema (as a Pod, a Deployment and whatever the bytes name), JSON, the encryption
//! prefixes with real keys. Must never panic, loop or allocate without bound.
#![no_main]
use std::sync::OnceLock;

use cpbackup::k8s::decode::Decoder;
use cpbackup::k8s::encryption::Keyring;
use cpbackup::k8s::schema::Schema;
use libfuzzer_sys::fuzz_target;

const KEYS: &str = "kind: EncryptionConfiguration
resources:
  - providers:
      - aescbc: {keys: [{name: k, secret: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=}]}
      - aesgcm: {keys: [{name: k, secret: MDEyMzQ1Njc4OWFiY2RlZg==}]}
      - secretbox: {keys: [{name: k, secret: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=}]}
";

fn decoder() -> &'static Decoder {
    static D: OnceLock<Decoder> = OnceLock::new();
    D.get_or_init(|| Decoder::new(Schema::builtin().unwrap(), Keyring::parse(KEYS, "fuzz").unwrap()))
}

/// `k8s\0` + runtime.Unknown{TypeMeta{api_version, kind}, raw}.
fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    fn ld(out: &mut Vec<u8>, field: u8, payload: &[u8]) {
        out.push(field << 3 | 2);
        let mut n = payload.len();
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
        out.extend_from_slice(payload);
    }
    let mut tm = Vec::new();
    ld(&mut tm, 1, api_version.as_bytes());
    ld(&mut tm, 2, kind.as_bytes());
    let mut v = b"k8s\0".to_vec();
    ld(&mut v, 1, &tm);
    ld(&mut v, 2, raw);
    v
}

fuzz_target!(|data: &[u8]| {
    let d = decoder();
    let _ = d.decode(b"/registry/pods/ns/p", data);
    let _ = d.decode(b"/registry/pods/ns/p", &envelope("v1", "Pod", data));
    let _ = d.decode(b"/registry/deployments/ns/d", &envelope("apps/v1", "Deployment", data));
    let _ = d.decode_as(data, "v1", "WatchEvent");
});
