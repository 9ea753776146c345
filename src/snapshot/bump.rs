//! The offline edits of a restored etcd database (before etcd first starts on it): the
//! revision bump, and the deletions of `restore --new-host` ([`delete_keys`]: tombstones at
//! the next revision, as etcd's own delete writes them). The bump is done by cpbackup for restore tools
//! that lack `--bump-revision`/`--mark-compacted` (etcd 3.4, 3.5.0–3.5.9). It writes the
//! database `etcdutl snapshot restore --bump-revision N --mark-compacted` writes: an entry with
//! an empty value at revision latest + N in the `key` bucket, and `scheduledCompactRev` and
//! `finishedCompactRev` in `meta` set to that revision. etcd then serves revision latest + N,
//! and a watch or read from an older revision gets "compacted", so clients relist.
//!
//! It is one bbolt transaction, committed as bbolt commits: the leaves that change and the
//! branch pages above them are written as new pages past the high-water mark, synced, then a
//! new meta page (txid + 1) goes into the slot bbolt itself would use, synced. Until that last
//! write the old database is in force. The pages left behind are not listed anywhere: the new
//! meta page says the freelist is not synced, so bbolt rebuilds it from the tree on open (as
//! etcd's own files on Linux are written). Layouts: shared research `etcd-snapshot-format.md` §1.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use thiserror::Error;

use crate::snapshot::db::{
    BRANCH, BUCKET_LEAF_FLAG, BucketRoot, Db, DbError, ELEMENT, LEAF, MAX_DEPTH, Node, PAGE_HEADER,
    bucket_root,
};
use crate::snapshot::meta::fnv1a64;

const KEY_BUCKET: &[u8] = b"key";
const META_BUCKET: &[u8] = b"meta";
const SCHEDULED_COMPACT: &[u8] = b"scheduledCompactRev";
const FINISHED_COMPACT: &[u8] = b"finishedCompactRev";
/// bbolt's "no freelist synced" page id.
const NO_FREELIST: u64 = u64::MAX;

/// The revisions before and after a bump.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Bumped {
    /// The newest revision the database held.
    pub latest: i64,
    /// The revision it serves now (also the compaction mark).
    pub bumped: i64,
}

#[allow(missing_docs)] // the #[error] messages say what each variant means
#[derive(Debug, Error)]
pub enum BumpError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the database cannot be read: {0}")]
    Db(#[from] DbError),
    #[error("this is not an etcd database: it has no {0:?} bucket")]
    NoBucket(&'static str),
    #[error(
        "{0} ends in a snapshot checksum: bump the database `snapshot restore` wrote, not the snapshot"
    )]
    HasTrailer(String),
    #[error("revision {latest} + {amount} does not fit etcd's revision counter")]
    TooLarge { latest: i64, amount: u64 },
    #[error("a page of {0} entries is more than bbolt can hold")]
    PageFull(usize),
}

/// Bumps the revision of the bbolt database at `path` (not followed if a link) by `amount` and
/// marks every older revision compacted.
pub fn bump_revision(path: &Path, amount: u64) -> Result<Bumped, BumpError> {
    edit(path, |db| plan(db, amount))
}

/// Deletes `keys` from the restored etcd database at `path` as etcd deletes them: one
/// tombstone each in the `key` bucket, at the revision after the newest one (sub-revisions 0,
/// 1, …), so etcd starts with them gone and the head revision one higher. Returns that
/// revision (`None`: no keys, nothing written). Run on a restored member's `member/snap/db`
/// before etcd starts.
pub fn delete_keys(path: &Path, keys: &[Vec<u8>]) -> Result<Option<i64>, BumpError> {
    if keys.is_empty() {
        return Ok(None);
    }
    edit(path, |db| plan_deletions(db, keys)).map(Some)
}

