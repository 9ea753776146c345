//! Reading ahead on a thread of its own: the stage below (reading the store and decrypting)
//! runs on one core while the stages above (gunzip workers, tar, hashing, writing) work on what
//! it already produced. Chunks are recycled; at most `DEPTH` are waiting.
//!
//! An error from below reaches the consumer once, at its place in the stream, and every read
//! after it fails the same way. When the consumer is dropped the thread stops at its next chunk.

use std::io::{self, Read};
use std::sync::mpsc;
use std::thread::Scope;

const CHUNK: usize = 1 << 20;
const DEPTH: usize = 4;

type Filled = io::Result<(Vec<u8>, usize)>;

pub struct ReadAhead {
    chunks: mpsc::Receiver<Filled>,
    spent: mpsc::Sender<Vec<u8>>,
    cur: Vec<u8>,
    len: usize,
    pos: usize,
    end: Option<End>,
}

/// How the stream ended; every read after the end says it again.
enum End {
    Eof,
    Failed(io::ErrorKind, String),
}

impl ReadAhead {
    /// Starts reading `inner` on a thread of `scope`.
    pub fn spawn<'scope, R: Read + Send + 'scope>(
        scope: &'scope Scope<'scope, '_>,
        mut inner: R,
    ) -> Self {
        let (tx, chunks) = mpsc::sync_channel::<Filled>(DEPTH);
        let (spent, recycled) = mpsc::channel::<Vec<u8>>();
        scope.spawn(move || {
            loop {
                let mut buf = recycled.try_recv().unwrap_or_else(|_| vec![0; CHUNK]);
                let (n, err) = fill(&mut inner, &mut buf);
                if n > 0 && tx.send(Ok((buf, n))).is_err() {
                    return; // the consumer is gone
                }
                if n == 0 || err.is_some() {
                    // The end, said explicitly: a thread that died is not mistaken for it.
                    let _ = tx.send(err.map_or(Ok((Vec::new(), 0)), Err));
                    return;
                }
            }
        });
        ReadAhead {
            chunks,
            spent,
            cur: Vec::new(),
            len: 0,
            pos: 0,
            end: None,
        }
    }
}

/// Reads until `buf` is full or the input ends: the number of bytes read, and the error that
/// stopped it early, if one did.
fn fill(r: &mut impl Read, buf: &mut [u8]) -> (usize, Option<io::Error>) {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (n, Some(e)),
        }
    }
    (n, None)
}

impl Read for ReadAhead {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos < self.len {
                let n = out.len().min(self.len - self.pos);
                out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            match &self.end {
                Some(End::Eof) => return Ok(0),
                Some(End::Failed(kind, msg)) => return Err(io::Error::new(*kind, msg.clone())),
                None => {}
            }
            let next = self
                .chunks
                .recv()
                .unwrap_or_else(|_| Err(io::Error::other("the read-ahead thread died")));
            match next {
                Ok((_, 0)) => self.end = Some(End::Eof),
                Ok((buf, n)) => {
                    let old = std::mem::replace(&mut self.cur, buf);
                    if !old.is_empty() {
                        let _ = self.spent.send(old);
                    }
                    self.len = n;
                    self.pos = 0;
                }
                Err(e) => {
                    self.end = Some(End::Failed(e.kind(), e.to_string()));
                    return Err(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Yields `data` in odd-sized reads, then fails with `err` (if any) instead of ending.
    struct Source {
        data: Vec<u8>,
        pos: usize,
        err: Option<io::ErrorKind>,
    }

    impl Read for Source {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.pos == self.data.len() {
                return match self.err {
                    Some(k) => Err(io::Error::new(k, "broken below")),
                    None => Ok(0),
                };
            }
            let n = buf.len().min(self.data.len() - self.pos).min(70_001);
            buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    fn source(n: usize, err: Option<io::ErrorKind>) -> Source {
        Source {
            data: (0..n).map(|i| (i * 31 % 251) as u8).collect(),
            pos: 0,
            err,
        }
    }

    #[test]
    fn passes_every_byte_in_order() {
        for n in [0, 1, CHUNK - 1, CHUNK, 3 * CHUNK + 12_345] {
            let want = source(n, None).data;
            let got = std::thread::scope(|s| {
                let mut out = Vec::new();
                ReadAhead::spawn(s, source(n, None))
                    .read_to_end(&mut out)
                    .unwrap();
                out
            });
            assert_eq!(got, want, "{n} bytes");
        }
    }

    #[test]
    fn an_error_below_arrives_after_the_data_before_it_and_stays() {
        std::thread::scope(|s| {
            let mut r = ReadAhead::spawn(s, source(CHUNK + 10, Some(io::ErrorKind::UnexpectedEof)));
            let mut out = Vec::new();
            let e = r.read_to_end(&mut out).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
            assert_eq!(
                out.len(),
                CHUNK + 10,
                "everything before the error was delivered"
            );
            let again = r.read(&mut [0u8; 8]).unwrap_err();
            assert_eq!(again.kind(), io::ErrorKind::UnexpectedEof);
        });
    }

    #[test]
    fn a_consumer_that_stops_early_does_not_hang_the_scope() {
        std::thread::scope(|s| {
            let mut r = ReadAhead::spawn(s, source(40 * CHUNK, None));
            let mut first = [0u8; 100];
            r.read_exact(&mut first).unwrap();
            drop(r);
        });
    }
}
