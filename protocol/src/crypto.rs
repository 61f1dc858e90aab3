//! KMS session encryption: AES-256-GCM, 12-byte nonce ‖ ciphertext ‖ 16-byte tag, no
//! associated data. The 64-byte data key splits in two: bytes `[0,32)` protect
//! agent-to-client traffic, bytes `[32,64)` client-to-agent traffic.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};

/// Size of a KMS data key.
pub const DATA_KEY_LEN: usize = 64;
/// Nonce size.
pub const NONCE_LEN: usize = 12;
/// Tag size.
pub const TAG_LEN: usize = 16;
/// Bytes added to a plaintext by [`seal`].
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// Encryption failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// The data key is not 64 bytes.
    #[error("data key must be 64 bytes, got {0}")]
    KeyLength(usize),
    /// Ciphertext shorter than nonce + tag.
    #[error("ciphertext too short")]
    TooShort,
    /// Authentication failed.
    #[error("decryption failed (wrong key or corrupted data)")]
    Decrypt,
}

/// Encrypts `plaintext` under a 32-byte key: returns nonce ‖ ciphertext ‖ tag.
pub fn seal(key: &[u8; 32], nonce: [u8; NONCE_LEN], plaintext: &[u8]) -> Vec<u8> {
    let cipher = Aes256Gcm::new(key.into());
    seal_with(&cipher, nonce, plaintext)
}

/// Decrypts nonce ‖ ciphertext ‖ tag under a 32-byte key.
pub fn open(key: &[u8; 32], data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let cipher = Aes256Gcm::new(key.into());
    open_with(&cipher, data)
}

fn seal_with(cipher: &Aes256Gcm, nonce: [u8; NONCE_LEN], plaintext: &[u8]) -> Vec<u8> {
    let n = Nonce::from(nonce);
    // AES-GCM encryption only fails for plaintexts above 64 GiB.
    let ct = cipher.encrypt(&n, plaintext).unwrap_or_default();
    let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    out
}

fn open_with(cipher: &Aes256Gcm, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if data.len() < OVERHEAD {
        return Err(CryptoError::TooShort);
    }
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&data[..NONCE_LEN]);
    cipher
        .decrypt(&Nonce::from(nonce), &data[NONCE_LEN..])
        .map_err(|_| CryptoError::Decrypt)
}

/// The two directional ciphers of one side of a KMS-encrypted session.
pub struct SessionCipher {
    encrypt: Aes256Gcm,
    decrypt: Aes256Gcm,
}

impl fmt::Debug for SessionCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionCipher(<redacted>)")
    }
}

fn halves(data_key: &[u8]) -> Result<([u8; 32], [u8; 32]), CryptoError> {
    if data_key.len() != DATA_KEY_LEN {
        return Err(CryptoError::KeyLength(data_key.len()));
    }
    let mut a = [0u8; 32];
    let mut b = [0u8; 32];
    a.copy_from_slice(&data_key[..32]);
    b.copy_from_slice(&data_key[32..]);
    Ok((a, b))
}

impl SessionCipher {
    /// Client side: decrypt with the first half, encrypt with the second.
    pub fn client(data_key: &[u8]) -> Result<SessionCipher, CryptoError> {
        let (first, second) = halves(data_key)?;
        Ok(SessionCipher {
            decrypt: Aes256Gcm::new((&first).into()),
            encrypt: Aes256Gcm::new((&second).into()),
        })
    }

    /// Agent side: encrypt with the first half, decrypt with the second.
    pub fn agent(data_key: &[u8]) -> Result<SessionCipher, CryptoError> {
        let (first, second) = halves(data_key)?;
        Ok(SessionCipher {
            encrypt: Aes256Gcm::new((&first).into()),
            decrypt: Aes256Gcm::new((&second).into()),
        })
    }

    /// Encrypts outgoing bytes.
    pub fn seal(&self, nonce: [u8; NONCE_LEN], plaintext: &[u8]) -> Vec<u8> {
        seal_with(&self.encrypt, nonce, plaintext)
    }

    /// Decrypts incoming bytes.
    pub fn open(&self, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        open_with(&self.decrypt, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_and_agent_halves_interoperate() {
        let key: Vec<u8> = (0..64u8).collect();
        let c = SessionCipher::client(&key).unwrap();
        let a = SessionCipher::agent(&key).unwrap();
        let ct = c.seal([1; 12], b"hello");
        assert_eq!(ct.len(), 5 + OVERHEAD);
        assert_eq!(&ct[..12], &[1; 12]);
        assert_eq!(a.open(&ct).unwrap(), b"hello");
        assert!(
            c.open(&ct).is_err(),
            "client must not accept its own direction"
        );
        let ct2 = a.seal([2; 12], b"out");
        assert_eq!(c.open(&ct2).unwrap(), b"out");
        // The first half is the agent->client key.
        let mut first = [0u8; 32];
        first.copy_from_slice(&key[..32]);
        assert_eq!(open(&first, &ct2).unwrap(), b"out");
        assert_eq!(
            SessionCipher::client(&key[..10]).unwrap_err(),
            CryptoError::KeyLength(10)
        );
        assert_eq!(c.open(&[0; 5]).unwrap_err(), CryptoError::TooShort);
    }
}