/// Opens the database, plans one transaction on it, writes it as bbolt commits.
fn edit<T>(
    path: &Path,
    plan: impl FnOnce(&Db<'_>) -> Result<(Commit, T), BumpError>,
) -> Result<T, BumpError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc_o_nofollow())
        .open(path)?;
    // SAFETY: the file is a private copy under the restore's scratch directory; nothing else
    // writes it while it is mapped, and the map is dropped before this function writes.
    let map = unsafe { memmap2::Mmap::map(&file)? };
    if map.len() % 512 == 32 {
        return Err(BumpError::HasTrailer(path.display().to_string()));
    }
    let db = Db::open(&map)?;
    let (commit, out) = plan(&db)?;
    drop(map);
    for (pgid, bytes) in &commit.pages {
        file.write_all_at(bytes, pgid * commit.page_size)?;
    }
    file.sync_all()?;
    file.write_all_at(&commit.meta, commit.meta_slot * commit.page_size)?;
    file.sync_all()?;
    Ok(out)
}

fn libc_o_nofollow() -> i32 {
    rustix::fs::OFlags::NOFOLLOW.bits() as i32
}

/// What a bump writes: new pages, then the meta page.
struct Commit {
    page_size: u64,
    pages: Vec<(u64, Vec<u8>)>,
    meta_slot: u64,
    meta: Vec<u8>,
}

fn plan(db: &Db<'_>, amount: u64) -> Result<(Commit, Bumped), BumpError> {
    let mut tx = Tx::new(db);
    let root = Ref::Page(db.meta.root);
    let (key_root, key_seq) = tx.bucket(&root, KEY_BUCKET)?;
    let (meta_root, meta_seq) = tx.bucket(&root, META_BUCKET)?;
    let latest = tx.head(&key_root, &meta_root)?;
    let bumped = i64::try_from(amount)
        .ok()
        .and_then(|a| latest.checked_add(a))
        .ok_or(BumpError::TooLarge { latest, amount })?;
    let rev = revision_key(bumped);
    let key_root = tx.put(key_root, &rev, &[], 0, 0)?;
    let meta_root = tx.put(meta_root, SCHEDULED_COMPACT, &rev, 0, 0)?;
    let meta_root = tx.put(Ref::Page(meta_root), FINISHED_COMPACT, &rev, 0, 0)?;
    let root = tx.put(
        root,
        KEY_BUCKET,
        &bucket_header(key_root, key_seq),
        BUCKET_LEAF_FLAG,
        0,
    )?;
    let root = tx.put(
        Ref::Page(root),
        META_BUCKET,
        &bucket_header(meta_root, meta_seq),
        BUCKET_LEAF_FLAG,
        0,
    )?;
    Ok((tx.commit(root)?, Bumped { latest, bumped }))
}

fn plan_deletions(db: &Db<'_>, keys: &[Vec<u8>]) -> Result<(Commit, i64), BumpError> {
    let mut tx = Tx::new(db);
    let root = Ref::Page(db.meta.root);
    let (mut key_root, key_seq) = tx.bucket(&root, KEY_BUCKET)?;
    let (meta_root, _) = tx.bucket(&root, META_BUCKET)?;
    let latest = tx.head(&key_root, &meta_root)?;
    let rev = latest
        .checked_add(1)
        .ok_or(BumpError::TooLarge { latest, amount: 1 })?;
    let mut key_page = db.meta.root; // replaced below: `keys` is never empty here
    for (sub, key) in keys.iter().enumerate() {
        let mut k = revision_key(rev);
        k[9..17].copy_from_slice(&(sub as i64).to_be_bytes());
        k.push(b't');
        key_page = tx.put(key_root, &k, &tombstone_value(key), 0, 0)?;
        key_root = Ref::Page(key_page);
    }
    let root = tx.put(
        root,
        KEY_BUCKET,
        &bucket_header(key_page, key_seq),
        BUCKET_LEAF_FLAG,
        0,
    )?;
    Ok((tx.commit(root)?, rev))
}

