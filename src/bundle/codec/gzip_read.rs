//! Parallel gunzip of the streams `gzip_write` writes: independent members, each with the same
//! fixed 10-byte header. The compressed stream is cut at every occurrence of that header and
//! the pieces are inflated on worker threads (libdeflate, whole members), in order.
//!
//! A cut is only a guess (the header bytes may also occur inside compressed data), so every
//! piece must decode as exactly one whole gzip member — consumed to its last byte, CRC and
//! length matching — into at most `MAX_MEMBER_OUT` bytes. At the first piece that does not,
//! and for any stream whose first member has optional header fields (not ours: GNU gzip with a
//! file name, say), decoding continues sequentially with `MultiGzDecoder` from that piece on,
//! so the output is always exactly what a sequential reader would produce. Memory stays
//! bounded: a piece longer than `MAX_PIECE` also switches to sequential decoding.

use std::collections::VecDeque;
use std::io::{self, Cursor, Read};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

use flate2::read::MultiGzDecoder;

/// Largest compressed piece handed to a worker (ours are ~1 MiB at most).
const MAX_PIECE: usize = 8 << 20;
/// Largest output of one piece (ours are exactly `gzip_write::BLOCK_SIZE` or less).
const MAX_MEMBER_OUT: usize = 4 << 20;
const READ_CHUNK: usize = 1 << 20;
/// Pieces queued per worker, so that neither the workers nor the reader wait on each other;
/// also how many spare buffers of each kind are kept for reuse.
const IN_FLIGHT_PER_WORKER: usize = 4;

type Piece = Arc<Vec<u8>>;
/// Spent output buffers, handed back to the workers so that steady state allocates nothing.
type Pool = Arc<Mutex<Vec<Vec<u8>>>>;

struct Worker {
    jobs: Option<mpsc::Sender<Piece>>,
    results: mpsc::Receiver<Option<Vec<u8>>>,
    handle: Option<JoinHandle<()>>,
}

/// A libdeflate decompressor: whole-member gunzip, about 1.4× zlib-rs's speed on bundle data.
struct Inflater(NonNull<libdeflate_sys::libdeflate_decompressor>);

// SAFETY: a decompressor is plain memory used by one thread at a time (`&mut self`).
unsafe impl Send for Inflater {}

impl Inflater {
    fn new() -> Self {
        // SAFETY: no arguments; null only when out of memory.
        let d = unsafe { libdeflate_sys::libdeflate_alloc_decompressor() };
        Inflater(NonNull::new(d).expect("out of memory allocating a gunzip decompressor"))
    }

    /// Inflates `piece` as exactly one gzip member (consumed to its last byte, CRC and length
    /// checked, at most `MAX_MEMBER_OUT` bytes) into `out`; false when it is not one.
    fn member(&mut self, piece: &[u8], out: &mut Vec<u8>) -> bool {
        let Some(tail) = piece.len().checked_sub(4).map(|i| &piece[i..]) else {
            return false;
        };
        let want = u32::from_le_bytes(tail.try_into().expect("4 bytes")) as usize;
        if want > MAX_MEMBER_OUT {
            return false;
        }
        // A recycled buffer usually has this length already: no zeroing.
        out.resize(want, 0);
        let (mut used_in, mut produced) = (0usize, 0usize);
        // SAFETY: the pointers and lengths describe `piece` and `out` exactly; libdeflate
        // reads at most `piece.len()` bytes and writes at most `want` bytes.
        let r = unsafe {
            libdeflate_sys::libdeflate_gzip_decompress_ex(
                self.0.as_ptr(),
                piece.as_ptr().cast(),
                piece.len(),
                out.as_mut_ptr().cast(),
                want,
                &mut used_in,
                &mut produced,
            )
        };
        r == libdeflate_sys::libdeflate_result_LIBDEFLATE_SUCCESS
            && used_in == piece.len()
            && produced == want
    }
}

impl Drop for Inflater {
    fn drop(&mut self) {
        // SAFETY: allocated in `new`, freed once.
        unsafe { libdeflate_sys::libdeflate_free_decompressor(self.0.as_ptr()) }
    }
}

