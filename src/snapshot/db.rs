//! A read-only bbolt reader over a byte slice (normally a memory map of the snapshot file).
//!
//! It follows the B+tree from the chosen meta page only (never a linear scan: unreachable pages
//! hold stale data), honours page size, overflow pages and inline buckets, and bounds-checks
//! every offset. Depth is limited and every page may be visited once, so a corrupt file can
//! neither panic, loop nor allocate without bound: it gets a [`DbError`] naming the page.
//! Layouts: `docs/research/etcd-snapshot-format.md` §1 (shared docs).

use thiserror::Error;

use crate::snapshot::meta::{self, Meta, MetaError};

pub(crate) const PAGE_HEADER: usize = 16;
pub(crate) const ELEMENT: usize = 16;
pub(crate) const BRANCH: u16 = 0x01;
pub(crate) const LEAF: u16 = 0x02;
pub(crate) const BUCKET_LEAF_FLAG: u32 = 0x01;
/// bbolt trees of etcd are a few levels deep; anything deeper is corruption.
pub(crate) const MAX_DEPTH: usize = 64;

#[allow(missing_docs)] // the #[error] messages say what each variant and field means
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DbError {
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error("page {pgid} is outside the database (high-water mark {max})")]
    PageOutOfRange { pgid: u64, max: u64 },
    #[error("page {pgid}: {reason}")]
    BadPage { pgid: u64, reason: String },
    #[error("page {pgid} element {index}: {reason}")]
    BadElement {
        pgid: u64,
        index: usize,
        reason: String,
    },
    #[error("the B+tree is deeper than {MAX_DEPTH} levels at page {pgid}: the file is corrupt")]
    TooDeep { pgid: u64 },
    #[error("page {pgid} is reached twice: the tree has a cycle or shared pages (corrupt file)")]
    Cycle { pgid: u64 },
    #[error("bucket {0:?} has an invalid header")]
    BadBucket(String),
}

/// Where a bucket's tree starts.
#[derive(Debug, Clone, Copy)]
pub enum BucketRoot<'a> {
    /// A tree of its own, starting at this page.
    Page(u64),
    /// An inline bucket: a complete leaf page stored inside its parent's value.
    Inline(&'a [u8]),
}

/// One page (with its overflow pages) or an inline bucket's fake page.
#[derive(Clone, Copy)]
struct Page<'a> {
    id: u64,
    flags: u16,
    count: usize,
    data: &'a [u8],
}

/// A bbolt database read in place (read-only, over a memory map or a buffer).
pub struct Db<'a> {
    data: &'a [u8],
    image_len: usize,
    /// The meta page in force.
    pub meta: Meta,
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}
fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

impl<'a> Db<'a> {
    /// Opens a snapshot file's bytes (an etcdctl sha256 trailer, if present, is ignored here).
    pub fn open(data: &'a [u8]) -> Result<Self, DbError> {
        let image_len = if data.len() % 512 == 32 {
            data.len() - 32
        } else {
            data.len()
        };
        let meta = meta::read_meta(&data[..image_len], image_len as u64)?;
        Ok(Db {
            data,
            image_len,
            meta,
        })
    }

    /// The database size as bbolt counts it (`pgid × page size`).
    pub fn size(&self) -> u64 {
        self.meta.pgid * u64::from(self.meta.page_size)
    }

