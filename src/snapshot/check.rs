//! Streaming checks of a snapshot file as it passes by: the sha256 trailer (`size % 512 == 32`,
//! last 32 bytes = SHA-256 of the rest) and the bbolt meta pages, without buffering the file.

use sha2::{Digest, Sha256};

use crate::snapshot::meta::{self, Meta, MetaError};

/// Bytes kept from the start of the file for the meta pages (two pages of up to 64 KiB).
const HEAD_KEEP: usize = 2 * 65536 + 4096;

/// Whether a snapshot ends with the SHA-256 of what precedes it (`etcdctl snapshot save` adds it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TrailerStatus {
    /// Present and matching.
    Valid,
    /// Present, not matching: the file was changed or damaged.
    Invalid,
    /// Not there (a copied `member/snap/db`).
    Absent,
}

impl TrailerStatus {
    /// The word reports use.
    pub fn as_str(self) -> &'static str {
        match self {
            TrailerStatus::Valid => "valid",
            TrailerStatus::Invalid => "invalid",
            TrailerStatus::Absent => "absent",
        }
    }
}

/// What the checks found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SnapshotSummary {
    /// Bytes of the file, trailer included.
    pub size: u64,
    /// The trailer's verdict.
    pub trailer: TrailerStatus,
    /// SHA-256 of the bbolt image (the trailer's expected value).
    pub image_sha256: String,
    /// SHA-256 of the whole file, trailer included.
    pub file_sha256: String,
    /// The newer valid bbolt meta page, if any.
    pub meta: Option<Meta>,
    /// Why the meta pages are not valid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta_error: Option<String>,
}

/// Feed it every byte of a snapshot file of known length, then call `finish`.
pub struct SnapshotCheck {
    total: u64,
    image_len: u64,
    seen: u64,
    /// One pass of SHA-256 over the file; cloned at the image boundary for the image digest.
    hash: Sha256,
    image_digest: Option<[u8; 32]>,
    trailer: Vec<u8>,
    head: Vec<u8>,
}

impl SnapshotCheck {
    /// A check of a snapshot of `total` bytes.
    pub fn new(total: u64) -> Self {
        let has_trailer = total % 512 == 32;
        SnapshotCheck {
            total,
            image_len: if has_trailer { total - 32 } else { total },
            seen: 0,
            hash: Sha256::new(),
            image_digest: None,
            trailer: Vec::with_capacity(32),
            head: Vec::new(),
        }
    }

    /// Whether the snapshot is long enough to carry a trailer.
    pub fn has_trailer(&self) -> bool {
        self.image_len != self.total
    }

    /// Feeds the next bytes.
    pub fn update(&mut self, mut data: &[u8]) {
        if self.head.len() < HEAD_KEEP {
            let n = data.len().min(HEAD_KEEP - self.head.len());
            self.head.extend_from_slice(&data[..n]);
        }
        while !data.is_empty() {
            if self.seen < self.image_len {
                let n = data.len().min((self.image_len - self.seen) as usize);
                self.hash.update(&data[..n]);
                self.seen += n as u64;
                data = &data[n..];
                if self.seen == self.image_len {
                    self.image_digest = Some(self.hash.clone().finalize().into());
                }
            } else {
                let n = data.len().min(32usize.saturating_sub(self.trailer.len()));
                self.trailer.extend_from_slice(&data[..n]);
                self.hash.update(data);
                self.seen += data.len() as u64;
                data = &[];
            }
        }
        if self.image_len == 0 && self.image_digest.is_none() {
            self.image_digest = Some(self.hash.clone().finalize().into());
        }
    }

    /// Bytes fed so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// The verdict, once every byte was fed.
    pub fn finish(self) -> SnapshotSummary {
        let file_digest: [u8; 32] = self.hash.clone().finalize().into();
        // A file shorter than its image has no separate image digest.
        let image_digest = self.image_digest.unwrap_or(file_digest);
        let trailer = if !self.has_trailer() {
            TrailerStatus::Absent
        } else if self.seen == self.total && self.trailer[..] == image_digest[..] {
            TrailerStatus::Valid
        } else {
            TrailerStatus::Invalid
        };
        let (meta, meta_error) = match meta::read_meta(&self.head, self.image_len.min(self.seen)) {
            Ok(m) => (Some(m), None),
            Err(e) => (None, Some(e.to_string())),
        };
        SnapshotSummary {
            size: self.seen,
            trailer,
            image_sha256: hex::encode(image_digest),
            file_sha256: hex::encode(file_digest),
            meta,
            meta_error,
        }
    }
}

impl SnapshotSummary {
    /// The meta error, if any, as a typed value for callers that need to match.
    pub fn meta_ok(&self) -> Result<&Meta, MetaError> {
        self.meta
            .as_ref()
            .ok_or_else(|| MetaError::NoValidMeta(self.meta_error.clone().unwrap_or_default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::meta::tests::fake_image;

    fn with_trailer(img: &[u8]) -> Vec<u8> {
        let mut f = img.to_vec();
        f.extend_from_slice(&Sha256::digest(img));
        f
    }

    fn check(file: &[u8], chunk: usize) -> SnapshotSummary {
        let mut c = SnapshotCheck::new(file.len() as u64);
        for part in file.chunks(chunk.max(1)) {
            c.update(part);
        }
        c.finish()
    }

    #[test]
    fn valid_trailer_in_any_chunking() {
        let f = with_trailer(&fake_image(4096, 5, 7));
        for chunk in [1, 7, 31, 32, 33, 4096, 1 << 20] {
            let s = check(&f, chunk);
            assert_eq!(s.trailer, TrailerStatus::Valid, "chunk {chunk}");
            assert_eq!(s.meta.unwrap().txid, 7);
            assert_eq!(s.file_sha256, hex::encode(Sha256::digest(&f)));
        }
    }

    #[test]
    fn flipped_byte_invalidates_trailer() {
        let mut f = with_trailer(&fake_image(4096, 5, 7));
        f[3 * 4096 + 5] ^= 0x40;
        assert_eq!(check(&f, 1000).trailer, TrailerStatus::Invalid);
    }

    #[test]
    fn data_dir_copy_has_no_trailer() {
        let s = check(&fake_image(4096, 5, 7), 4096);
        assert_eq!(s.trailer, TrailerStatus::Absent);
        assert!(s.meta.is_some());
    }
}