/// Inflates one piece as exactly one member into a pooled buffer; `None` when it is not one.
fn inflate_member(inflater: &mut Inflater, piece: &[u8], pool: &Pool) -> Option<Vec<u8>> {
    let mut out = pool
        .lock()
        .ok()
        .and_then(|mut p| p.pop())
        .unwrap_or_default();
    inflater.member(piece, &mut out).then_some(out)
}

enum Mode<R: Read> {
    Parallel(R),
    Sequential(Box<MultiGzDecoder<io::Chain<Cursor<Vec<u8>>, R>>>),
    Done,
}

/// A reader that gunzips on worker threads (see the module doc).
pub struct ParGzReader<R: Read> {
    mode: Mode<R>,
    header: Option<[u8; 10]>,
    /// Compressed bytes read but not yet cut into a piece (starts at a header).
    pending: Vec<u8>,
    /// Where input is read to before it joins `pending` (zeroed once, not at every read).
    chunk: Vec<u8>,
    /// Piece buffers the workers are done with.
    spare_pieces: Vec<Vec<u8>>,
    /// Where to resume searching for the next header in `pending`.
    searched: usize,
    eof: bool,
    workers: Vec<Worker>,
    next: usize,
    /// Pieces in flight, in order, with the worker holding each.
    in_flight: VecDeque<(usize, Piece)>,
    out: Vec<u8>,
    out_pos: usize,
    pool: Pool,
}

impl<R: Read> ParGzReader<R> {
    /// Decompresses `inner` on `threads` workers.
    pub fn new(inner: R, threads: usize) -> Self {
        let threads = threads.max(1);
        let pool: Pool = Arc::default();
        let workers = (0..threads)
            .map(|i| {
                let (jtx, jrx) = mpsc::channel::<Piece>();
                let (rtx, rrx) = mpsc::channel();
                let pool = pool.clone();
                let handle = std::thread::Builder::new()
                    .name(format!("gunzip-{i}"))
                    .spawn(move || {
                        let mut inflater = Inflater::new();
                        for p in jrx {
                            let out = inflate_member(&mut inflater, &p, &pool);
                            drop(p); // before answering, so the reader can reuse the buffer
                            if rtx.send(out).is_err() {
                                return;
                            }
                        }
                    })
                    .expect("spawning a gunzip worker thread");
                Worker {
                    jobs: Some(jtx),
                    results: rrx,
                    handle: Some(handle),
                }
            })
            .collect();
        ParGzReader {
            mode: Mode::Parallel(inner),
            header: None,
            pending: Vec::new(),
            chunk: Vec::new(),
            spare_pieces: Vec::new(),
            searched: 0,
            eof: false,
            workers,
            next: 0,
            in_flight: VecDeque::new(),
            out: Vec::new(),
            out_pos: 0,
            pool,
        }
    }