    fn page(&self, pgid: u64) -> Result<Page<'a>, DbError> {
        if pgid < 2 || pgid >= self.meta.pgid {
            return Err(DbError::PageOutOfRange {
                pgid,
                max: self.meta.pgid,
            });
        }
        let ps = self.meta.page_size as usize;
        let bad = |reason: String| DbError::BadPage { pgid, reason };
        let off = usize::try_from(pgid)
            .ok()
            .and_then(|p| p.checked_mul(ps))
            .ok_or_else(|| bad("offset overflows".into()))?;
        if off + PAGE_HEADER > self.image_len {
            return Err(bad("starts past the end of the file".into()));
        }
        let h = &self.data[off..off + PAGE_HEADER];
        if u64_at(h, 0) != pgid {
            return Err(bad(format!("header says page {}", u64_at(h, 0))));
        }
        let flags = u16_at(h, 8);
        let overflow = u32_at(h, 12) as usize;
        let span = overflow
            .checked_add(1)
            .and_then(|n| n.checked_mul(ps))
            .ok_or_else(|| bad("overflow count too large".into()))?;
        let end = off
            .checked_add(span)
            .filter(|&e| e <= self.image_len)
            .ok_or_else(|| {
                bad(format!(
                    "its {} overflow pages run past the end of the file",
                    overflow
                ))
            })?;
        if (pgid + overflow as u64) >= self.meta.pgid {
            return Err(bad("overflow pages run past the high-water mark".into()));
        }
        let p = Page {
            id: pgid,
            flags,
            count: u16_at(h, 10) as usize,
            data: &self.data[off..end],
        };
        check_page(&p)?;
        Ok(p)
    }

    /// Calls `f(key, value, flags)` for every leaf entry of the bucket, in key order.
    pub fn for_each(
        &self,
        root: BucketRoot<'a>,
        mut f: impl FnMut(&'a [u8], &'a [u8], u32) -> Result<(), DbError>,
    ) -> Result<(), DbError> {
        let mut visited = vec![0u64; (self.meta.pgid as usize).div_ceil(64)];
        let mut visit = |pgid: u64| -> Result<Page<'a>, DbError> {
            let (w, b) = ((pgid / 64) as usize, pgid % 64);
            if visited.get(w).is_some_and(|x| x & (1 << b) != 0) {
                return Err(DbError::Cycle { pgid });
            }
            let p = self.page(pgid)?;
            visited[w] |= 1 << b;
            Ok(p)
        };
        let first = match root {
            BucketRoot::Page(id) => visit(id)?,
            BucketRoot::Inline(bytes) => inline_page(bytes)?,
        };
        // Explicit stack of (page, next element): no recursion, bounded depth.
        let mut stack: Vec<(Page<'a>, usize)> = vec![(first, 0)];
        while let Some((page, idx)) = stack.last_mut() {
            if *idx >= page.count {
                stack.pop();
                continue;
            }
            let i = *idx;
            *idx += 1;
            let page = *page;
            if page.flags == LEAF {
                let (k, v, flags) = leaf_element(&page, i)?;
                f(k, v, flags)?;
            } else {
                let child = branch_child(&page, i)?;
                if stack.len() >= MAX_DEPTH {
                    return Err(DbError::TooDeep { pgid: child });
                }
                let c = visit(child)?;
                stack.push((c, 0));
            }
        }
        Ok(())
    }

    /// A bucket's tree cut into at most `parts` runs of whole subtrees, in key order, so that
    /// several threads can walk it (each run with [`Db::for_each`], the runs in order): the
    /// root's children when the root is a branch page, else the root alone.
    pub fn split(
        &self,
        root: BucketRoot<'a>,
        parts: usize,
    ) -> Result<Vec<Vec<BucketRoot<'a>>>, DbError> {
        let BucketRoot::Page(id) = root else {
            return Ok(vec![vec![root]]);
        };
        let page = self.page(id)?;
        if page.flags == LEAF || parts <= 1 {
            return Ok(vec![vec![root]]);
        }
        let children = (0..page.count)
            .map(|i| branch_child(&page, i).map(BucketRoot::Page))
            .collect::<Result<Vec<_>, _>>()?;
        let per = children.len().div_ceil(parts.max(1)).max(1);
        Ok(children.chunks(per).map(<[_]>::to_vec).collect())
    }

    /// The top-level buckets with their roots, in name order.
    pub fn buckets(&self) -> Result<Vec<(&'a [u8], BucketRoot<'a>)>, DbError> {
        let mut out = Vec::new();
        self.for_each(BucketRoot::Page(self.meta.root), |k, v, flags| {
            if flags & BUCKET_LEAF_FLAG != 0 {
                out.push((k, bucket_root(k, v)?));
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// A top-level bucket by name.
    pub fn bucket(&self, name: &[u8]) -> Result<Option<BucketRoot<'a>>, DbError> {
        Ok(self
            .buckets()?
            .into_iter()
            .find(|(k, _)| *k == name)
            .map(|(_, r)| r))
    }
}

/// One page's elements, copied out: what a writer needs to rewrite the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node {
    /// A leaf: (flags, key, value) in key order.
    Leaf(Vec<(u32, Vec<u8>, Vec<u8>)>),
    /// A branch: (first key of the child, child page) in key order.
    Branch(Vec<(Vec<u8>, u64)>),
}

impl<'a> Db<'a> {
    /// The page (or inline bucket) at `root`, decoded.
    pub(crate) fn node(&self, root: BucketRoot<'_>) -> Result<Node, DbError> {
        match root {
            BucketRoot::Page(id) => decode(&self.page(id)?),
            BucketRoot::Inline(bytes) => decode(&inline_page(bytes)?),
        }
    }

    /// The bytes of the meta page in force (page 0 or 1), to copy into a new one.
    pub(crate) fn meta_page(&self) -> Result<&'a [u8], DbError> {
        let ps = self.meta.page_size as usize;
        for slot in 0..2u64 {
            let page = &self.data[slot as usize * ps..(slot as usize + 1) * ps];
            if meta::parse_meta(page).is_ok_and(|m| m == self.meta) {
                return Ok(page);
            }
        }
        Err(DbError::BadPage {
            pgid: 0,
            reason: "neither meta page matches the one in force".into(),
        })
    }
}

