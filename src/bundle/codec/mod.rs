//! The one place that names a compressor: how a bundle's tar is compressed on the way out and
//! decompressed on the way in. New bundles are zstd (multi-threaded frames on every core);
//! gzip, written as parallel independent members (`gzip_write`) and read back in parallel
//! (`gzip_read`), stays readable forever and writable on request. The reader tells the codec
//! from the first bytes of the decrypted stream (the magic numbers), never from a file name.
//! A new codec is a variant of [`Codec`], [`Encoder`] and [`Decoder`] here.

pub mod gzip_read;
pub mod gzip_write;

use std::io::{self, BufRead, BufReader, Read, Write};

use clap::ValueEnum;
use gzip_read::ParGzReader;
use gzip_write::ParGzWriter;

/// A bundle compressor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// Zstandard, multi-threaded: several times smaller than gzip at the same speed (the default).
    Zstd,
    /// Parallel gzip members (RFC 1952), readable by every gzip tool.
    Gzip,
}

/// The codec new bundles are written with unless configured.
pub const DEFAULT_CODEC: Codec = Codec::Zstd;

/// The first bytes of a gzip stream (RFC 1952: ID1, ID2).
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// The first bytes of a zstd frame (RFC 8878, little-endian 0xFD2FB528).
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// log2 of the zstd window: 4 MiB.
const ZSTD_WINDOW_LOG: u32 = 22;
/// Bytes each zstd worker compresses at a time: 6 MiB keeps a backup's peak RSS under 64 MiB
/// with the etcd client's HashKV connections open beside it (8 MiB measured 65 MiB).
const ZSTD_JOB_SIZE: u32 = 6 << 20;
/// At most this many zstd workers: each holds ~15 MiB (a job, its window, its output), and two
/// kept ahead of etcd's snapshot stream in `scripts/bench-backup.sh` (1.2 GB in 3.5 s, where
/// `etcdctl snapshot save` alone took 4.7 s); more would only add memory on a many-core master.
const ZSTD_MAX_WORKERS: usize = 2;

/// Number of compression threads: one per core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

impl Codec {
    /// The name the manifest, the record and the flags use.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Zstd => "zstd",
            Codec::Gzip => "gzip",
        }
    }

    /// The levels this codec takes, for the error that names them.
    pub fn levels(self) -> std::ops::RangeInclusive<u32> {
        match self {
            Codec::Zstd => 1..=19,
            Codec::Gzip => 1..=9,
        }
    }

    /// The level used unless configured: what keeps pace with etcd's stream on two cores.
    pub fn default_level(self) -> u32 {
        match self {
            Codec::Zstd => 3,
            Codec::Gzip => 1,
        }
    }

    /// The codec whose magic number `head` starts with.
    pub fn detect(head: &[u8]) -> Option<Codec> {
        if head.starts_with(&ZSTD_MAGIC) {
            Some(Codec::Zstd)
        } else if head.starts_with(&GZIP_MAGIC) {
            Some(Codec::Gzip)
        } else {
            None
        }
    }

    /// Compresses into `out` at `level` with `threads` workers.
    pub fn encoder<W: Write>(self, out: W, level: u32, threads: usize) -> io::Result<Encoder<W>> {
        Ok(match self {
            Codec::Gzip => Encoder::Gzip(ParGzWriter::new(out, level, threads)),
            Codec::Zstd => {
                use zstd::stream::raw::CParameter;
                let mut z = zstd::stream::write::Encoder::new(out, level as i32)?;
                z.include_checksum(true)?;
                // A 4 MiB window (level 3 has 2 MiB): measured ~10 % smaller on etcd snapshots
                // of Kubernetes objects, and what every reader must hold.
                z.set_parameter(CParameter::WindowLog(ZSTD_WINDOW_LOG))?;
                if threads > 1 {
                    // Each worker's job sees the whole window before it (overlap log 9), so
                    // splitting the stream over the cores costs almost no ratio.
                    // Jobs of 6 MiB (the default is 16): ~40 % of the memory for ~1 % of size.
                    z.multithread(threads.min(ZSTD_MAX_WORKERS) as u32)?;
                    z.set_parameter(CParameter::OverlapSizeLog(9))?;
                    z.set_parameter(CParameter::JobSize(ZSTD_JOB_SIZE))?;
                }
                Encoder::Zstd(z)
            }
        })
    }
}

/// A compressing writer of some codec.
pub enum Encoder<W: Write> {
    /// Parallel gzip.
    Gzip(ParGzWriter<W>),
    /// zstd, multi-threaded.
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    /// Flushes everything and returns the inner writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Gzip(w) => w.finish(),
            Encoder::Zstd(w) => w.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Gzip(w) => w.write(buf),
            Encoder::Zstd(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Gzip(w) => w.flush(),
            Encoder::Zstd(w) => w.flush(),
        }
    }
}

/// A decompressing reader of a bundle's plaintext: the codec is read from the stream's first
/// bytes at the first read.
pub struct Decoder<R: Read> {
    state: State<R>,
    threads: usize,
}

