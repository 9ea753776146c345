//! Parallel gzip: the input is cut into fixed blocks, each compressed as an independent gzip
//! member on a worker thread, and the members are written out in order. Concatenated members are
//! a valid gzip file for every reader (RFC 1952 §2.2; `gzip -d`, `MultiGzDecoder`).
//!
//! Memory is bounded: at most `2 × threads` blocks are in flight. Block `i` goes to worker
//! `i % threads` and each worker answers in order, so results need no reordering buffer.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc;
use std::thread::JoinHandle;

use flate2::Compression;
use flate2::write::GzEncoder;

/// Input bytes per gzip member.
pub const BLOCK_SIZE: usize = 1 << 20;

struct Worker {
    jobs: Option<mpsc::Sender<Vec<u8>>>,
    results: mpsc::Receiver<io::Result<Vec<u8>>>,
    handle: Option<JoinHandle<()>>,
}

/// A writer that gzips on worker threads, one independent member per block.
pub struct ParGzWriter<W: Write> {
    /// `None` only after `finish` moved it out.
    inner: Option<W>,
    buf: Vec<u8>,
    workers: Vec<Worker>,
    next: usize,
    in_flight: VecDeque<usize>,
    max_in_flight: usize,
    members: u64,
    bytes_in: u64,
}

impl<W: Write> ParGzWriter<W> {
    /// Compresses into `inner` at `level` (0–9) on `threads` workers.
    pub fn new(inner: W, level: u32, threads: usize) -> Self {
        let threads = threads.max(1);
        let workers = (0..threads)
            .map(|i| {
                let (jtx, jrx) = mpsc::channel::<Vec<u8>>();
                let (rtx, rrx) = mpsc::channel();
                let handle = std::thread::Builder::new()
                    .name(format!("gzip-{i}"))
                    .spawn(move || {
                        for block in jrx {
                            let mut enc = GzEncoder::new(
                                Vec::with_capacity(block.len() / 2 + 64),
                                Compression::new(level),
                            );
                            let out = enc.write_all(&block).and_then(|_| enc.finish());
                            if rtx.send(out).is_err() {
                                return;
                            }
                        }
                    })
                    .expect("spawning a gzip worker thread");
                Worker {
                    jobs: Some(jtx),
                    results: rrx,
                    handle: Some(handle),
                }
            })
            .collect();
        ParGzWriter {
            inner: Some(inner),
            buf: Vec::with_capacity(BLOCK_SIZE),
            workers,
            next: 0,
            in_flight: VecDeque::new(),
            max_in_flight: 2 * threads,
            members: 0,
            bytes_in: 0,
        }
    }

    fn collect_one(&mut self) -> io::Result<()> {
        let Some(w) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let out = self.workers[w]
            .results
            .recv()
            .map_err(|_| io::Error::other("gzip worker thread died"))??;
        self.out()?.write_all(&out)
    }

    fn out(&mut self) -> io::Result<&mut W> {
        self.inner
            .as_mut()
            .ok_or_else(|| io::Error::other("gzip stream already finished"))
    }

    fn submit(&mut self) -> io::Result<()> {
        if self.in_flight.len() >= self.max_in_flight {
            self.collect_one()?;
        }
        let block = std::mem::replace(&mut self.buf, Vec::with_capacity(BLOCK_SIZE));
        let w = self.next;
        self.workers[w]
            .jobs
            .as_ref()
            .expect("workers live until finish")
            .send(block)
            .map_err(|_| io::Error::other("gzip worker thread died"))?;
        self.in_flight.push_back(w);
        self.next = (self.next + 1) % self.workers.len();
        self.members += 1;
        Ok(())
    }

    fn drain(&mut self) -> io::Result<()> {
        while !self.in_flight.is_empty() {
            self.collect_one()?;
        }
        Ok(())
    }

    /// Compresses what is left, writes every member and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        if !self.buf.is_empty() || self.members == 0 {
            self.submit()?;
        }
        self.drain()?;
        self.stop_workers();
        self.inner
            .take()
            .ok_or_else(|| io::Error::other("gzip stream already finished"))
    }

    /// Input bytes accepted so far.
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in
    }

    fn stop_workers(&mut self) {
        for w in &mut self.workers {
            w.jobs.take();
        }
        for w in &mut self.workers {
            if let Some(h) = w.handle.take() {
                let _ = h.join();
            }
        }
    }
}

impl<W: Write> Drop for ParGzWriter<W> {
    fn drop(&mut self) {
        self.stop_workers();
    }
}

impl<W: Write> Write for ParGzWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(BLOCK_SIZE - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        self.bytes_in += n as u64;
        if self.buf.len() == BLOCK_SIZE {
            self.submit()?;
        }
        Ok(n)
    }

    /// Pushes out everything buffered (as a possibly short member).
    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.submit()?;
        }
        self.drain()?;
        self.out()?.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::MultiGzDecoder;
    use proptest::prelude::*;
    use std::io::Read;

    fn round_trip(data: &[u8], threads: usize, write_size: usize) -> Vec<u8> {
        let mut w = ParGzWriter::new(Vec::new(), 1, threads);
        for c in data.chunks(write_size.max(1)) {
            w.write_all(c).unwrap();
        }
        let gz = w.finish().unwrap();
        let mut out = Vec::new();
        MultiGzDecoder::new(&gz[..]).read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn many_members_decode_in_order() {
        let data: Vec<u8> = (0..(3 * BLOCK_SIZE + 12345))
            .map(|i| (i % 251) as u8 ^ (i / 7919) as u8)
            .collect();
        for threads in [1, 2, 3] {
            assert_eq!(round_trip(&data, threads, 65536), data);
        }
    }

    #[test]
    fn empty_input_is_still_valid_gzip() {
        assert!(round_trip(&[], 2, 1).is_empty());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn any_bytes_round_trip(data in proptest::collection::vec(any::<u8>(), 0..20000), threads in 1usize..4, ws in 1usize..5000) {
            prop_assert_eq!(round_trip(&data, threads, ws), data);
        }
    }
}