pub(crate) fn bucket_root<'a>(name: &[u8], v: &'a [u8]) -> Result<BucketRoot<'a>, DbError> {
    if v.len() < 16 {
        return Err(DbError::BadBucket(
            String::from_utf8_lossy(name).into_owned(),
        ));
    }
    match u64_at(v, 0) {
        0 => Ok(BucketRoot::Inline(&v[16..])),
        root => Ok(BucketRoot::Page(root)),
    }
}

fn inline_page(bytes: &[u8]) -> Result<Page<'_>, DbError> {
    let bad = |reason: &str| DbError::BadPage {
        pgid: 0,
        reason: format!("inline bucket: {reason}"),
    };
    if bytes.len() < PAGE_HEADER {
        return Err(bad("shorter than a page header"));
    }
    let p = Page {
        id: 0,
        flags: u16_at(bytes, 8),
        count: u16_at(bytes, 10) as usize,
        data: bytes,
    };
    if p.flags != LEAF {
        return Err(bad("not a leaf page"));
    }
    check_page(&p)?;
    Ok(p)
}

fn check_page(p: &Page<'_>) -> Result<(), DbError> {
    if p.flags != LEAF && p.flags != BRANCH {
        return Err(DbError::BadPage {
            pgid: p.id,
            reason: format!("flags {:#06x} are neither branch nor leaf", p.flags),
        });
    }
    if PAGE_HEADER + p.count * ELEMENT > p.data.len() {
        return Err(DbError::BadPage {
            pgid: p.id,
            reason: format!("{} elements do not fit in the page", p.count),
        });
    }
    Ok(())
}

fn slice<'a>(
    p: &Page<'a>,
    i: usize,
    start: usize,
    len: usize,
    what: &str,
) -> Result<&'a [u8], DbError> {
    start
        .checked_add(len)
        .filter(|&end| end <= p.data.len())
        .map(|end| &p.data[start..end])
        .ok_or_else(|| DbError::BadElement {
            pgid: p.id,
            index: i,
            reason: format!("{what} points outside its page"),
        })
}

fn leaf_element<'a>(p: &Page<'a>, i: usize) -> Result<(&'a [u8], &'a [u8], u32), DbError> {
    let e = PAGE_HEADER + i * ELEMENT;
    let el = &p.data[e..e + ELEMENT];
    let (flags, pos, ksize, vsize) = (
        u32_at(el, 0),
        u32_at(el, 4) as usize,
        u32_at(el, 8) as usize,
        u32_at(el, 12) as usize,
    );
    let start = e.checked_add(pos).ok_or_else(|| DbError::BadElement {
        pgid: p.id,
        index: i,
        reason: "offset overflows".into(),
    })?;
    let k = slice(p, i, start, ksize, "key")?;
    let v = slice(p, i, start + ksize, vsize, "value")?;
    Ok((k, v, flags))
}

fn branch_child(p: &Page<'_>, i: usize) -> Result<u64, DbError> {
    let e = PAGE_HEADER + i * ELEMENT;
    Ok(u64_at(&p.data[e..e + ELEMENT], 8))
}

fn decode(page: &Page<'_>) -> Result<Node, DbError> {
    if page.flags == LEAF {
        (0..page.count)
            .map(|i| leaf_element(page, i).map(|(k, v, f)| (f, k.to_vec(), v.to_vec())))
            .collect::<Result<_, _>>()
            .map(Node::Leaf)
    } else {
        (0..page.count)
            .map(|i| {
                let child = branch_child(page, i)?;
                branch_key(page, i).map(|k| (k.to_vec(), child))
            })
            .collect::<Result<_, _>>()
            .map(Node::Branch)
    }
}

