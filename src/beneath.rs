//! File operations below a directory that never follow a symlink: every path is walked one
//! component at a time from a directory descriptor with `openat(O_NOFOLLOW)`, files are
//! created with `O_CREAT|O_EXCL|O_NOFOLLOW`, and modes and owners are set on open descriptors
//! (`fchmod`/`fchown`) or with `AT_SYMLINK_NOFOLLOW`. A symlink anywhere on the way is an error
//! (`ELOOP`/`ENOTDIR`), whatever it points at. Paths given here are bundle paths already
//! normalised by `bundle::check` (relative, no `.`/`..`/empty components); anything else is
//! refused again here.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, Mode, OFlags};

/// A directory opened without following a symlink, and the root of every path given to it.
pub struct Beneath {
    root: OwnedFd,
}

const DIR_FLAGS: OFlags = OFlags::DIRECTORY
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC)
    .union(OFlags::RDONLY);

fn components(rel: &str) -> io::Result<Vec<&str>> {
    let parts: Vec<&str> = rel.split('/').collect();
    if rel.is_empty()
        || parts
            .iter()
            .any(|c| c.is_empty() || *c == "." || *c == "..")
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{rel:?} is not a plain relative path"),
        ));
    }
    Ok(parts)
}

/// Says which path a failure was about; a symlink on the way is named as such.
fn at(rel: &str, errno: rustix::io::Errno) -> io::Error {
    let e = io::Error::from(errno);
    let what = match errno {
        rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR => {
            "a symlink (never followed) or a file is in the way".to_owned()
        }
        _ => e.to_string(),
    };
    io::Error::new(e.kind(), format!("{rel}: {what}"))
}

impl Beneath {
    /// Opens `dir` itself without following a symlink at its last component.
    pub fn open(dir: &Path) -> io::Result<Self> {
        let root = rustix::fs::open(dir, DIR_FLAGS, Mode::empty()).map_err(|e| {
            let e = io::Error::from(e);
            io::Error::new(e.kind(), format!("{}: {e}", dir.display()))
        })?;
        Ok(Beneath { root })
    }

    /// The directory at `rel` (`""` is the root), creating missing components 0700 if `create`.
    pub fn dir(&self, rel: &str, create: bool) -> io::Result<OwnedFd> {
        let mut fd = self.root.try_clone()?;
        if rel.is_empty() {
            return Ok(fd);
        }
        for c in components(rel)? {
            fd = match rustix::fs::openat(&fd, c, DIR_FLAGS, Mode::empty()) {
                Ok(f) => f,
                Err(rustix::io::Errno::NOENT) if create => {
                    match rustix::fs::mkdirat(&fd, c, Mode::from_raw_mode(0o700)) {
                        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                        Err(e) => return Err(at(rel, e)),
                    }
                    rustix::fs::openat(&fd, c, DIR_FLAGS, Mode::empty()).map_err(|e| at(rel, e))?
                }
                Err(e) => return Err(at(rel, e)),
            };
        }
        Ok(fd)
    }

