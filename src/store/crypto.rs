//! Secrets at rest: AES-256-GCM with a fresh random 96-bit nonce for every write.
//!
//! A sealed value is `version (1 byte) || nonce (12 bytes) || ciphertext+tag`. The key comes
//! from `STREAMIFY_SECRET_KEY` (32 bytes, base64) or, when that is not set, from a key file
//! generated in the data directory with owner-only permissions (a warning says so, because
//! whoever can read the data directory can then read the secrets).

use std::fmt;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead as _, KeyInit as _};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;

/// The environment variable that holds the base64 encoded 32-byte key.
pub const SECRET_KEY_ENV: &str = "STREAMIFY_SECRET_KEY";
/// The key file's name inside the data directory when no key is configured.
pub const KEY_FILE_NAME: &str = "secret.key";

const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;

/// Why a key could not be loaded or a value could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// The configured key is not 32 bytes of base64.
    #[error("{SECRET_KEY_ENV} must be 32 bytes encoded in base64 ({0})")]
    BadKey(String),
    /// The key file could not be read or written.
    #[error("secret key file {path}: {source}")]
    KeyFile {
        /// The key file.
        path: PathBuf,
        /// The I/O failure.
        source: std::io::Error,
    },
    /// The sealed value is malformed, or was sealed with another key.
    #[error("a stored secret could not be decrypted (wrong {SECRET_KEY_ENV}, or corrupt data)")]
    Open,
}

/// Where the key came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// `STREAMIFY_SECRET_KEY`.
    Environment,
    /// An existing key file in the data directory.
    ExistingFile,
    /// A key file generated just now.
    GeneratedFile,
}

/// Seals and opens secrets with one AES-256-GCM key.
#[derive(Clone)]
pub struct SecretBox {
    cipher: Aes256Gcm,
}

impl fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    /// A box with this raw key.
    pub fn from_key(key: &[u8; 32]) -> SecretBox {
        SecretBox {
            cipher: Aes256Gcm::new(key.into()),
        }
    }

    /// A box from a base64 key (standard or URL-safe alphabet, padding optional).
    pub fn from_base64(encoded: &str) -> Result<SecretBox, CryptoError> {
        let encoded = encoded.trim();
        let engines = [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::STANDARD_NO_PAD,
            base64::engine::general_purpose::URL_SAFE,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        let bytes = engines
            .iter()
            .find_map(|e| e.decode(encoded).ok())
            .ok_or_else(|| CryptoError::BadKey("not base64".into()))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| CryptoError::BadKey(format!("{} bytes, expected 32", b.len())))?;
        Ok(SecretBox::from_key(&key))
    }

    /// The key from `configured` (the value of `STREAMIFY_SECRET_KEY`) or else from the key
    /// file in `data_dir`, generated with mode 0600 when missing.
    pub fn load(
        data_dir: &Path,
        configured: Option<&str>,
    ) -> Result<(SecretBox, KeySource), CryptoError> {
        if let Some(encoded) = configured.filter(|s| !s.trim().is_empty()) {
            return Ok((SecretBox::from_base64(encoded)?, KeySource::Environment));
        }
        let path = data_dir.join(KEY_FILE_NAME);
        let io = |source| CryptoError::KeyFile {
            path: path.clone(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let mode = std::fs::metadata(&path).map_err(io)?.permissions().mode();
                if mode & 0o077 != 0 {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                        .map_err(io)?;
                    tracing::warn!(path = %path.display(), "secret key file was readable by others; permissions set to 0600");
                }
                Ok((SecretBox::from_base64(&text)?, KeySource::ExistingFile))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key: [u8; 32] = rand::random();
                let encoded = base64::engine::general_purpose::STANDARD.encode(key);
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(io)?;
                file.write_all(encoded.as_bytes()).map_err(io)?;
                file.write_all(b"\n").map_err(io)?;
                file.sync_all().map_err(io)?;
                tracing::warn!(
                    path = %path.display(),
                    "{SECRET_KEY_ENV} is not set: generated a secret key file (mode 0600) in the data \
                     directory; anyone who can read the data directory can decrypt the stored tokens. \
                     Set {SECRET_KEY_ENV} (32 bytes, base64) to keep the key elsewhere"
                );
                Ok((SecretBox::from_key(&key), KeySource::GeneratedFile))
            }
            Err(e) => Err(io(e)),
        }
    }

    /// Encrypts `plaintext` with a fresh random nonce.
    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let ciphertext = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce_bytes), plaintext)
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut sealed = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        sealed.push(VERSION);
        sealed.extend_from_slice(&nonce_bytes);
        sealed.extend_from_slice(&ciphertext);
        sealed
    }

    /// Decrypts a value made by [`SecretBox::seal`] with the same key.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < 1 + NONCE_LEN + 16 || sealed[0] != VERSION {
            return Err(CryptoError::Open);
        }
        let (nonce, ciphertext) = sealed[1..].split_at(NONCE_LEN);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .map_err(|_| CryptoError::Open)
    }

    /// [`SecretBox::seal`] for text.
    pub fn seal_str(&self, plaintext: &str) -> Vec<u8> {
        self.seal(plaintext.as_bytes())
    }

    /// [`SecretBox::open`] for text.
    pub fn open_string(&self, sealed: &[u8]) -> Result<String, CryptoError> {
        String::from_utf8(self.open(sealed)?).map_err(|_| CryptoError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_fresh_nonces() {
        let secret = SecretBox::from_key(&[7; 32]);
        let a = secret.seal_str("ya29.token");
        let b = secret.seal_str("ya29.token");
        assert_ne!(a, b, "every seal uses a fresh nonce");
        assert_eq!(secret.open_string(&a).unwrap(), "ya29.token");
        assert_eq!(secret.open_string(&b).unwrap(), "ya29.token");
        assert!(!a.windows(4).any(|w| w == b"ya29"));
    }

    #[test]
    fn wrong_key_and_tampering_are_refused() {
        let secret = SecretBox::from_key(&[7; 32]);
        let other = SecretBox::from_key(&[8; 32]);
        let mut sealed = secret.seal(b"stream-key");
        assert!(matches!(other.open(&sealed), Err(CryptoError::Open)));
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(matches!(secret.open(&sealed), Err(CryptoError::Open)));
        assert!(matches!(secret.open(&[1, 2, 3]), Err(CryptoError::Open)));
    }

    #[test]
    fn base64_key_must_be_32_bytes() {
        let good = base64::engine::general_purpose::STANDARD.encode([1u8; 32]);
        assert!(SecretBox::from_base64(&good).is_ok());
        let short = base64::engine::general_purpose::STANDARD.encode([1u8; 16]);
        assert!(matches!(
            SecretBox::from_base64(&short),
            Err(CryptoError::BadKey(_))
        ));
        assert!(SecretBox::from_base64("not base64 !!").is_err());
    }

    #[test]
    fn generated_key_file_is_private_and_reused() {
        let dir = std::env::temp_dir().join(format!("streamify-crypto-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (first, source) = SecretBox::load(&dir, None).unwrap();
        assert_eq!(source, KeySource::GeneratedFile);
        let mode = std::fs::metadata(dir.join(KEY_FILE_NAME))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let sealed = first.seal(b"x");
        let (second, source) = SecretBox::load(&dir, None).unwrap();
        assert_eq!(source, KeySource::ExistingFile);
        assert_eq!(second.open(&sealed).unwrap(), b"x");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