fn branch_key<'a>(p: &Page<'a>, i: usize) -> Result<&'a [u8], DbError> {
    let e = PAGE_HEADER + i * ELEMENT;
    let el = &p.data[e..e + ELEMENT];
    let (pos, ksize) = (u32_at(el, 0) as usize, u32_at(el, 4) as usize);
    let start = e.checked_add(pos).ok_or_else(|| DbError::BadElement {
        pgid: p.id,
        index: i,
        reason: "offset overflows".into(),
    })?;
    slice(p, i, start, ksize, "key")
}

#[cfg(test)]
pub(crate) mod tests {
    //! Hand-built bbolt files: a root bucket with an inline bucket and a paged bucket whose
    //! tree has a branch over two leaves, then corruptions of each structure.

    use super::*;
    use crate::snapshot::meta::tests::fake_image;

    pub const PS: usize = 4096;

    fn put_header(img: &mut [u8], pgid: usize, flags: u16, count: u16, overflow: u32) {
        let o = pgid * PS;
        img[o..o + 8].copy_from_slice(&(pgid as u64).to_le_bytes());
        img[o + 8..o + 10].copy_from_slice(&flags.to_le_bytes());
        img[o + 10..o + 12].copy_from_slice(&count.to_le_bytes());
        img[o + 12..o + 16].copy_from_slice(&overflow.to_le_bytes());
    }

    /// Writes leaf elements (flags, key, value) into `buf` (a page starting at 0).
    pub fn leaf_into(buf: &mut [u8], entries: &[(u32, &[u8], &[u8])]) {
        let mut data = PAGE_HEADER + entries.len() * ELEMENT;
        for (i, (flags, k, v)) in entries.iter().enumerate() {
            let e = PAGE_HEADER + i * ELEMENT;
            buf[e..e + 4].copy_from_slice(&flags.to_le_bytes());
            buf[e + 4..e + 8].copy_from_slice(&((data - e) as u32).to_le_bytes());
            buf[e + 8..e + 12].copy_from_slice(&(k.len() as u32).to_le_bytes());
            buf[e + 12..e + 16].copy_from_slice(&(v.len() as u32).to_le_bytes());
            buf[data..data + k.len()].copy_from_slice(k);
            buf[data + k.len()..data + k.len() + v.len()].copy_from_slice(v);
            data += k.len() + v.len();
        }
    }

    fn branch_into(buf: &mut [u8], children: &[(&[u8], u64)]) {
        let mut data = PAGE_HEADER + children.len() * ELEMENT;
        for (i, (k, pgid)) in children.iter().enumerate() {
            let e = PAGE_HEADER + i * ELEMENT;
            buf[e..e + 4].copy_from_slice(&((data - e) as u32).to_le_bytes());
            buf[e + 4..e + 8].copy_from_slice(&(k.len() as u32).to_le_bytes());
            buf[e + 8..e + 16].copy_from_slice(&pgid.to_le_bytes());
            buf[data..data + k.len()].copy_from_slice(k);
            data += k.len();
        }
    }

    /// Pages: 2 root bucket leaf, 3 branch of bucket "big", 4-5 leaf (overflowing), 6 leaf.
    pub fn sample() -> Vec<u8> {
        let mut img = fake_image(PS, 7, 5);
        crate::snapshot::meta::tests::set_root(&mut img, PS, 2);
        // inline bucket "small": a fake leaf page in the value
        let mut inline = vec![0u8; 16 + 200];
        inline[16 + 8..16 + 10].copy_from_slice(&LEAF.to_le_bytes());
        inline[16 + 10..16 + 12].copy_from_slice(&2u16.to_le_bytes());
        leaf_into(&mut inline[16..], &[(0, b"a", b"1"), (0, b"b", b"2")]);
        let mut big = vec![0u8; 16];
        big[0..8].copy_from_slice(&3u64.to_le_bytes());
        put_header(&mut img, 2, LEAF, 2, 0);
        leaf_into(
            &mut img[2 * PS..3 * PS],
            &[(1, b"big", &big), (1, b"small", &inline)],
        );
        put_header(&mut img, 3, BRANCH, 2, 0);
        branch_into(&mut img[3 * PS..4 * PS], &[(b"k1", 4), (b"k3", 6)]);
        put_header(&mut img, 4, LEAF, 2, 1);
        let large = vec![7u8; 5000]; // larger than a page: needs the overflow page 5
        leaf_into(
            &mut img[4 * PS..6 * PS],
            &[(0, b"k1", b"v1"), (0, b"k2", &large)],
        );
        put_header(&mut img, 6, LEAF, 1, 0);
        leaf_into(&mut img[6 * PS..7 * PS], &[(0, b"k3", b"v3")]);
        img
    }

