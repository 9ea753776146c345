//! Moving things aside without ever deleting them: rename when possible, otherwise copy (modes,
//! owners, symlinks kept), fsync, then remove the source. Plus mount-point and free-space checks.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use anyhow::Context;

/// Moves `from` to `to` (which must not exist), creating `to`'s parent (0700).
pub fn move_path(from: &Path, to: &Path) -> anyhow::Result<()> {
    if let Some(p) = to.parent() {
        create_private_dir(p)?;
    }
    if to.symlink_metadata().is_ok() {
        anyhow::bail!("{} already exists; refusing to overwrite it", to.display());
    }
    match fs::rename(from, to) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(nix::libc::EXDEV) => {
            // Another filesystem: copy under a temporary name, then publish, then remove.
            let tmp = to.with_extension("cpbackup-partial");
            if tmp.symlink_metadata().is_ok() {
                remove_tree(&tmp)?;
            }
            copy_tree(from, &tmp)
                .with_context(|| format!("copying {} to {}", from.display(), tmp.display()))?;
            fs::rename(&tmp, to)?;
            sync_parent(to);
            remove_tree(from)
                .with_context(|| format!("removing {} after copying it", from.display()))?;
        }
        Err(e) => {
            return Err(e)
                .with_context(|| format!("moving {} to {}", from.display(), to.display()));
        }
    }
    sync_parent(to);
    sync_parent(from);
    Ok(())
}

/// Creates a directory (and parents) with mode 0700 for the new ones.
pub fn create_private_dir(p: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(p)
        .with_context(|| format!("creating {}", p.display()))
}

fn sync_parent(p: &Path) {
    if let Some(d) = p.parent()
        && let Ok(f) = fs::File::open(d)
    {
        let _ = f.sync_all();
    }
}

fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    let meta = from.symlink_metadata()?;
    let ft = meta.file_type();
    if ft.is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(from)?, to)?;
    } else if ft.is_dir() {
        fs::create_dir(to)?;
        for e in fs::read_dir(from)? {
            let e = e?;
            copy_tree(&e.path(), &to.join(e.file_name()))?;
        }
        fs::set_permissions(to, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    } else {
        fs::copy(from, to)?;
        fs::File::open(to)?.sync_all()?;
    }
    let _ = nix::unistd::fchownat(
        nix::fcntl::AT_FDCWD,
        to,
        Some(nix::unistd::Uid::from_raw(meta.uid())),
        Some(nix::unistd::Gid::from_raw(meta.gid())),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    );
    Ok(())
}

/// Removes a tree this restore created (staged plaintext, partial copies). Never used on the
/// node's own data.
pub fn remove_tree(p: &Path) -> anyhow::Result<()> {
    let meta = match p.symlink_metadata() {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if meta.is_dir() {
        fs::remove_dir_all(p)
    } else {
        fs::remove_file(p)
    }
    .with_context(|| format!("removing {}", p.display()))
}

pub use crate::fsutil::is_mount_point;

/// Bytes available to root on the filesystem holding `p` (or its nearest existing ancestor).
pub fn free_bytes(p: &Path) -> anyhow::Result<u64> {
    let mut at = p;
    while !at.exists() {
        at = at.parent().unwrap_or(Path::new("/"));
    }
    let s = nix::sys::statvfs::statvfs(at)
        .with_context(|| format!("checking free space at {}", at.display()))?;
    Ok(s.blocks_free() as u64 * s.fragment_size() as u64)
}

/// True when `p` is a directory with nothing in it.
pub fn is_empty_dir(p: &Path) -> bool {
    fs::read_dir(p).is_ok_and(|mut d| d.next().is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn move_refuses_to_overwrite_and_keeps_the_source() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        let b = d.path().join("b");
        fs::write(&a, "1").unwrap();
        fs::write(&b, "2").unwrap();
        assert!(move_path(&a, &b).is_err());
        assert_eq!(fs::read_to_string(&a).unwrap(), "1");
        move_path(&a, &d.path().join("x/y/c")).unwrap();
        assert!(!a.exists());
        assert_eq!(fs::read_to_string(d.path().join("x/y/c")).unwrap(), "1");
    }

    #[test]
    fn move_across_filesystems_copies_then_removes_the_source() {
        // /dev/shm (tmpfs) and the temp dir are different filesystems on Linux hosts.
        let (Ok(a), Ok(b)) = (
            tempfile::tempdir_in("/dev/shm"),
            tempfile::tempdir_in("/var/tmp"),
        ) else {
            eprintln!("SKIPPED: no /dev/shm or /var/tmp");
            return;
        };
        let dev = |p: &Path| fs::metadata(p).unwrap().dev();
        if dev(a.path()) == dev(b.path()) {
            eprintln!("SKIPPED: /dev/shm and /var/tmp share a filesystem here");
            return;
        }
        let src = a.path().join("member");
        fs::create_dir_all(src.join("snap")).unwrap();
        fs::write(src.join("snap/db"), "data").unwrap();
        fs::set_permissions(&src, fs::Permissions::from_mode(0o700)).unwrap();
        let dst = b.path().join("aside/member");
        move_path(&src, &dst).unwrap();
        assert!(
            !src.exists(),
            "the source is gone once the copy is complete"
        );
        assert_eq!(fs::read_to_string(dst.join("snap/db")).unwrap(), "data");
        assert_eq!(
            fs::metadata(&dst).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert!(!b.path().join("aside/member.cpbackup-partial").exists());
    }

    #[test]
    fn copy_keeps_modes_and_links() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::write(src.join("sub/key"), "k").unwrap();
        fs::set_permissions(src.join("sub/key"), fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink("sub/key", src.join("link")).unwrap();
        copy_tree(&src, &d.path().join("dst")).unwrap();
        let m = fs::metadata(d.path().join("dst/sub/key")).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o600);
        assert_eq!(
            fs::read_link(d.path().join("dst/link")).unwrap(),
            Path::new("sub/key")
        );
    }
}