enum State<R: Read> {
    /// Nothing read yet.
    Undetected(BufReader<R>),
    /// Parallel gunzip (falls back to sequential on members it did not write).
    Gzip(Box<ParGzReader<BufReader<R>>>),
    /// Sequential gunzip: one thread, for fuzzing and small inputs.
    GzipSequential(Box<flate2::read::MultiGzDecoder<BufReader<R>>>),
    /// zstd (every frame, in order).
    Zstd(zstd::stream::read::Decoder<'static, BufReader<R>>),
    /// Detection failed; kept so that every later read fails the same way.
    Failed,
}

impl<R: Read> Decoder<R> {
    /// Decompresses `input`, gzip on `threads` workers.
    pub fn parallel(input: R, threads: usize) -> Self {
        Decoder {
            state: State::Undetected(BufReader::with_capacity(256 * 1024, input)),
            threads: threads.max(1),
        }
    }

    /// Decompresses `input` on the calling thread.
    pub fn sequential(input: R) -> Self {
        Decoder {
            state: State::Undetected(BufReader::with_capacity(64 * 1024, input)),
            threads: 0,
        }
    }

    /// The codec of the stream, once the first read told it.
    pub fn codec(&self) -> Option<Codec> {
        match self.state {
            State::Gzip(_) | State::GzipSequential(_) => Some(Codec::Gzip),
            State::Zstd(_) => Some(Codec::Zstd),
            State::Undetected(_) | State::Failed => None,
        }
    }

    /// Reads the first bytes now, and tells the codec (`None`: neither; every read fails).
    pub fn detect_now(&mut self) -> io::Result<Option<Codec>> {
        if matches!(self.state, State::Undetected(_)) {
            self.detect()?;
        }
        Ok(self.codec())
    }

    fn detect(&mut self) -> io::Result<()> {
        let State::Undetected(mut input) = std::mem::replace(&mut self.state, State::Failed) else {
            return Ok(());
        };
        let head = input.fill_buf()?;
        let found = Codec::detect(head);
        self.state = match found {
            Some(Codec::Zstd) => State::Zstd(zstd::stream::read::Decoder::with_buffer(input)?),
            Some(Codec::Gzip) if self.threads == 0 => {
                State::GzipSequential(Box::new(flate2::read::MultiGzDecoder::new(input)))
            }
            Some(Codec::Gzip) => State::Gzip(Box::new(ParGzReader::new(input, self.threads))),
            None => {
                let what = if head.is_empty() {
                    "empty (neither zstd nor gzip)"
                } else {
                    "neither zstd nor gzip"
                };
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the decrypted bundle is {what}"),
                ));
            }
        };
        Ok(())
    }
}

impl<R: Read> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if matches!(self.state, State::Undetected(_)) {
            self.detect()?;
        }
        match &mut self.state {
            State::Gzip(r) => r.read(buf),
            State::GzipSequential(r) => r.read(buf),
            State::Zstd(r) => r.read(buf),
            State::Undetected(_) | State::Failed => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the decrypted bundle is neither zstd nor gzip",
            )),
        }
    }
}

/// The single-member `tar.gz` writer OpenShift's `static_kuberesources_<ts>.tar.gz` is made
/// with (`export-openshift`), at gzip's default level.
pub fn openshift_targz<W: Write>(out: W) -> flate2::write::GzEncoder<W> {
    flate2::write::GzEncoder::new(out, flate2::Compression::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        (0..400_000u32)
            .flat_map(|i| format!("key-{} value-{}\n", i % 977, i / 3).into_bytes())
            .collect()
    }

    #[test]
    fn every_codec_round_trips_and_is_told_by_its_bytes() {
        let data = sample();
        for codec in [Codec::Zstd, Codec::Gzip] {
            for threads in [1, 2] {
                let mut e = codec
                    .encoder(Vec::new(), codec.default_level(), threads)
                    .unwrap();
                e.write_all(&data).unwrap();
                let packed = e.finish().unwrap();
                assert_eq!(Codec::detect(&packed), Some(codec));
                assert!(packed.len() < data.len() / 2, "{codec:?} compresses");
                for mut d in [
                    Decoder::parallel(&packed[..], 2),
                    Decoder::sequential(&packed[..]),
                ] {
                    let mut back = Vec::new();
                    d.read_to_end(&mut back).unwrap();
                    assert!(back == data, "{codec:?} with {threads} threads");
                    assert_eq!(d.codec(), Some(codec));
                }
            }
        }
    }

    #[test]
    fn anything_else_is_refused_and_named() {
        for bad in [&b""[..], b"BZh91AY", b"\x1f\x8c not gzip"] {
            let mut out = Vec::new();
            let e = Decoder::parallel(bad, 2).read_to_end(&mut out).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData);
            assert!(e.to_string().contains("zstd"), "{e}");
        }
    }

    #[test]
    fn a_damaged_zstd_stream_fails() {
        let mut e = Codec::Zstd.encoder(Vec::new(), 3, 1).unwrap();
        e.write_all(&sample()).unwrap();
        let mut packed = e.finish().unwrap();
        let mid = packed.len() / 2;
        packed[mid] ^= 0x40;
        let mut out = Vec::new();
        assert!(
            Decoder::parallel(&packed[..], 2)
                .read_to_end(&mut out)
                .is_err()
        );
        packed.truncate(mid);
        assert!(
            Decoder::sequential(&packed[..])
                .read_to_end(&mut out)
                .is_err()
        );
    }
}
