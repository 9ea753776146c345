//! The X.509 certificates a backup carries and a restore puts back: every PEM certificate in
//! the static pod resources (and the kubeconfigs' embedded `client-certificate-data`), with its
//! expiry. A restore of expired certificates is a second outage, so `doctor` warns ahead (it
//! scans the host) and the daemon exports the dates as a metric (the bundle writer finds them
//! as the files pass, with [`certificates_in`]).

use std::path::{Path, PathBuf};

use base64::Engine;

/// Files larger than this are not certificates.
pub const MAX_FILE: u64 = 1 << 20;
/// Directories deeper than this are not walked (static pod resources are shallow).
const MAX_DEPTH: usize = 8;

/// One certificate found on the host.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CertInfo {
    /// The file it is in (as the host names it, under the host root).
    pub path: PathBuf,
    /// Its subject, RFC 4514.
    pub subject: String,
    /// Its notAfter, Unix seconds.
    pub not_after: i64,
}

/// Every certificate in these files and directories (walked without following links).
pub fn scan(paths: &[PathBuf]) -> Vec<CertInfo> {
    let mut out = Vec::new();
    for p in paths {
        walk(p, 0, &mut out);
    }
    out.sort_by(|a, b| a.not_after.cmp(&b.not_after).then(a.path.cmp(&b.path)));
    out
}

fn walk(path: &Path, depth: usize, out: &mut Vec<CertInfo>) {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    if meta.is_dir() {
        if depth >= MAX_DEPTH {
            return;
        }
        let Ok(dir) = std::fs::read_dir(path) else {
            return;
        };
        let mut entries: Vec<PathBuf> = dir.flatten().map(|e| e.path()).collect();
        entries.sort();
        for e in entries {
            walk(&e, depth + 1, out);
        }
    } else if meta.is_file()
        && meta.len() <= MAX_FILE
        && let Ok(bytes) = std::fs::read(path)
    {
        certificates_in(path, &bytes, out);
    }
}

/// The certificates of one file: PEM blocks, and base64 PEM in kubeconfig `*-data:` fields.
pub fn certificates_in(path: &Path, bytes: &[u8], out: &mut Vec<CertInfo>) {
    pem_blocks(path, bytes, out);
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    for line in text.lines() {
        let Some((_, value)) = line.split_once("client-certificate-data:") else {
            continue;
        };
        if let Ok(pem) = base64::engine::general_purpose::STANDARD.decode(value.trim()) {
            pem_blocks(path, &pem, out);
        }
    }
}

fn pem_blocks(path: &Path, bytes: &[u8], out: &mut Vec<CertInfo>) {
    if memchr::memmem::find(bytes, b"-----BEGIN CERTIFICATE-----").is_none() {
        return;
    }
    for pem in x509_parser::pem::Pem::iter_from_buffer(bytes).flatten() {
        if pem.label != "CERTIFICATE" {
            continue;
        }
        if let Ok(cert) = pem.parse_x509() {
            out.push(CertInfo {
                path: path.to_path_buf(),
                subject: cert.subject().to_string(),
                not_after: cert.validity().not_after.timestamp(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem(days: i64) -> String {
        let mut p = rcgen::CertificateParams::new(vec!["etcd".into()]).unwrap();
        p.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(days);
        let key = rcgen::KeyPair::generate().unwrap();
        p.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn finds_pem_files_and_kubeconfig_data_and_sorts_by_expiry() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("pki/etcd")).unwrap();
        std::fs::write(t.path().join("pki/etcd/ca.crt"), pem(3650)).unwrap();
        std::fs::write(t.path().join("pki/sa.key"), "not a certificate").unwrap();
        let data = base64::engine::general_purpose::STANDARD.encode(pem(10));
        std::fs::write(
            t.path().join("admin.conf"),
            format!("users:\n- user:\n    client-certificate-data: {data}\n"),
        )
        .unwrap();
        std::os::unix::fs::symlink("/etc/ssl/certs", t.path().join("link")).unwrap();
        let found = scan(&[t.path().to_path_buf()]);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].path.ends_with("admin.conf"));
        assert!(found[1].path.ends_with("pki/etcd/ca.crt"));
        assert!(found[0].not_after < found[1].not_after);
    }
}