/// The `mvccpb.KeyValue` of a tombstone: the key alone (field 1), as etcd writes it.
fn tombstone_value(key: &[u8]) -> Vec<u8> {
    let mut v = vec![0x0a];
    let mut n = key.len() as u64;
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            v.push(b);
            break;
        }
        v.push(b | 0x80);
    }
    v.extend_from_slice(key);
    v
}

/// etcd's 17-byte revision key: main (big-endian), `_`, sub 0.
fn revision_key(main: i64) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.extend_from_slice(&main.to_be_bytes());
    k.push(b'_');
    k.extend_from_slice(&0i64.to_be_bytes());
    k
}

/// The main revision of a revision key (0 when it is too short to be one).
fn main_of(k: &[u8]) -> i64 {
    k.get(..8)
        .map_or(0, |b| i64::from_be_bytes(b.try_into().expect("8 bytes")))
}

fn bucket_header(root: u64, sequence: u64) -> Vec<u8> {
    let mut v = root.to_le_bytes().to_vec();
    v.extend_from_slice(&sequence.to_le_bytes());
    v
}

/// Where a tree starts: a page (of the file, or written by this transaction) or inline bytes.
#[derive(Clone)]
enum Ref {
    Page(u64),
    Inline(Vec<u8>),
}

/// One write transaction: pages written so far by page id, and the next free page.
struct Tx<'d, 'a> {
    db: &'d Db<'a>,
    next: u64,
    written: BTreeMap<u64, Node>,
}

impl<'d, 'a> Tx<'d, 'a> {
    fn new(db: &'d Db<'a>) -> Self {
        Tx {
            db,
            next: db.meta.pgid,
            written: BTreeMap::new(),
        }
    }

    /// The head revision as etcd computes it on start: the newest entry of `key`, or the
    /// compaction marks when they are higher.
    fn head(&self, key_root: &Ref, meta_root: &Ref) -> Result<i64, BumpError> {
        let mut latest = self
            .last_key(key_root.clone(), 0)?
            .map_or(0, |k| main_of(&k));
        for mark in [SCHEDULED_COMPACT, FINISHED_COMPACT] {
            if let Some((_, v)) = self.get(meta_root.clone(), mark, 0)? {
                latest = latest.max(main_of(&v));
            }
        }
        Ok(latest)
    }

    /// The pages written and the meta page that makes `root` the tree in force (txid + 1, in
    /// the slot bbolt would use, freelist marked unsynced).
    fn commit(self, root: u64) -> Result<Commit, BumpError> {
        let db = self.db;
        let ps = db.meta.page_size as usize;
        let pages = self
            .written
            .iter()
            .map(|(id, n)| encode(*id, n, ps).map(|b| (*id, b)))
            .collect::<Result<_, _>>()?;
        let old = db.meta_page()?;
        let txid = db.meta.txid + 1;
        let meta_slot = txid % 2;
        let mut meta = old.to_vec();
        meta[0..8].copy_from_slice(&meta_slot.to_le_bytes());
        meta[32..40].copy_from_slice(&root.to_le_bytes());
        meta[48..56].copy_from_slice(&NO_FREELIST.to_le_bytes());
        meta[56..64].copy_from_slice(&self.next.to_le_bytes());
        meta[64..72].copy_from_slice(&txid.to_le_bytes());
        let sum = fnv1a64(&meta[16..72]);
        meta[72..80].copy_from_slice(&sum.to_le_bytes());
        Ok(Commit {
            page_size: ps as u64,
            pages,
            meta_slot,
            meta,
        })
    }

    fn load(&self, at: Ref) -> Result<Node, BumpError> {
        Ok(match at {
            Ref::Page(id) => match self.written.get(&id) {
                Some(n) => n.clone(),
                None => self.db.node(BucketRoot::Page(id))?,
            },
            Ref::Inline(bytes) => self.db.node(BucketRoot::Inline(&bytes))?,
        })
    }