    /// Reads more compressed input into `pending`; false at end of input.
    fn fill(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if self.chunk.is_empty() {
            self.chunk = vec![0; READ_CHUNK];
        }
        let n = loop {
            let r = match &mut self.mode {
                Mode::Parallel(r) => r.read(&mut self.chunk),
                _ => unreachable!("only read in parallel mode"),
            };
            match r {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        self.pending.extend_from_slice(&self.chunk[..n]);
        if n == 0 {
            self.eof = true;
        }
        Ok(n > 0)
    }

    /// The next complete piece, if one can be cut; None at the end or when switching to
    /// sequential mode is needed (then `Err(())`).
    fn next_piece(&mut self) -> io::Result<Result<Option<Vec<u8>>, ()>> {
        loop {
            if self.header.is_none() {
                while self.pending.len() < 10 && self.fill()? {}
                // Too short to be ours (even empty: a gzip stream has at least one member):
                // the sequential decoder says what is wrong with it.
                if self.pending.len() < 10 || self.pending[..4] != [0x1f, 0x8b, 8, 0] {
                    return Ok(Err(()));
                }
                let mut h = [0u8; 10];
                h.copy_from_slice(&self.pending[..10]);
                self.header = Some(h);
                self.searched = 10;
            }
            let h = self.header.expect("set above");
            self.searched = self.searched.min(self.pending.len());
            if let Some(i) = memchr::memmem::find(&self.pending[self.searched..], &h) {
                let cut = self.searched + i;
                let mut piece = self.spare_pieces.pop().unwrap_or_default();
                piece.clear();
                piece.extend_from_slice(&self.pending[..cut]);
                self.pending.drain(..cut);
                self.searched = 10;
                return Ok(Ok(Some(piece)));
            }
            self.searched = self.pending.len().saturating_sub(9).max(10);
            if self.pending.len() > MAX_PIECE {
                return Ok(Err(()));
            }
            if !self.fill()? {
                if self.pending.is_empty() {
                    return Ok(Ok(None));
                }
                return Ok(Ok(Some(std::mem::take(&mut self.pending))));
            }
        }
    }

    /// Keeps up to `IN_FLIGHT_PER_WORKER` pieces per worker in flight.
    fn dispatch(&mut self) -> io::Result<Result<(), ()>> {
        while self.in_flight.len() < IN_FLIGHT_PER_WORKER * self.workers.len() {
            match self.next_piece()? {
                Ok(Some(p)) => {
                    let p = Arc::new(p);
                    let w = self.next;
                    self.workers[w]
                        .jobs
                        .as_ref()
                        .expect("workers live while parallel")
                        .send(p.clone())
                        .map_err(|_| io::Error::other("gunzip worker thread died"))?;
                    self.in_flight.push_back((w, p));
                    self.next = (self.next + 1) % self.workers.len();
                }
                Ok(None) => break,
                Err(()) => return Ok(Err(())),
            }
        }
        Ok(Ok(()))
    }

    /// Switches to sequential decoding from the oldest piece not yet output.
    fn go_sequential(&mut self) {
        let mut rest = Vec::new();
        for (_, p) in self.in_flight.drain(..) {
            rest.extend_from_slice(&p);
        }
        rest.extend_from_slice(&self.pending);
        self.pending = Vec::new();
        self.stop_workers();
        let inner = match std::mem::replace(&mut self.mode, Mode::Done) {
            Mode::Parallel(r) => r,
            _ => unreachable!("switching once"),
        };
        self.mode = Mode::Sequential(Box::new(MultiGzDecoder::new(
            Cursor::new(rest).chain(inner),
        )));
    }

    /// Refills `out`; false at the end of the stream.
    fn refill(&mut self) -> io::Result<bool> {
        if let Err(()) = self.dispatch()? {
            // Drain what is in flight first; the pieces after them go sequential below.
            if self.in_flight.is_empty() {
                self.go_sequential();
                return Ok(true);
            }
        }
        let Some((w, _)) = self.in_flight.front().cloned() else {
            return Ok(false);
        };
        let r = self.workers[w]
            .results
            .recv()
            .map_err(|_| io::Error::other("gunzip worker thread died"))?;
        match r {
            Some(out) => {
                let keep = IN_FLIGHT_PER_WORKER * self.workers.len();
                if let Some((_, piece)) = self.in_flight.pop_front()
                    && let Ok(buf) = Arc::try_unwrap(piece)
                    && self.spare_pieces.len() < keep
                {
                    self.spare_pieces.push(buf);
                }
                let spent = std::mem::replace(&mut self.out, out);
                if spent.capacity() > 0
                    && let Ok(mut p) = self.pool.lock()
                    && p.len() < keep
                {
                    p.push(spent);
                }
                self.out_pos = 0;
                Ok(true)
            }
            None => {
                // Not a whole member: discard the answers still coming and go sequential
                // from this piece on.
                for (w, _) in self.in_flight.iter().skip(1) {
                    let _ = self.workers[*w].results.recv();
                }
                self.go_sequential();
                Ok(true)
            }
        }
    }

    fn stop_workers(&mut self) {
        for w in &mut self.workers {
            w.jobs = None;
        }
        for w in &mut self.workers {
            if let Some(h) = w.handle.take() {
                let _ = h.join();
            }
        }
        self.workers.clear();
    }
}

impl<R: Read> Drop for ParGzReader<R> {
    fn drop(&mut self) {
        self.stop_workers();
    }
}

impl<R: Read> Read for ParGzReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Mode::Sequential(d) = &mut self.mode {
                return d.read(buf);
            }
            if matches!(self.mode, Mode::Done) {
                return Ok(0);
            }
            if self.out_pos < self.out.len() {
                let n = buf.len().min(self.out.len() - self.out_pos);
                buf[..n].copy_from_slice(&self.out[self.out_pos..self.out_pos + n]);
                self.out_pos += n;
                return Ok(n);
            }
            if !self.refill()? {
                return Ok(0);
            }
        }
    }
}

