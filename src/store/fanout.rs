//! One encrypted stream written to several stores at once, hashing and counting it on the way.
//! A store that fails is dropped (its upload discarded) while the others continue; the write
//! fails only when no store is left.

use std::io::{self, Write};

use sha2::{Digest, Sha256};

use crate::store::Upload;

pub struct FanOut {
    pub targets: Vec<(String, Option<Box<dyn Upload>>)>,
    pub failures: Vec<(String, String)>,
    hash: Sha256,
    pub bytes: u64,
}

impl FanOut {
    pub fn new(targets: Vec<(String, Box<dyn Upload>)>) -> Self {
        FanOut {
            targets: targets.into_iter().map(|(n, u)| (n, Some(u))).collect(),
            failures: Vec::new(),
            hash: Sha256::new(),
            bytes: 0,
        }
    }

    pub fn sha256(&self) -> String {
        hex::encode(self.hash.clone().finalize())
    }

    fn alive(&self) -> usize {
        self.targets.iter().filter(|(_, u)| u.is_some()).count()
    }

    fn each(
        &mut self,
        mut f: impl FnMut(&mut Box<dyn Upload>) -> io::Result<()>,
    ) -> io::Result<()> {
        for (name, slot) in &mut self.targets {
            if let Some(u) = slot
                && let Err(e) = f(u)
            {
                tracing::error!(store = %name, error = %e, "store failed; the backup continues to the other stores");
                self.failures.push((name.clone(), e.to_string()));
                *slot = None;
            }
        }
        if self.alive() == 0 {
            let why: Vec<String> = self
                .failures
                .iter()
                .map(|(n, e)| format!("{n}: {e}"))
                .collect();
            return Err(io::Error::other(format!(
                "every store failed: {}",
                why.join("; ")
            )));
        }
        Ok(())
    }
}

impl Write for FanOut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.each(|u| u.write_all(buf))?;
        self.hash.update(buf);
        self.bytes += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.each(|u| u.flush())
    }
}