    fn deeper(depth: usize, at: u64) -> Result<usize, BumpError> {
        if depth >= MAX_DEPTH {
            return Err(DbError::TooDeep { pgid: at }.into());
        }
        Ok(depth + 1)
    }

    /// The value of `key` in the tree at `at`.
    fn get(&self, at: Ref, key: &[u8], depth: usize) -> Result<Option<(u32, Vec<u8>)>, BumpError> {
        match self.load(at)? {
            Node::Leaf(es) => Ok(es
                .into_iter()
                .find(|(_, k, _)| k == key)
                .map(|(f, _, v)| (f, v))),
            Node::Branch(cs) => match child_for(&cs, key) {
                Some(c) => self.get(Ref::Page(c), key, Self::deeper(depth, c)?),
                None => Ok(None),
            },
        }
    }

    /// A top-level bucket's tree and sequence number.
    fn bucket(&self, root: &Ref, name: &'static [u8]) -> Result<(Ref, u64), BumpError> {
        let missing = || BumpError::NoBucket(std::str::from_utf8(name).unwrap_or("?"));
        let (_, v) = self
            .get(root.clone(), name, 0)?
            .filter(|(f, _)| f & BUCKET_LEAF_FLAG != 0)
            .ok_or_else(missing)?;
        let r = match bucket_root(name, &v)? {
            BucketRoot::Page(id) => Ref::Page(id),
            BucketRoot::Inline(page) => Ref::Inline(page.to_vec()),
        };
        Ok((
            r,
            u64::from_le_bytes(v[8..16].try_into().expect("header checked")),
        ))
    }

    /// The greatest key in the tree at `at`.
    fn last_key(&self, at: Ref, depth: usize) -> Result<Option<Vec<u8>>, BumpError> {
        match self.load(at)? {
            Node::Leaf(es) => Ok(es.into_iter().last().map(|(_, k, _)| k)),
            Node::Branch(cs) => match cs.last() {
                Some(&(_, c)) => self.last_key(Ref::Page(c), Self::deeper(depth, c)?),
                None => Ok(None),
            },
        }
    }

    /// Puts `key` = `value` into the tree at `at`, copying the path to it; the new root.
    fn put(
        &mut self,
        at: Ref,
        key: &[u8],
        value: &[u8],
        flags: u32,
        depth: usize,
    ) -> Result<u64, BumpError> {
        let node = match self.load(at)? {
            Node::Leaf(mut es) => {
                let entry = (flags, key.to_vec(), value.to_vec());
                match es.binary_search_by(|(_, k, _)| k.as_slice().cmp(key)) {
                    Ok(i) => es[i] = entry,
                    Err(i) => es.insert(i, entry),
                }
                Node::Leaf(es)
            }
            Node::Branch(mut cs) => {
                let i = child_index(&cs, key).ok_or(DbError::BadPage {
                    pgid: 0,
                    reason: "an empty branch page".into(),
                })?;
                let c = cs[i].1;
                cs[i].1 = self.put(Ref::Page(c), key, value, flags, Self::deeper(depth, c)?)?;
                if key < cs[i].0.as_slice() {
                    cs[i].0 = key.to_vec();
                }
                Node::Branch(cs)
            }
        };
        Ok(self.alloc(node))
    }

    fn alloc(&mut self, node: Node) -> u64 {
        let ps = self.db.meta.page_size as usize;
        let id = self.next;
        self.next += encoded_len(&node).div_ceil(ps) as u64;
        self.written.insert(id, node);
        id
    }
}

/// The child a branch sends `key` to, as bbolt searches: the last whose first key ≤ `key`,
/// else the first.
fn child_index(cs: &[(Vec<u8>, u64)], key: &[u8]) -> Option<usize> {
    if cs.is_empty() {
        return None;
    }
    Some(match cs.binary_search_by(|(k, _)| k.as_slice().cmp(key)) {
        Ok(i) => i,
        Err(0) => 0,
        Err(i) => i - 1,
    })
}