impl<R: Read> ParGzReader<R> {
    #[cfg(test)]
    fn is_sequential(&self) -> bool {
        matches!(self.mode, Mode::Sequential(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::codec::gzip_write::ParGzWriter;
    use proptest::prelude::*;
    use std::io::Write;

    fn pargz(data: &[u8], level: u32) -> Vec<u8> {
        let mut w = ParGzWriter::new(Vec::new(), level, 2);
        w.write_all(data).unwrap();
        w.finish().unwrap()
    }

    fn read_all(gz: &[u8], threads: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        ParGzReader::new(gz, threads).read_to_end(&mut out)?;
        Ok(out)
    }

    fn sample(n: usize) -> Vec<u8> {
        let mut x = 7u64;
        (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                b"0123456789abcdef"[(x >> 60) as usize]
            })
            .collect()
    }

    #[test]
    fn many_members_in_order() {
        let data = sample(5 * crate::bundle::codec::gzip_write::BLOCK_SIZE + 12345);
        for level in [1, 6] {
            assert_eq!(read_all(&pargz(&data, level), 2).unwrap(), data);
        }
    }

    #[test]
    fn a_false_header_inside_a_member_falls_back_and_stays_exact() {
        // Data that compresses to something containing the header bytes is hard to make, so
        // splice the header into stored (level 0) data: the cut lands mid-member.
        let mut data = sample(3 * crate::bundle::codec::gzip_write::BLOCK_SIZE);
        let gz = pargz(&data, 0);
        let header: Vec<u8> = gz[..10].to_vec();
        data[500_000..500_010].copy_from_slice(&header);
        let gz = pargz(&data, 0);
        let mut r = ParGzReader::new(&gz[..], 2);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
        assert!(r.is_sequential(), "the false cut was detected");
    }

    #[test]
    fn foreign_gzip_is_decoded_sequentially() {
        let data = sample(100_000);
        let mut enc = flate2::GzBuilder::new()
            .filename("x.txt")
            .write(Vec::new(), flate2::Compression::default());
        enc.write_all(&data).unwrap();
        let gz = enc.finish().unwrap();
        assert_eq!(read_all(&gz, 2).unwrap(), data);
    }

    #[test]
    fn truncated_or_corrupt_input_is_an_error_not_a_hang() {
        let data = sample(3 * crate::bundle::codec::gzip_write::BLOCK_SIZE);
        let gz = pargz(&data, 1);
        assert!(read_all(&gz[..gz.len() - 100], 2).is_err());
        let mut bad = gz.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0xff;
        assert!(read_all(&bad, 2).is_err());
        // like MultiGzDecoder: an empty stream is not gzip
        assert!(read_all(&[], 2).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn same_output_as_multigz(data in proptest::collection::vec(any::<u8>(), 0..40000), cut in 0usize..50000) {
            let gz = pargz(&data, 1);
            let mut want = Vec::new();
            let seq = MultiGzDecoder::new(&gz[..]).read_to_end(&mut want);
            prop_assert!(seq.is_ok());
            prop_assert_eq!(read_all(&gz, 2).unwrap(), want);
            // any truncation: error, never a panic
            let c = cut.min(gz.len());
            let _ = read_all(&gz[..c], 2);
        }
    }
}