    /// The parent directory of `rel` (created if `create`) and `rel`'s last component.
    fn parent<'p>(&self, rel: &'p str, create: bool) -> io::Result<(OwnedFd, &'p str)> {
        components(rel)?;
        let (dir, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        Ok((self.dir(dir, create)?, name))
    }

    /// Creates the directory `rel` (and its parents) 0700; an existing directory is fine.
    pub fn create_dir(&self, rel: &str) -> io::Result<()> {
        self.dir(rel, true).map(drop)
    }

    /// Creates a new file `rel` (0600, never an existing one, never through a link).
    pub fn create_file(&self, rel: &str) -> io::Result<File> {
        let (dir, name) = self.parent(rel, true)?;
        let fd = rustix::fs::openat(
            &dir,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| at(rel, e))?;
        Ok(File::from(fd))
    }

    /// Creates the symlink `rel` pointing at `target` (which is never resolved here).
    pub fn symlink(&self, rel: &str, target: &str) -> io::Result<()> {
        let (dir, name) = self.parent(rel, true)?;
        rustix::fs::symlinkat(target, &dir, name).map_err(|e| at(rel, e))
    }

    /// Opens `rel` for reading without following a symlink at any component.
    pub fn open_nofollow(&self, rel: &str) -> io::Result<File> {
        if rel.is_empty() {
            return Ok(File::from(self.root.try_clone()?));
        }
        let (dir, name) = self.parent(rel, false)?;
        let fd = rustix::fs::openat(
            &dir,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY,
            Mode::empty(),
        )
        .map_err(|e| at(rel, e))?;
        Ok(File::from(fd))
    }

    /// The bytes of the regular file `rel` (at most `limit`), read without following a link.
    pub fn read(&self, rel: &str, limit: u64) -> io::Result<Vec<u8>> {
        use std::io::Read;
        let f = self.open_nofollow(rel)?;
        if !f.metadata()?.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{rel}: not a regular file"),
            ));
        }
        let mut out = Vec::new();
        f.take(limit.saturating_add(1)).read_to_end(&mut out)?;
        if out.len() as u64 > limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{rel}: larger than {limit} bytes"),
            ));
        }
        Ok(out)
    }

    /// Replaces the file `rel` with `bytes` at `mode` (whatever was there, a link included, is
    /// unlinked, never followed; the new file is created `O_EXCL|O_NOFOLLOW`).
    pub fn replace_file(&self, rel: &str, bytes: &[u8], mode: u32) -> io::Result<()> {
        use std::io::Write;
        let (dir, name) = self.parent(rel, false)?;
        match rustix::fs::unlinkat(&dir, name, AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(at(rel, e)),
        }
        let mut f = self.create_file(rel)?;
        f.write_all(bytes)?;
        rustix::fs::fchmod(&f, Mode::from_raw_mode(mode)).map_err(|e| at(rel, e))?;
        f.sync_all()
    }

    /// Sets owner and mode of the file or directory `rel` on its own descriptor. Without the
    /// privilege to change owners (not root), the owner is left as it is.
    pub fn set_owner_mode(&self, rel: &str, uid: u64, gid: u64, mode: u32) -> io::Result<()> {
        let f = self.open_nofollow(rel)?;
        set_owner_mode(&f, uid, gid, mode)
            .map_err(|e| io::Error::new(e.kind(), format!("{rel}: {e}")))
    }

    /// Sets the owner of the symlink `rel` itself.
    pub fn chown_link(&self, rel: &str, uid: u64, gid: u64) -> io::Result<()> {
        let (dir, name) = self.parent(rel, false)?;
        match rustix::fs::chownat(
            &dir,
            name,
            Some(rustix::fs::Uid::from_raw(uid as u32)),
            Some(rustix::fs::Gid::from_raw(gid as u32)),
            AtFlags::SYMLINK_NOFOLLOW,
        ) {
            Ok(()) | Err(rustix::io::Errno::PERM) => Ok(()),
            Err(e) => Err(at(rel, e)),
        }
    }

    /// An unnamed 0600 file in this directory (`O_TMPFILE`): if the process dies before
    /// [`Beneath::publish`], nothing of it remains.
    pub fn anonymous_file(&self) -> io::Result<File> {
        let fd = rustix::fs::openat(
            &self.root,
            ".",
            OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        Ok(File::from(fd))
    }

    /// Gives an [`Beneath::anonymous_file`] the name `name` here; fails if the name exists.
    pub fn publish(&self, f: &File, name: &str) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        components(name)?;
        let proc_path = format!("/proc/self/fd/{}", f.as_raw_fd());
        rustix::fs::linkat(
            rustix::fs::CWD,
            proc_path.as_str(),
            &self.root,
            name,
            AtFlags::SYMLINK_FOLLOW,
        )
        .map_err(|e| at(name, e))
    }

    pub fn root(&self) -> &OwnedFd {
        &self.root
    }
}

/// Checks that `dir` is a directory below `root` reached without a symlink on the way (the
/// parts of `root` itself are the operator's choice and are not checked).
pub fn real_dir_below(root: &Path, dir: &Path) -> io::Result<()> {
    let rel = dir.strip_prefix(root).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not below {}", dir.display(), root.display()),
        )
    })?;
    let rel = rel.to_str().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not UTF-8", dir.display()),
        )
    })?;
    Beneath::open(root)?.dir(rel, false).map(drop)
}

/// `fchown` (unless not permitted) then `fchmod` on an open descriptor: chown clears setuid
/// bits, so the mode comes last.
pub fn set_owner_mode(f: &impl AsFd, uid: u64, gid: u64, mode: u32) -> io::Result<()> {
    match rustix::fs::fchown(
        f,
        Some(rustix::fs::Uid::from_raw(uid as u32)),
        Some(rustix::fs::Gid::from_raw(gid as u32)),
    ) {
        Ok(()) | Err(rustix::io::Errno::PERM) => {}
        Err(e) => return Err(e.into()),
    }
    rustix::fs::fchmod(f, Mode::from_raw_mode(mode & 0o7777))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    #[test]
    fn nothing_goes_through_a_link() {
        let d = tempfile::tempdir().unwrap();
        let (root, outside) = (d.path().join("root"), d.path().join("outside"));
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        symlink(&outside, root.join("lnk")).unwrap();
        let b = Beneath::open(&root).unwrap();
        let e = b.create_file("lnk/planted").unwrap_err();
        assert!(e.to_string().contains("a symlink (never followed)"), "{e}");
        assert!(b.create_dir("lnk/sub").is_err());
        assert!(b.set_owner_mode("lnk", 1234, 1234, 0o7777).is_err());
        assert!(
            b.create_file("lnk").is_err(),
            "O_EXCL never opens the link's target"
        );
        assert!(b.create_file("../x").is_err());
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        assert_eq!(
            std::fs::metadata(&outside).unwrap().permissions().mode() & 0o7777,
            0o755
        );
        assert!(
            Beneath::open(&root.join("lnk")).is_err(),
            "the root itself is not followed"
        );
        b.create_file("a/b/c").unwrap();
        b.set_owner_mode("a/b/c", 0, 0, 0o640).unwrap();
        assert_eq!(
            std::fs::metadata(root.join("a/b/c"))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777,
            0o640
        );
    }
}