fn child_for(cs: &[(Vec<u8>, u64)], key: &[u8]) -> Option<u64> {
    child_index(cs, key).map(|i| cs[i].1)
}

fn encoded_len(node: &Node) -> usize {
    PAGE_HEADER
        + match node {
            Node::Leaf(es) => es
                .iter()
                .map(|(_, k, v)| ELEMENT + k.len() + v.len())
                .sum::<usize>(),
            Node::Branch(cs) => cs.iter().map(|(k, _)| ELEMENT + k.len()).sum(),
        }
}

/// A node as bbolt lays out a page: header, elements, then keys and values; padded to whole
/// pages, the extra ones counted as overflow.
fn encode(id: u64, node: &Node, ps: usize) -> Result<Vec<u8>, BumpError> {
    let pages = encoded_len(node).div_ceil(ps);
    let mut buf = vec![0u8; pages * ps];
    let (flags, count) = match node {
        Node::Leaf(es) => (LEAF, es.len()),
        Node::Branch(cs) => (BRANCH, cs.len()),
    };
    let count16 = u16::try_from(count).map_err(|_| BumpError::PageFull(count))?;
    buf[0..8].copy_from_slice(&id.to_le_bytes());
    buf[8..10].copy_from_slice(&flags.to_le_bytes());
    buf[10..12].copy_from_slice(&count16.to_le_bytes());
    buf[12..16].copy_from_slice(&((pages - 1) as u32).to_le_bytes());
    let mut data = PAGE_HEADER + count * ELEMENT;
    let put = |buf: &mut [u8], off: usize, b: &[u8]| {
        buf[off..off + b.len()].copy_from_slice(b);
    };
    for i in 0..count {
        let e = PAGE_HEADER + i * ELEMENT;
        let pos = ((data - e) as u32).to_le_bytes();
        match node {
            Node::Leaf(es) => {
                let (f, k, v) = &es[i];
                put(&mut buf, e, &f.to_le_bytes());
                put(&mut buf, e + 4, &pos);
                put(&mut buf, e + 8, &(k.len() as u32).to_le_bytes());
                put(&mut buf, e + 12, &(v.len() as u32).to_le_bytes());
                put(&mut buf, data, k);
                put(&mut buf, data + k.len(), v);
                data += k.len() + v.len();
            }
            Node::Branch(cs) => {
                let (k, child) = &cs[i];
                put(&mut buf, e, &pos);
                put(&mut buf, e + 4, &(k.len() as u32).to_le_bytes());
                put(&mut buf, e + 8, &child.to_le_bytes());
                put(&mut buf, data, k);
                data += k.len();
            }
        }
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    //! An etcd-shaped bbolt file built by hand (a `key` bucket whose tree is a branch over two
    //! leaves, an inline `meta` bucket), bumped, and read back with the snapshot reader.

    use super::*;
    use crate::snapshot::db::tests::{PS, leaf_into};
    use crate::snapshot::meta::tests::{fake_image, set_root};
    use crate::snapshot::mvcc;
    use proptest::prelude::*;

    fn header(img: &mut [u8], pgid: usize, flags: u16, count: u16) {
        let o = pgid * PS;
        img[o..o + 8].copy_from_slice(&(pgid as u64).to_le_bytes());
        img[o + 8..o + 10].copy_from_slice(&flags.to_le_bytes());
        img[o + 10..o + 12].copy_from_slice(&count.to_le_bytes());
    }

    fn kv(key: &str, value: &str, rev: i64) -> Vec<u8> {
        // mvccpb.KeyValue: key (1), create_revision (2), mod_revision (3), version (4), value (5)
        let mut b = vec![0x0a, key.len() as u8];
        b.extend_from_slice(key.as_bytes());
        b.extend_from_slice(&[
            0x10,
            rev as u8,
            0x18,
            rev as u8,
            0x20,
            1,
            0x2a,
            value.len() as u8,
        ]);
        b.extend_from_slice(value.as_bytes());
        b
    }

    /// Pages: 2 root leaf, 3 branch of `key`, 4 and 5 its leaves (revisions 2-3 and 4).
    fn etcd_like() -> Vec<u8> {
        let mut img = fake_image(PS, 6, 9);
        set_root(&mut img, PS, 2);
        let mut meta = vec![0u8; 16 + 200];
        meta[16 + 8..16 + 10].copy_from_slice(&LEAF.to_le_bytes());
        meta[16 + 10..16 + 12].copy_from_slice(&1u16.to_le_bytes());
        leaf_into(
            &mut meta[16..],
            &[(0, b"consistent_index", &[0, 0, 0, 0, 0, 0, 0, 7])],
        );
        let mut key = vec![0u8; 16];
        key[0..8].copy_from_slice(&3u64.to_le_bytes());
        key[8..16].copy_from_slice(&5u64.to_le_bytes()); // a sequence, kept
        header(&mut img, 2, LEAF, 2);
        leaf_into(
            &mut img[2 * PS..3 * PS],
            &[(1, b"key", &key), (1, b"meta", &meta)],
        );
        let (r2, r3, r4) = (revision_key(2), revision_key(3), revision_key(4));
        header(&mut img, 3, BRANCH, 2);
        let b = &mut img[3 * PS..4 * PS];
        let data = PAGE_HEADER + 2 * ELEMENT;
        for (i, (k, child)) in [(&r2, 4u64), (&r4, 5u64)].into_iter().enumerate() {
            let e = PAGE_HEADER + i * ELEMENT;
            let at = data + i * 17;
            b[e..e + 4].copy_from_slice(&((at - e) as u32).to_le_bytes());
            b[e + 4..e + 8].copy_from_slice(&17u32.to_le_bytes());
            b[e + 8..e + 16].copy_from_slice(&child.to_le_bytes());
            b[at..at + 17].copy_from_slice(k);
        }
        header(&mut img, 4, LEAF, 2);
        let (a, b2) = (kv("/registry/a", "1", 2), kv("/registry/b", "2", 3));
        leaf_into(&mut img[4 * PS..5 * PS], &[(0, &r2, &a), (0, &r3, &b2)]);
        header(&mut img, 5, LEAF, 1);
        let c = kv("/registry/c", "3", 4);
        leaf_into(&mut img[5 * PS..6 * PS], &[(0, &r4, &c)]);
        img
    }

    fn write(img: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db");
        std::fs::write(&p, img).unwrap();
        (dir, p)
    }

    fn entries(db: &Db<'_>, bucket: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut v = Vec::new();
        db.for_each(db.bucket(bucket).unwrap().unwrap(), |k, val, _| {
            v.push((k.to_vec(), val.to_vec()));
            Ok(())
        })
        .unwrap();
        v
    }

    #[test]
    fn adds_the_bumped_revision_and_the_compaction_marks_keeping_everything_else() {
        let img = etcd_like();
        let before = Db::open(&img).unwrap();
        let (old_keys, old_meta) = (entries(&before, b"key"), entries(&before, b"meta"));
        let (_d, p) = write(&img);
        let b = bump_revision(&p, 1_000_000_000).unwrap();
        assert_eq!(
            b,
            Bumped {
                latest: 4,
                bumped: 1_000_000_004
            }
        );
        let after = std::fs::read(&p).unwrap();
        let db = Db::open(&after).unwrap();
        assert_eq!(db.meta.txid, 10, "one transaction");
        assert_eq!(db.meta.freelist, NO_FREELIST);
        let keys = entries(&db, b"key");
        assert_eq!(&keys[..3], &old_keys[..]);
        assert_eq!(keys[3], (revision_key(1_000_000_004), Vec::new()));
        let meta = entries(&db, b"meta");
        let mark = revision_key(1_000_000_004);
        assert!(meta.contains(&old_meta[0]));
        assert!(meta.contains(&(SCHEDULED_COMPACT.to_vec(), mark.clone())));
        assert!(meta.contains(&(FINISHED_COMPACT.to_vec(), mark)));
        // The sequence of the key bucket is kept.
        let tx = Tx::new(&db);
        assert_eq!(
            tx.bucket(&Ref::Page(db.meta.root), KEY_BUCKET).unwrap().1,
            5
        );
        // The MVCC reader sees the same objects at the bumped head revision.
        let ks = mvcc::keyspace(&db).unwrap();
        assert_eq!(ks.head_revision(), 1_000_000_004);
        let live: Vec<_> = ks.iter().map(|kv| kv.key.to_vec()).collect();
        assert_eq!(live.len(), 3, "{live:?}");
    }

    #[test]
    fn a_second_bump_counts_from_the_first() {
        let (_d, p) = write(&etcd_like());
        bump_revision(&p, 100).unwrap();
        let b = bump_revision(&p, 100).unwrap();
        assert_eq!((b.latest, b.bumped), (104, 204));
        let after = std::fs::read(&p).unwrap();
        assert_eq!(Db::open(&after).unwrap().meta.txid, 11);
    }

    #[test]
    fn deleted_keys_are_tombstones_at_the_next_revision_after_a_bump() {
        let (_d, p) = write(&etcd_like());
        bump_revision(&p, 100).unwrap();
        let keys = [b"/registry/a".to_vec(), b"/registry/c".to_vec()];
        assert_eq!(delete_keys(&p, &keys).unwrap(), Some(105));
        assert_eq!(delete_keys(&p, &[]).unwrap(), None, "nothing to delete");
        let after = std::fs::read(&p).unwrap();
        let db = Db::open(&after).unwrap();
        assert_eq!(db.meta.txid, 11, "one transaction each");
        let ks = mvcc::keyspace(&db).unwrap();
        assert_eq!(ks.head_revision(), 105);
        assert_eq!(ks.compact_revision, 104, "the compaction mark stays");
        let live: Vec<_> = ks.iter().map(|kv| kv.key.to_vec()).collect();
        assert_eq!(live, vec![b"/registry/b".to_vec()]);
        let entries = entries(&db, b"key");
        let (k, v) = &entries[entries.len() - 1];
        let rev = mvcc::parse_revision(k).unwrap();
        assert_eq!((rev.main, rev.sub, rev.tombstone), (105, 1, true));
        assert_eq!(mvcc::decode_kv(v).unwrap().key, b"/registry/c");
    }

    #[test]
    fn refuses_what_it_must_not_change() {
        let (_d, p) = write(&etcd_like());
        assert!(matches!(
            bump_revision(&p, u64::MAX),
            Err(BumpError::TooLarge { .. })
        ));
        let mut with_trailer = etcd_like();
        with_trailer.extend_from_slice(&[0u8; 32]);
        let (_d2, t) = write(&with_trailer);
        assert!(matches!(
            bump_revision(&t, 1),
            Err(BumpError::HasTrailer(_))
        ));
        let link = p.with_file_name("link");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        assert!(bump_revision(&link, 1).is_err(), "a link is not followed");
        let untouched = std::fs::read(&p).unwrap();
        assert_eq!(untouched, etcd_like());
    }

    proptest! {
        #[test]
        fn a_corrupt_file_is_an_error_never_a_panic(pos in 0usize..(6 * PS), len in 1usize..64, byte in any::<u8>()) {
            let mut img = etcd_like();
            for b in &mut img[pos..(pos + len).min(6 * PS)] {
                *b = byte;
            }
            let (_d, p) = write(&img);
            let _ = bump_revision(&p, 1000);
        }
    }
}
