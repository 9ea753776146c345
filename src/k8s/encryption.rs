//! Encryption at rest: the keys of an `EncryptionConfiguration` (the file kube-apiserver reads
//! with `--encryption-provider-config`) and the decryption of `k8s:enc:` values with them.
//!
//! Layouts after `k8s:enc:<provider>:v1:<key name>:`:
//! - `aescbc`: IV (16) ‖ AES-CBC ciphertext with PKCS#7 padding;
//! - `aesgcm`: nonce (12) ‖ AES-GCM ciphertext ‖ tag (16); the etcd key is the authenticated data;
//! - `secretbox`: nonce (24) ‖ NaCl secretbox (XSalsa20-Poly1305: tag ‖ ciphertext);
//! - `kms` v1/v2: the data key is sealed by an external KMS: not decryptable offline.

use std::collections::HashMap;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use base64::Engine;
use cbc::cipher::{BlockDecryptMut, KeyIvInit, block_padding::Pkcs7};
use zeroize::Zeroizing;

/// Why a value could not be decrypted.
#[allow(missing_docs)] // the #[error] messages say what each variant and field means
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecryptError {
    #[error(
        "no key of that name; pass the cluster's EncryptionConfiguration with --encryption-config \
         (the bundle's own copy is used when it has one)"
    )]
    NoKey,
    #[error("the data key is sealed by a KMS plugin; it cannot be decrypted offline")]
    Kms,
    #[error("provider {0} is not one kube-apiserver writes")]
    UnknownProvider(String),
    #[error("decryption failed: wrong key, or the value is damaged")]
    Failed,
    #[error("the value is too short for its provider")]
    Short,
}

/// Why an EncryptionConfiguration is unusable.
#[allow(missing_docs)] // the #[error] messages say what each variant and field means
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path} is not an EncryptionConfiguration: {reason}")]
    Parse { path: String, reason: String },
    #[error("{path}: key {name:?} of provider {provider}: {reason}")]
    Key {
        path: String,
        provider: String,
        name: String,
        reason: String,
    },
}

#[derive(serde::Deserialize)]
struct Config {
    kind: Option<String>,
    #[serde(default)]
    resources: Vec<ResourceConfig>,
}

#[derive(serde::Deserialize)]
struct ResourceConfig {
    #[serde(default)]
    providers: Vec<HashMap<String, ProviderConfig>>,
}

#[derive(serde::Deserialize, Default)]
struct ProviderConfig {
    #[serde(default)]
    keys: Vec<KeyConfig>,
}

#[derive(serde::Deserialize)]
struct KeyConfig {
    name: String,
    secret: String,
}

/// Keys by (provider, key name). Secrets are zeroed when dropped and never printed.
#[derive(Default)]
pub struct Keyring {
    keys: HashMap<(String, String), Zeroizing<Vec<u8>>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keyring({} keys)", self.keys.len())
    }
}

impl Keyring {
    /// No keys: encrypted values are reported, not decoded.
    pub fn empty() -> Self {
        Self::default()
    }

    /// How many keys it holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether it holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Reads an EncryptionConfiguration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Reads an EncryptionConfiguration (YAML or JSON); `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let parse_err = |reason: String| ConfigError::Parse {
            path: origin.to_owned(),
            reason,
        };
        let config: Config = serde_saphyr::from_str(text).map_err(|e| parse_err(e.to_string()))?;
        if config
            .kind
            .as_deref()
            .is_some_and(|k| k != "EncryptionConfiguration" && k != "EncryptionConfig")
        {
            return Err(parse_err(format!("kind is {:?}", config.kind.unwrap())));
        }
        let mut ring = Keyring::default();
        for resource in config.resources {
            for provider in resource.providers {
                for (name, settings) in provider {
                    for key in settings.keys {
                        let secret = base64::engine::general_purpose::STANDARD
                            .decode(key.secret.trim())
                            .map_err(|e| ConfigError::Key {
                                path: origin.to_owned(),
                                provider: name.clone(),
                                name: key.name.clone(),
                                reason: format!("secret is not base64: {e}"),
                            })?;
                        let ok = match name.as_str() {
                            "aescbc" | "aesgcm" => matches!(secret.len(), 16 | 24 | 32),
                            "secretbox" => secret.len() == 32,
                            _ => true,
                        };
                        if !ok {
                            return Err(ConfigError::Key {
                                path: origin.to_owned(),
                                provider: name.clone(),
                                name: key.name.clone(),
                                reason: format!("{} bytes is not a valid key size", secret.len()),
                            });
                        }
                        ring.keys
                            .insert((name.clone(), key.name), Zeroizing::new(secret));
                    }
                }
            }
        }
        Ok(ring)
    }

    /// Decrypts the `body` of a value stored under `etcd_key`.
    pub fn decrypt(
        &self,
        provider: &str,
        version: &str,
        key_name: &str,
        body: &[u8],
        etcd_key: &[u8],
    ) -> Result<Vec<u8>, DecryptError> {
        if provider == "kms" {
            return Err(DecryptError::Kms);
        }
        if !matches!(provider, "aescbc" | "aesgcm" | "secretbox") || version != "v1" {
            return Err(DecryptError::UnknownProvider(format!(
                "{provider}:{version}"
            )));
        }
        let key = self
            .keys
            .get(&(provider.to_owned(), key_name.to_owned()))
            .ok_or(DecryptError::NoKey)?;
        match provider {
            "aescbc" => aes_cbc(key, body),
            "aesgcm" => aes_gcm(key, body, etcd_key),
            _ => secretbox(key, body),
        }
    }
}

