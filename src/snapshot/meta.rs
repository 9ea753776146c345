//! bbolt meta pages (pages 0 and 1): magic, version, FNV-1a checksum, page size, high-water mark.
//!
//! Layout (little-endian, offsets from the page start): page header 16 bytes, then magic u32 @16,
//! version u32 @20, page size u32 @24, flags u32 @28, root page u64 @32, sequence u64 @40,
//! freelist u64 @48, pgid u64 @56, txid u64 @64, checksum u64 @72 (FNV-1a 64 over bytes 16..72).

use thiserror::Error;

/// The magic number of a bbolt meta page.
pub const MAGIC: u32 = 0xED0C_DAED;
/// The bbolt file format version etcd writes.
pub const VERSION: u32 = 2;
const META_END: usize = 80;

/// A bbolt meta page: where the tree and freelist start, and the last transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Meta {
    /// Bytes per page.
    pub page_size: u32,
    /// Page of the root bucket.
    pub root: u64,
    /// Page of the freelist; `null` in JSON when bbolt keeps none on disk (etcd's default,
    /// written as u64::MAX), which jq and JavaScript cannot hold.
    #[serde(serialize_with = "freelist_page")]
    pub freelist: u64,
    /// High-water mark: pages in use.
    pub pgid: u64,
    /// Id of the last committed transaction.
    pub txid: u64,
}

fn freelist_page<S: serde::Serializer>(page: &u64, s: S) -> Result<S::Ok, S::Error> {
    match *page {
        u64::MAX => s.serialize_none(),
        p => s.serialize_u64(p),
    }
}

