//! Leaf certificates re-issued for a new host from the bundle's own CAs: the same subject, key
//! usages, extended key usages and key pair as the old leaf (as `kubeadm certs renew` does),
//! the subject alternative names given, a year of validity as kubeadm issues (never past the
//! CA's own end). A kubelet client certificate for a new node name gets a new P-256 key, as
//! the kubelet's own rotation makes.

use crate::beneath::Beneath;
use std::net::IpAddr;

use anyhow::{Context, bail};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use x509_parser::prelude::*;

/// How long kubeadm's leaf certificates are valid.
const LEAF_VALIDITY: ::time::Duration = ::time::Duration::days(365);
/// Backdated so a clock a little behind still accepts it.
const BACKDATE: ::time::Duration = ::time::Duration::minutes(5);

/// A subject alternative name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum San {
    /// A DNS name.
    Dns(String),
    /// An IP address.
    Ip(IpAddr),
}

impl std::fmt::Display for San {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            San::Dns(d) => write!(f, "DNS:{d}"),
            San::Ip(i) => write!(f, "IP:{i}"),
        }
    }
}

/// A certificate authority from the bundle: its certificate and key.
pub struct Authority {
    cert_pem: String,
    key: KeyPair,
    not_after: ::time::OffsetDateTime,
}

impl Authority {
    /// Reads `pki/<name>.crt` and `pki/<name>.key` below `dir`; a missing key is said so with why.
    pub fn load(dir: &Beneath, name: &str) -> anyhow::Result<Self> {
        let (crt, key) = (format!("pki/{name}.crt"), format!("pki/{name}.key"));
        let key_pem = read_text(dir, &key).map_err(|e| {
            crate::error::usage(format!(
                "the backup holds no usable CA key pki/{name}.key ({e}): certificates for the new host cannot be issued \
                 (an external CA keeps its key elsewhere). Issue them with your CA, or restore onto the old addresses; nothing was changed"
            ))
        })?;
        let cert_pem = read_text(dir, &crt)
            .with_context(|| format!("reading the CA certificate pki/{name}.crt"))?;
        let der = first_pem(&cert_pem, "CERTIFICATE")
            .with_context(|| format!("pki/{name}.crt holds no certificate"))?;
        let (_, ca) = X509Certificate::from_der(&der)
            .map_err(|e| anyhow::anyhow!("pki/{name}.crt is not a certificate: {e}"))?;
        let not_after = ca.validity().not_after.to_datetime();
        Ok(Authority {
            key: key_pair(&key_pem).with_context(|| format!("reading pki/{name}.key"))?,
            cert_pem,
            not_after,
        })
    }
}

/// What one re-issue changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reissued {
    /// The names before.
    pub before: Vec<San>,
    /// The names after.
    pub after: Vec<San>,
}

/// Re-issues the leaf `crt` (with its key `key`, both below `dir`) for `sans`, signed by `ca`;
/// writes the new certificate over `crt` (0644, as kubeadm; the key stays as it is).
pub fn reissue(
    ca: &Authority,
    dir: &Beneath,
    crt: &str,
    key: &str,
    sans: &[San],
) -> anyhow::Result<Reissued> {
    let old_pem = read_text(dir, crt)?;
    let der = first_pem(&old_pem, "CERTIFICATE")
        .with_context(|| format!("{crt} holds no certificate"))?;
    let (_, old) = X509Certificate::from_der(&der)
        .map_err(|e| anyhow::anyhow!("{crt} is not a certificate: {e}"))?;
    let key = key_pair(&read_text(dir, key)?).with_context(|| format!("reading {key}"))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = subject_of(&old);
    params.key_usages = key_usages_of(&old);
    params.extended_key_usages = extended_key_usages_of(&old);
    params.subject_alt_names = sans.iter().map(san_type).collect::<anyhow::Result<_>>()?;
    let pem = sign(ca, params, &key)?;
    dir.replace_file(crt, pem.as_bytes(), 0o644)?;
    Ok(Reissued {
        before: sans_of(&old),
        after: sans.to_vec(),
    })
}

