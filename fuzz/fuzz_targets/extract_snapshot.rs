//! The whole extraction on arbitrary bytes as a snapshot (bbolt, MVCC, the parallel walk,
//! decoding, re-apply rules, dependencies) and an EncryptionConfiguration parser on arbitrary
//! text. Must never panic, loop or allocate without bound.
#![no_main]
use cpbackup::extract::reapply::Options;
use cpbackup::extract::select::Filter;
use cpbackup::k8s::decode::Decoder;
use cpbackup::k8s::encryption::Keyring;
use cpbackup::k8s::schema::Schema;
use libfuzzer_sys::fuzz_target;

fn decoder() -> &'static Decoder {
    static D: std::sync::OnceLock<Decoder> = std::sync::OnceLock::new();
    D.get_or_init(|| Decoder::new(Schema::builtin().unwrap(), Keyring::empty()))
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Keyring::parse(text, "fuzz");
    }
    let d = decoder();
    let _ = cpbackup::extract::extract(data, &Filter::Namespace("a".into()), d, &Options::default(), true);
    let _ = cpbackup::extract::extract(data, &Filter::Prefix("/".into()), d, &Options::default(), false);
});
