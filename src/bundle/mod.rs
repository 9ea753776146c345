//! The bundle format: an age-encrypted, gzip-compressed tar holding `etcd/snapshot.db`, the
//! static pod resources and, last, `cpbackup/manifest.json` with the SHA-256 of every entry.

pub(crate) mod check;
pub mod codec;
pub(crate) mod export;
pub(crate) mod manifest;
pub(crate) mod readahead;
pub mod reader;
pub mod unpack;
pub(crate) mod writer;

pub(crate) use writer::BundleWriter;

#[cfg(test)]
mod tests {
    //! Writer → reader round trips in memory, and what the reader says about damage.

    use std::io::Write;

    use age::x25519;
    use sha2::{Digest, Sha256};

    use super::reader::{self, Expectation, VerifyError};
    use super::*;
    use crate::etcd::EtcdStatus;
    use crate::host::Platform;
    use crate::host::static_pods::Source;
    use crate::keys::{Identities, Recipients};
    use manifest::Manifest;

    fn snapshot_file() -> Vec<u8> {
        let mut f = crate::snapshot::meta::tests::fake_image(4096, 40, 9);
        for (i, b) in f.iter_mut().enumerate().skip(2 * 4096) {
            *b = (i * 7 % 253) as u8;
        }
        let d = Sha256::digest(&f);
        f.extend_from_slice(&d);
        f
    }

    fn manifest() -> Manifest {
        Manifest {
            format_version: manifest::FORMAT_VERSION,
            tool_version: "test".into(),
            created: "2026-11-22T00:00:00Z".into(),
            cluster: "c".into(),
            node: "n".into(),
            platform: Platform::Kubeadm,
            forced: false,
            etcd: manifest::EtcdInfo {
                status: EtcdStatus {
                    endpoint: "x".into(),
                    version: "3.5.1".into(),
                    revision: 5,
                    member_id: "1".into(),
                    cluster_id: "2".into(),
                    db_size: 1,
                    raft_index: 1,
                },
                image_sha256: String::new(),
                snapshot_size: 0,
                bbolt_txid: 0,
                bbolt_page_size: 0,
            },
            static_pod_revisions: Default::default(),
            kubernetes_version: None,
            consistency: None,
            compression: String::new(),
            entries: vec![],
        }
    }

    /// A bundle with a snapshot and a small tree; returns (bundle bytes, identity).
    fn bundle(snapshot: &[u8]) -> anyhow::Result<(Vec<u8>, x25519::Identity)> {
        let id = x25519::Identity::generate();
        let r = Recipients {
            keys: vec![id.to_public()],
        };
        let tree = tempfile::tempdir()?;
        std::fs::create_dir_all(tree.path().join("pki/etcd"))?;
        std::fs::write(tree.path().join("pki/etcd/ca.crt"), b"CA-CONTENT")?;
        std::os::unix::fs::symlink("ca.crt", tree.path().join("pki/etcd/link"))?;
        let mut w = BundleWriter::new(Vec::new(), &r, codec::DEFAULT_CODEC, 3, 2)?;
        w.append_snapshot(snapshot.len() as u64, snapshot, |_| {})?;
        w.append_source(&Source {
            path: tree.path().join("pki"),
            archive_path: "pki".into(),
        })?;
        Ok((w.finish(manifest())?, id))
    }

    fn check(bytes: &[u8], id: &x25519::Identity) -> Result<reader::VerifyReport, VerifyError> {
        let ids = Identities {
            keys: vec![id.clone()],
            files: vec![],
        };
        reader::verify(bytes, &ids, &Expectation::default(), Box::new(|_| {}))
    }

    #[test]
    fn round_trip_verifies_every_entry() {
        let snap = snapshot_file();
        let (b, id) = bundle(&snap).unwrap();
        let rep = check(&b, &id).unwrap();
        assert_eq!(rep.files, 2, "snapshot and ca.crt");
        assert_eq!(rep.entries, 5, "snapshot, pki, pki/etcd, ca.crt, link");
        assert_eq!(rep.snapshot.meta.unwrap().txid, 9);
        let link = rep
            .manifest
            .entries
            .iter()
            .find(|e| e.path == "pki/etcd/link")
            .unwrap();
        assert_eq!(link.link_target.as_deref(), Some("ca.crt"));
    }

    #[test]
    fn a_snapshot_with_a_bad_trailer_is_never_written() {
        let mut snap = snapshot_file();
        let n = snap.len();
        snap[n - 1] ^= 1;
        let e = bundle(&snap).err().unwrap();
        assert!(e.to_string().contains("sha256 trailer"), "{e}");
    }

    #[test]
    fn content_that_disagrees_with_its_manifest_is_named() {
        // Rebuild the plaintext with a changed file but the old manifest, then re-encrypt.
        let snap = snapshot_file();
        let (b, id) = bundle(&snap).unwrap();
        let ids = Identities {
            keys: vec![id.clone()],
            files: vec![],
        };
        let mut plain = Vec::new();
        std::io::copy(
            &mut age::Decryptor::new(&b[..])
                .unwrap()
                .decrypt(ids.as_dyn())
                .unwrap(),
            &mut plain,
        )
        .unwrap();
        let mut tar_bytes = Vec::new();
        std::io::copy(&mut codec::Decoder::sequential(&plain[..]), &mut tar_bytes).unwrap();
        let pos = tar_bytes
            .windows(10)
            .position(|w| w == b"CA-CONTENT")
            .unwrap();
        tar_bytes[pos] = b'X';
        let mut z = codec::DEFAULT_CODEC.encoder(Vec::new(), 3, 1).unwrap();
        z.write_all(&tar_bytes).unwrap();
        let e = reader::check_plaintext(&z.finish().unwrap()[..]).unwrap_err();
        assert!(
            matches!(e, VerifyError::Mismatch(ref m) if m.contains("pki/etcd/ca.crt")),
            "{e}"
        );
    }

    #[test]
    fn plaintext_parser_survives_garbage() {
        for junk in [
            &b""[..],
            b"\x1f\x8b",
            b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03",
            &[0u8; 1024],
        ] {
            assert!(reader::check_plaintext(junk).is_err());
        }
    }
}