/// A new client certificate and key (PEM) for the kubelet of `node`: `system:node:<node>` in
/// `system:nodes`, client auth only.
pub fn kubelet_client(ca: &Authority, node: &str) -> anyhow::Result<(String, String)> {
    let key = KeyPair::generate().context("generating the kubelet's key")?;
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "system:nodes");
    params
        .distinguished_name
        .push(DnType::CommonName, format!("system:node:{node}"));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let pem = sign(ca, params, &key)?;
    Ok((pem, key.serialize_pem()))
}

fn sign(ca: &Authority, mut params: CertificateParams, key: &KeyPair) -> anyhow::Result<String> {
    let now = ::time::OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = (now + LEAF_VALIDITY).min(ca.not_after);
    if params.not_after <= now {
        bail!("the CA expired on {}: renew it first", ca.not_after);
    }
    params.is_ca = IsCa::ExplicitNoCa;
    params.use_authority_key_identifier_extension = true;
    let mut serial: [u8; 16] = rand::random();
    serial[0] &= 0x7f; // positive
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    let issuer =
        Issuer::from_ca_cert_pem(&ca.cert_pem, &ca.key).context("reading the CA certificate")?;
    Ok(params
        .signed_by(key, &issuer)
        .context("signing the certificate")?
        .pem())
}