    fn collect(db: &Db<'_>, name: &[u8]) -> Result<Vec<(Vec<u8>, usize)>, DbError> {
        let mut out = Vec::new();
        let root = db.bucket(name)?.expect("bucket exists");
        db.for_each(root, |k, v, _| {
            out.push((k.to_vec(), v.len()));
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn walks_paged_inline_and_overflow() {
        let img = sample();
        let db = Db::open(&img).unwrap();
        let names: Vec<_> = db
            .buckets()
            .unwrap()
            .iter()
            .map(|(k, _)| k.to_vec())
            .collect();
        assert_eq!(names, vec![b"big".to_vec(), b"small".to_vec()]);
        assert_eq!(
            collect(&db, b"big").unwrap(),
            vec![
                (b"k1".to_vec(), 2),
                (b"k2".to_vec(), 5000),
                (b"k3".to_vec(), 2)
            ]
        );
        assert_eq!(
            collect(&db, b"small").unwrap(),
            vec![(b"a".to_vec(), 1), (b"b".to_vec(), 1)]
        );
    }

    fn err_of(img: &[u8]) -> DbError {
        let db = match Db::open(img) {
            Ok(db) => db,
            Err(e) => return e,
        };
        collect(&db, b"big").unwrap_err()
    }

    #[test]
    fn a_page_pointing_at_itself_is_a_cycle() {
        let mut img = sample();
        branch_into(&mut img[3 * PS..4 * PS], &[(b"k1", 3), (b"k3", 6)]);
        assert_eq!(err_of(&img), DbError::Cycle { pgid: 3 });
    }

    #[test]
    fn an_element_pointing_outside_its_page_is_reported() {
        let mut img = sample();
        let e = 6 * PS + PAGE_HEADER;
        img[e + 4..e + 8].copy_from_slice(&60000u32.to_le_bytes());
        assert!(
            matches!(
                err_of(&img),
                DbError::BadElement {
                    pgid: 6,
                    index: 0,
                    ..
                }
            ),
            "{:?}",
            err_of(&img)
        );
    }

    #[test]
    fn a_child_past_the_high_water_mark_is_reported() {
        let mut img = sample();
        branch_into(&mut img[3 * PS..4 * PS], &[(b"k1", 4), (b"k3", 99)]);
        assert_eq!(err_of(&img), DbError::PageOutOfRange { pgid: 99, max: 7 });
    }

    #[test]
    fn truncation_and_bad_magic_and_bad_checksum() {
        let img = sample();
        assert!(matches!(
            err_of(&img[..5 * PS]),
            DbError::Meta(MetaError::Truncated { .. })
        ));
        let mut m = img.clone();
        m[16] ^= 0xff;
        m[PS + 16] ^= 0xff;
        assert!(matches!(
            err_of(&m),
            DbError::Meta(MetaError::NoValidMeta(_))
        ));
        let mut c = img.clone();
        c[40] ^= 1;
        c[PS + 40] ^= 1;
        assert!(
            matches!(err_of(&c), DbError::Meta(MetaError::NoValidMeta(ref s)) if s.contains("checksum"))
        );
    }

    #[test]
    fn wrong_page_id_and_bad_flags_are_reported() {
        let mut img = sample();
        img[6 * PS..6 * PS + 8].copy_from_slice(&9u64.to_le_bytes());
        assert!(matches!(err_of(&img), DbError::BadPage { pgid: 6, .. }));
        let mut img = sample();
        img[6 * PS + 8] = 0x10;
        assert!(matches!(err_of(&img), DbError::BadPage { pgid: 6, .. }));
    }

    #[test]
    fn overflow_past_the_end_is_reported() {
        let mut img = sample();
        img[6 * PS + 12..6 * PS + 16].copy_from_slice(&1000u32.to_le_bytes());
        assert!(matches!(err_of(&img), DbError::BadPage { pgid: 6, .. }));
    }

    use proptest::prelude::*;
    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Any corruption of any byte range never panics or hangs: Ok or a DbError.
        #[test]
        fn corrupted_bytes_never_panic(pos in 0usize..(7 * PS), len in 1usize..64, byte in any::<u8>()) {
            let mut img = sample();
            let end = (pos + len).min(img.len());
            for b in &mut img[pos..end] { *b ^= byte | 1; }
            let _ = crate::snapshot::report::analyze(&img);
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..20000)) {
            let _ = crate::snapshot::report::analyze(&data);
        }
    }
}