fn aes_cbc(key: &[u8], body: &[u8]) -> Result<Vec<u8>, DecryptError> {
    if body.len() < 32 || !body.len().is_multiple_of(16) {
        return Err(DecryptError::Short);
    }
    let (iv, ct) = body.split_at(16);
    let fail = |_| DecryptError::Failed;
    match key.len() {
        16 => cbc::Decryptor::<aes::Aes128>::new_from_slices(key, iv)
            .map_err(|_| DecryptError::Failed)?
            .decrypt_padded_vec_mut::<Pkcs7>(ct)
            .map_err(fail),
        24 => cbc::Decryptor::<aes::Aes192>::new_from_slices(key, iv)
            .map_err(|_| DecryptError::Failed)?
            .decrypt_padded_vec_mut::<Pkcs7>(ct)
            .map_err(fail),
        _ => cbc::Decryptor::<aes::Aes256>::new_from_slices(key, iv)
            .map_err(|_| DecryptError::Failed)?
            .decrypt_padded_vec_mut::<Pkcs7>(ct)
            .map_err(fail),
    }
}

fn aes_gcm(key: &[u8], body: &[u8], aad: &[u8]) -> Result<Vec<u8>, DecryptError> {
    if body.len() < 12 + 16 {
        return Err(DecryptError::Short);
    }
    let (nonce, ct) = body.split_at(12);
    let payload = Payload { msg: ct, aad };
    let nonce = aes_gcm::Nonce::from_slice(nonce);
    let out = match key.len() {
        16 => aes_gcm::Aes128Gcm::new_from_slice(key)
            .map_err(|_| DecryptError::Failed)?
            .decrypt(nonce, payload),
        24 => aes_gcm::AesGcm::<aes::Aes192, aes_gcm::aead::consts::U12>::new_from_slice(key)
            .map_err(|_| DecryptError::Failed)?
            .decrypt(nonce, payload),
        _ => aes_gcm::Aes256Gcm::new_from_slice(key)
            .map_err(|_| DecryptError::Failed)?
            .decrypt(nonce, payload),
    };
    out.map_err(|_| DecryptError::Failed)
}

fn secretbox(key: &[u8], body: &[u8]) -> Result<Vec<u8>, DecryptError> {
    use xsalsa20poly1305::XSalsa20Poly1305;
    if body.len() < 24 + 16 {
        return Err(DecryptError::Short);
    }
    let (nonce, sealed) = body.split_at(24);
    let cipher = XSalsa20Poly1305::new_from_slice(key).map_err(|_| DecryptError::Failed)?;
    cipher
        .decrypt(xsalsa20poly1305::Nonce::from_slice(nonce), sealed)
        .map_err(|_| DecryptError::Failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets, configmaps]
    providers:
      - aesgcm:
          keys:
            - name: key1
              secret: c2VjcmV0IGlzIHNlY3VyZQ==
      - aescbc:
          keys:
            - name: key2
              secret: dGhpcyBpcyBwYXNzd29yZA==
      - identity: {}
"#;

    #[test]
    fn reads_keys_by_provider_and_name() {
        let ring = Keyring::parse(CONFIG, "test").unwrap();
        assert_eq!(ring.len(), 2);
        assert_eq!(format!("{ring:?}"), "Keyring(2 keys)");
        assert_eq!(
            ring.decrypt("aesgcm", "v1", "nokey", &[0; 40], b"/k"),
            Err(DecryptError::NoKey)
        );
        assert_eq!(
            ring.decrypt("kms", "v2", "x", &[0; 40], b"/k"),
            Err(DecryptError::Kms)
        );
        assert_eq!(
            ring.decrypt("aesgcm", "v1", "key1", &[0; 40], b"/k"),
            Err(DecryptError::Failed)
        );
        assert_eq!(
            ring.decrypt("aescbc", "v1", "key2", &[0; 20], b"/k"),
            Err(DecryptError::Short)
        );
    }

    #[test]
    fn bad_configs_say_what_is_wrong() {
        let e = Keyring::parse("kind: Pod\n", "f").unwrap_err().to_string();
        assert!(e.contains("not an EncryptionConfiguration"), "{e}");
        let bad = CONFIG.replace("c2VjcmV0IGlzIHNlY3VyZQ==", "c2hvcnQ=");
        let e = Keyring::parse(&bad, "f").unwrap_err().to_string();
        assert!(e.contains("key \"key1\"") && e.contains("5 bytes"), "{e}");
        let e = Keyring::parse("resources: [", "f").unwrap_err().to_string();
        assert!(e.contains("f is not"), "{e}");
    }
}

#[cfg(test)]
mod alias_tests {
    use super::*;

    /// A "billion laughs" file (aliases of aliases) is refused, not expanded.
    #[test]
    fn alias_bombs_are_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let prev = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            ));
        }
        text.push_str("kind: EncryptionConfiguration\nresources: []\n");
        // expanded, this would be 10^12 nodes: the test would never finish
        let result = Keyring::parse(&text, "bomb");
        if let Ok(ring) = result {
            assert!(ring.is_empty());
        }
    }
}
