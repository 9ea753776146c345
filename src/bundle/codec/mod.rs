//! The one place that names a compressor: how a bundle's tar is compressed on the way out and
//! decompressed on the way in. Today that is gzip, written in parallel independent members
//! (`gzip_write`) and read back in parallel (`gzip_read`); a new codec is a file here and a
//! variant of [`Codec`], [`Encoder`] and [`Decoder`].

pub mod gzip_read;
pub mod gzip_write;

use std::io::{self, Read, Write};

use gzip_read::ParGzReader;
use gzip_write::ParGzWriter;

/// A bundle compressor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Parallel gzip members (RFC 1952), readable by every gzip tool.
    Gzip,
}

/// The codec new bundles are written with.
pub const DEFAULT_CODEC: Codec = Codec::Gzip;

/// The compression level used unless configured: fast enough to keep up with etcd's stream.
pub const DEFAULT_LEVEL: u32 = 1;

/// Number of compression threads: one per core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

impl Codec {
    /// The levels this codec takes, for the error that names them.
    pub fn levels(self) -> std::ops::RangeInclusive<u32> {
        match self {
            Codec::Gzip => 1..=9,
        }
    }

    /// Compresses into `out` at `level` with `threads` workers.
    pub fn encoder<W: Write>(self, out: W, level: u32, threads: usize) -> Encoder<W> {
        match self {
            Codec::Gzip => Encoder::Gzip(ParGzWriter::new(out, level, threads)),
        }
    }
}

/// A compressing writer of some codec.
pub enum Encoder<W: Write> {
    /// Parallel gzip.
    Gzip(ParGzWriter<W>),
}

impl<W: Write> Encoder<W> {
    /// Flushes everything and returns the inner writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Gzip(w) => w.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Gzip(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Gzip(w) => w.flush(),
        }
    }
}

/// A decompressing reader of a bundle's plaintext.
pub enum Decoder<R: Read> {
    /// Parallel gunzip (falls back to sequential on members it did not write).
    Gzip(ParGzReader<R>),
    /// Sequential gunzip: one thread, for fuzzing and small inputs.
    GzipSequential(flate2::read::MultiGzDecoder<R>),
}

impl<R: Read> Decoder<R> {
    /// Decompresses `input` on `threads` workers.
    pub fn parallel(input: R, threads: usize) -> Self {
        Decoder::Gzip(ParGzReader::new(input, threads))
    }

    /// Decompresses `input` on the calling thread.
    pub fn sequential(input: R) -> Self {
        Decoder::GzipSequential(flate2::read::MultiGzDecoder::new(input))
    }
}

impl<R: Read> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::Gzip(r) => r.read(buf),
            Decoder::GzipSequential(r) => r.read(buf),
        }
    }
}

/// The single-member `tar.gz` writer OpenShift's `static_kuberesources_<ts>.tar.gz` is made
/// with (`export-openshift`), at gzip's default level.
pub fn openshift_targz<W: Write>(out: W) -> flate2::write::GzEncoder<W> {
    flate2::write::GzEncoder::new(out, flate2::Compression::default())
}