/// The names a certificate holds, sorted.
pub fn sans_of(cert: &X509Certificate<'_>) -> Vec<San> {
    let mut out = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for n in &ext.value.general_names {
            match n {
                GeneralName::DNSName(d) => out.push(San::Dns((*d).to_owned())),
                GeneralName::IPAddress(b) => match b.len() {
                    4 => out.push(San::Ip(IpAddr::from(<[u8; 4]>::try_from(*b).expect("4")))),
                    16 => out.push(San::Ip(IpAddr::from(<[u8; 16]>::try_from(*b).expect("16")))),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    out.sort();
    out
}

/// The names in a PEM certificate.
pub fn sans_in(pem: &str) -> anyhow::Result<Vec<San>> {
    let der = first_pem(pem, "CERTIFICATE").context("no certificate")?;
    let (_, c) =
        X509Certificate::from_der(&der).map_err(|e| anyhow::anyhow!("not a certificate: {e}"))?;
    Ok(sans_of(&c))
}

fn san_type(s: &San) -> anyhow::Result<SanType> {
    Ok(match s {
        San::Dns(d) => SanType::DnsName(
            d.clone()
                .try_into()
                .map_err(|_| anyhow::anyhow!("{d:?} is not a DNS name"))?,
        ),
        San::Ip(i) => SanType::IpAddress(*i),
    })
}

fn subject_of(cert: &X509Certificate<'_>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    for o in cert.subject().iter_organization() {
        if let Ok(s) = o.as_str() {
            dn.push(DnType::OrganizationName, s);
        }
    }
    if let Some(Ok(cn)) = cert.subject().iter_common_name().next().map(|c| c.as_str()) {
        dn.push(DnType::CommonName, cn);
    }
    dn
}

fn key_usages_of(cert: &X509Certificate<'_>) -> Vec<KeyUsagePurpose> {
    let Ok(Some(ku)) = cert.key_usage() else {
        return vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
    };
    let ku = ku.value;
    [
        (ku.digital_signature(), KeyUsagePurpose::DigitalSignature),
        (ku.non_repudiation(), KeyUsagePurpose::ContentCommitment),
        (ku.key_encipherment(), KeyUsagePurpose::KeyEncipherment),
        (ku.data_encipherment(), KeyUsagePurpose::DataEncipherment),
        (ku.key_agreement(), KeyUsagePurpose::KeyAgreement),
    ]
    .into_iter()
    .filter_map(|(on, p)| on.then_some(p))
    .collect()
}

fn extended_key_usages_of(cert: &X509Certificate<'_>) -> Vec<ExtendedKeyUsagePurpose> {
    let Ok(Some(eku)) = cert.extended_key_usage() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if eku.value.server_auth {
        out.push(ExtendedKeyUsagePurpose::ServerAuth);
    }
    if eku.value.client_auth {
        out.push(ExtendedKeyUsagePurpose::ClientAuth);
    }
    out
}

/// A small text file below `dir` (certificates, keys, manifests, kubeconfigs), never through
/// a link.
pub fn read_text(dir: &Beneath, rel: &str) -> anyhow::Result<String> {
    let bytes = dir.read(rel, 1 << 20)?;
    String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("{rel} is not text"))
}

/// The DER of the first PEM block labelled `label`.
fn first_pem(text: &str, label: &str) -> Option<Vec<u8>> {
    x509_parser::pem::Pem::iter_from_buffer(text.as_bytes())
        .filter_map(Result::ok)
        .find(|p| p.label == label)
        .map(|p| p.contents)
}

/// A private key in any form kubeadm writes (PKCS#1 `RSA PRIVATE KEY`, SEC1 `EC PRIVATE KEY`,
/// PKCS#8 `PRIVATE KEY`).
pub fn key_pair(pem: &str) -> anyhow::Result<KeyPair> {
    let block = x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
        .filter_map(Result::ok)
        .find(|p| p.label.ends_with("PRIVATE KEY"))
        .context("no private key in PEM form")?;
    let pkcs8 = match block.label.as_str() {
        "PRIVATE KEY" => block.contents,
        "RSA PRIVATE KEY" => pkcs8::rsa(&block.contents),
        "EC PRIVATE KEY" => pkcs8::ec(&block.contents)?,
        other => bail!("a {other} is not supported"),
    };
    KeyPair::try_from(pkcs8.as_slice()).map_err(|e| anyhow::anyhow!("unusable private key: {e}"))
}

/// Wrapping PKCS#1 and SEC1 keys into PKCS#8 (RFC 5208), which the signer takes.
mod pkcs8 {
    /// rsaEncryption, 1.2.840.113549.1.1.1
    const RSA: &[u8] = &[
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
    ];
    /// id-ecPublicKey, 1.2.840.10045.2.1
    const EC: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    /// The named curves a SEC1 key may carry: P-256, P-384.
    pub(super) const CURVES: [&[u8]; 2] = [
        &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
        &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22],
    ];

    fn der(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        let n = content.len();
        if n < 0x80 {
            v.push(n as u8);
        } else {
            let bytes: Vec<u8> = n
                .to_be_bytes()
                .into_iter()
                .skip_while(|b| *b == 0)
                .collect();
            v.push(0x80 | bytes.len() as u8);
            v.extend_from_slice(&bytes);
        }
        v.extend_from_slice(content);
        v
    }

    fn wrap(algorithm: &[u8], key: &[u8]) -> Vec<u8> {
        let mut body = vec![0x02, 0x01, 0x00];
        body.extend(der(0x30, algorithm));
        body.extend(der(0x04, key));
        der(0x30, &body)
    }

    pub(super) fn rsa(pkcs1: &[u8]) -> Vec<u8> {
        let mut alg = RSA.to_vec();
        alg.extend_from_slice(&[0x05, 0x00]);
        wrap(&alg, pkcs1)
    }

    pub(super) fn ec(sec1: &[u8]) -> anyhow::Result<Vec<u8>> {
        let curve = CURVES
            .into_iter()
            .find(|c| sec1.windows(c.len()).any(|w| w == *c))
            .ok_or_else(|| anyhow::anyhow!("an EC key on a curve other than P-256 or P-384"))?;
        let mut alg = EC.to_vec();
        alg.extend_from_slice(curve);
        Ok(wrap(&alg, sec1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn ca(dir: &Path) -> Authority {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, "kubernetes");
        p.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let c = p.self_signed(&key).unwrap();
        std::fs::create_dir_all(dir.join("pki")).unwrap();
        std::fs::write(dir.join("pki/ca.crt"), c.pem()).unwrap();
        std::fs::write(dir.join("pki/ca.key"), key.serialize_pem()).unwrap();
        Authority::load(&Beneath::open(dir).unwrap(), "ca").unwrap()
    }

    #[test]
    fn a_leaf_keeps_its_subject_usages_and_key_and_gets_the_new_names() {
        let d = tempfile::tempdir().unwrap();
        let ca = ca(d.path());
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec!["old-node".to_owned()]).unwrap();
        p.subject_alt_names
            .push(SanType::IpAddress("10.0.0.1".parse().unwrap()));
        p.distinguished_name.push(DnType::CommonName, "old-node");
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, &ca.key).unwrap();
        let old = p.signed_by(&key, &issuer).unwrap();
        let (crt, keyf) = (
            d.path().join("pki/server.crt"),
            d.path().join("pki/server.key"),
        );
        std::fs::write(&crt, old.pem()).unwrap();
        std::fs::write(&keyf, key.serialize_pem()).unwrap();
        let b = Beneath::open(d.path()).unwrap();
        let sans = vec![
            San::Dns("new-node".into()),
            San::Ip("10.0.3.7".parse().unwrap()),
        ];
        let r = reissue(&ca, &b, "pki/server.crt", "pki/server.key", &sans).unwrap();
        assert_eq!(
            r.before,
            vec![
                San::Dns("old-node".into()),
                San::Ip("10.0.0.1".parse().unwrap())
            ]
        );
        let pem = std::fs::read_to_string(&crt).unwrap();
        assert_eq!(sans_in(&pem).unwrap(), sans);
        let der = first_pem(&pem, "CERTIFICATE").unwrap();
        let (_, c) = X509Certificate::from_der(&der).unwrap();
        assert_eq!(
            c.subject()
                .iter_common_name()
                .next()
                .unwrap()
                .as_str()
                .unwrap(),
            "old-node"
        );
        let eku = c.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth);
        assert_eq!(
            c.public_key().raw,
            X509Certificate::from_der(&first_pem(&old.pem(), "CERTIFICATE").unwrap())
                .unwrap()
                .1
                .public_key()
                .raw,
            "the key pair is kept"
        );
        let ca_der = first_pem(&ca.cert_pem, "CERTIFICATE").unwrap();
        let (_, cac) = X509Certificate::from_der(&ca_der).unwrap();
        c.verify_signature(Some(cac.public_key())).unwrap();
    }

    /// A staged CA key that is a link (a crafted bundle pointing it at a host file) is never
    /// followed: the CA is refused as missing.
    #[test]
    fn a_linked_ca_key_is_not_followed() {
        let d = tempfile::tempdir().unwrap();
        ca(d.path());
        let real = d.path().join("elsewhere.key");
        std::fs::rename(d.path().join("pki/ca.key"), &real).unwrap();
        std::os::unix::fs::symlink(&real, d.path().join("pki/ca.key")).unwrap();
        let e = Authority::load(&Beneath::open(d.path()).unwrap(), "ca")
            .err()
            .expect("refused");
        assert!(
            format!("{e:#}").contains("no usable CA key pki/ca.key"),
            "{e:#}"
        );
    }

    #[test]
    fn sec1_keys_as_go_writes_them_are_read() {
        // ring's PKCS#8 of a P-256 key: the private scalar at 36..68, the public point at 73..
        let k = KeyPair::generate().unwrap();
        let p8 = k.serialize_der();
        assert_eq!(p8.len(), 138);
        // SEC1 with the curve named ([0]) and the public key ([1]), as x509.MarshalECPrivateKey
        let mut body = vec![0x02, 0x01, 0x01, 0x04, 0x20];
        body.extend_from_slice(&p8[36..68]);
        body.extend_from_slice(&[0xa0, 0x0a]);
        body.extend_from_slice(pkcs8::CURVES[0]);
        body.extend_from_slice(&[0xa1, 0x44, 0x03, 0x42, 0x00]);
        body.extend_from_slice(&p8[73..138]);
        let mut sec1 = vec![0x30, body.len() as u8];
        sec1.extend(body);
        let pem = format!(
            "-----BEGIN EC PRIVATE KEY-----\n{}\n-----END EC PRIVATE KEY-----\n",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &sec1)
        );
        let back = key_pair(&pem).unwrap();
        assert_eq!(back.public_key_raw(), k.public_key_raw());
        assert!(
            key_pair("-----BEGIN DSA PRIVATE KEY-----\nAA==\n-----END DSA PRIVATE KEY-----\n")
                .is_err()
        );
    }
}