#[allow(missing_docs)] // the #[error] messages say what each variant and field means
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MetaError {
    #[error("file too short for a bbolt meta page ({0} bytes)")]
    TooShort(usize),
    #[error("not a bbolt database: bad magic {0:#010x}")]
    BadMagic(u32),
    #[error("unsupported bbolt version {0}")]
    BadVersion(u32),
    #[error("meta page checksum mismatch")]
    BadChecksum,
    #[error("implausible page size {0}")]
    BadPageSize(u32),
    #[error("no valid meta page: {0}")]
    NoValidMeta(String),
    #[error("database is truncated: its meta page says {needed} bytes, the image has {have}")]
    Truncated { needed: u64, have: u64 },
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

/// FNV-1a 64.
pub fn fnv1a64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Parses and validates one meta page starting at `page[0]`.
pub fn parse_meta(page: &[u8]) -> Result<Meta, MetaError> {
    if page.len() < META_END {
        return Err(MetaError::TooShort(page.len()));
    }
    let magic = u32_at(page, 16);
    if magic != MAGIC {
        return Err(MetaError::BadMagic(magic));
    }
    let version = u32_at(page, 20);
    if version != VERSION {
        return Err(MetaError::BadVersion(version));
    }
    if fnv1a64(&page[16..72]) != u64_at(page, 72) {
        return Err(MetaError::BadChecksum);
    }
    let page_size = u32_at(page, 24);
    if !(512..=1 << 20).contains(&page_size) || !page_size.is_power_of_two() {
        return Err(MetaError::BadPageSize(page_size));
    }
    Ok(Meta {
        page_size,
        root: u64_at(page, 32),
        freelist: u64_at(page, 48),
        pgid: u64_at(page, 56),
        txid: u64_at(page, 64),
    })
}

/// Picks the meta bbolt would use from the start of a file (`head`) whose image is `image_len`
/// bytes long (trailer excluded), and checks the image is not shorter than the meta claims.
pub fn read_meta(head: &[u8], image_len: u64) -> Result<Meta, MetaError> {
    let m0 = parse_meta(head);
    let page_size = match &m0 {
        Ok(m) => Some(m.page_size as usize),
        Err(_) => None,
    };
    // meta1 sits one page after meta0; if meta0 is broken, probe the usual page sizes.
    let m1 = match page_size {
        Some(ps) => head
            .get(ps..)
            .map(parse_meta)
            .unwrap_or(Err(MetaError::TooShort(0))),
        None => (0..15)
            .map(|i| 1024usize << i)
            .filter_map(|off| head.get(off..).map(parse_meta))
            .find(|r| r.is_ok())
            .unwrap_or(Err(MetaError::TooShort(head.len()))),
    };
    let chosen = match (m0, m1) {
        (Ok(a), Ok(b)) => {
            if a.page_size != b.page_size {
                return Err(MetaError::NoValidMeta(
                    "meta pages disagree on page size".into(),
                ));
            }
            if a.txid >= b.txid { a } else { b }
        }
        (Ok(a), Err(_)) => a,
        (Err(_), Ok(b)) => b,
        (Err(e0), Err(e1)) => {
            return Err(MetaError::NoValidMeta(format!(
                "meta 0: {e0}; meta 1: {e1}"
            )));
        }
    };
    let needed = chosen.pgid.saturating_mul(u64::from(chosen.page_size));
    if needed > image_len {
        return Err(MetaError::Truncated {
            needed,
            have: image_len,
        });
    }
    Ok(chosen)
}

#[cfg(test)]
pub(crate) mod tests {

    #[test]
    fn no_freelist_on_disk_is_null_in_json() {
        let m = Meta {
            page_size: 4096,
            root: 3,
            freelist: u64::MAX,
            pgid: 10,
            txid: 7,
        };
        let j = serde_json::to_value(m).unwrap();
        assert!(j["freelist"].is_null(), "{j}");
        let j = serde_json::to_value(Meta { freelist: 2, ..m }).unwrap();
        assert_eq!(j["freelist"], 2);
    }

    use super::*;

    /// Builds a two-meta-page image the way bbolt's `WriteTo` does (txid T and T-1).
    pub fn fake_image(page_size: usize, pgid: u64, txid: u64) -> Vec<u8> {
        let mut img = vec![0u8; page_size * pgid as usize];
        for (i, t) in [(0usize, txid), (1, txid - 1)] {
            let p = &mut img[i * page_size..];
            p[0..8].copy_from_slice(&(i as u64).to_le_bytes());
            p[8..10].copy_from_slice(&4u16.to_le_bytes());
            p[16..20].copy_from_slice(&MAGIC.to_le_bytes());
            p[20..24].copy_from_slice(&VERSION.to_le_bytes());
            p[24..28].copy_from_slice(&(page_size as u32).to_le_bytes());
            p[32..40].copy_from_slice(&3u64.to_le_bytes());
            p[48..56].copy_from_slice(&u64::MAX.to_le_bytes());
            p[56..64].copy_from_slice(&pgid.to_le_bytes());
            p[64..72].copy_from_slice(&t.to_le_bytes());
            let sum = fnv1a64(&p[16..72]);
            p[72..80].copy_from_slice(&sum.to_le_bytes());
        }
        img
    }

    /// Points both meta pages at another root page, fixing their checksums.
    pub fn set_root(img: &mut [u8], page_size: usize, root: u64) {
        for i in 0..2 {
            let p = &mut img[i * page_size..];
            p[32..40].copy_from_slice(&root.to_le_bytes());
            let sum = fnv1a64(&p[16..72]);
            p[72..80].copy_from_slice(&sum.to_le_bytes());
        }
    }

    #[test]
    fn picks_higher_txid() {
        let img = fake_image(4096, 4, 10);
        let m = read_meta(&img, img.len() as u64).unwrap();
        assert_eq!((m.txid, m.page_size, m.pgid), (10, 4096, 4));
    }

    #[test]
    fn falls_back_to_other_meta_when_one_is_corrupt() {
        let mut img = fake_image(4096, 4, 10);
        img[70] ^= 1; // breaks meta0's checksum
        let m = read_meta(&img, img.len() as u64).unwrap();
        assert_eq!(m.txid, 9);
        img[4096 + 16] ^= 1; // breaks meta1's magic too
        assert!(matches!(
            read_meta(&img, img.len() as u64),
            Err(MetaError::NoValidMeta(_))
        ));
    }

    #[test]
    fn truncated_image_is_reported() {
        let img = fake_image(4096, 4, 10);
        let e = read_meta(&img[..8192], 8192).unwrap_err();
        assert_eq!(
            e,
            MetaError::Truncated {
                needed: 16384,
                have: 8192
            }
        );
    }

    #[test]
    fn garbage_never_panics() {
        for len in [0, 1, 79, 80, 4096, 9000] {
            let junk: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            assert!(read_meta(&junk, len as u64).is_err());
        }
    }
}
