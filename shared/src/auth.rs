//! Tokens, hashing, constant-time comparison and credential encryption.
//!
//! Every token the hub issues (API, job, download) is a random UUID v4 (122 random bits,
//! lower-case as the wire contract requires) and only its SHA-256 is stored. License keys keep
//! the wire shape `FREE-XXXX-XXXX-XXXX` (48 random bits; minting is rate-limited and keys are
//! stored hashed). Signing credentials are sealed with AES-256-GCM.

use aes_gcm::{
    aead::{Aead, KeyInit},
    Aes256Gcm, Nonce,
};
use rand::{rngs::OsRng, RngCore};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Constant-time equality of two byte strings (length differences leak only the length).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// HMAC-SHA256 of `data` under `key`.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// SHA-256 of a token, as stored in the database.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A fresh random token (lower-case UUID v4) and its hash.
pub fn new_token() -> (String, [u8; 32]) {
    let token = uuid::Uuid::new_v4().to_string();
    let hash = hash_token(&token);
    (token, hash)
}

/// A fresh license key `<PREFIX>-XXXX-XXXX-XXXX` (upper-case hex) and its hash.
pub fn new_license_key(prefix: &str) -> (String, [u8; 32]) {
    let mut bytes = [0u8; 6];
    OsRng.fill_bytes(&mut bytes);
    let hex = hex::encode_upper(bytes);
    let key = format!("{prefix}-{}-{}-{}", &hex[0..4], &hex[4..8], &hex[8..12]);
    let hash = hash_token(&key);
    (key, hash)
}

/// Extract the token of an `Authorization: Bearer <token>` header (scheme in any case).
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let value = header?.trim();
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    (!token.is_empty()).then_some(token)
}

/// Errors of credential encryption.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The ciphertext is malformed or was sealed with another key.
    #[error("credentials cannot be decrypted (wrong key or corrupted data)")]
    Decrypt,
    /// Encryption failed (only on absurd input sizes).
    #[error("credentials cannot be encrypted")]
    Encrypt,
}

/// AES-256-GCM sealing of signing credentials. Output is `nonce (12 bytes) || ciphertext+tag`.
#[derive(Clone)]
pub struct CredentialCipher {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for CredentialCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CredentialCipher([redacted])")
    }
}

impl CredentialCipher {
    /// A cipher with a 32-byte key.
    pub fn new(key: &[u8; 32]) -> Self {
        Self {
            cipher: Aes256Gcm::new(key.into()),
        }
    }

    /// Encrypt with a random nonce. `aad` binds the ciphertext to its job id.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut nonce = [0u8; 12];
        OsRng.fill_bytes(&mut nonce);
        let ct = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                aes_gcm::aead::Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| CryptoError::Encrypt)?;
        let mut out = Vec::with_capacity(12 + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Decrypt what [`seal`](Self::seal) produced with the same `aad`.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < 12 + 16 {
            return Err(CryptoError::Decrypt);
        }
        let (nonce, ct) = sealed.split_at(12);
        self.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                aes_gcm::aead::Payload { msg: ct, aad },
            )
            .map_err(|_| CryptoError::Decrypt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_lowercase_uuids_with_matching_hashes() {
        let (t, h) = new_token();
        assert_eq!(t.len(), 36);
        assert_eq!(t, t.to_lowercase());
        assert_eq!(uuid::Uuid::parse_str(&t).unwrap().get_version_num(), 4);
        assert_eq!(hash_token(&t), h);
        assert_ne!(new_token().0, t);
    }

    #[test]
    fn license_keys_have_the_wire_shape() {
        let (k, h) = new_license_key("FREE");
        assert_eq!(k.len(), "FREE-XXXX-XXXX-XXXX".len());
        assert!(k.starts_with("FREE-"));
        assert!(k[5..]
            .chars()
            .all(|c| c == '-' || c.is_ascii_digit() || ('A'..='F').contains(&c)));
        assert_eq!(hash_token(&k), h);
    }

    #[test]
    fn bearer_parsing_is_strict_about_shape_not_case() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("BEARER  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(None), None);
    }

    #[test]
    fn constant_time_eq_is_exact() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"junksecret"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn credentials_round_trip_and_are_bound_to_key_and_job() {
        let c = CredentialCipher::new(&[7u8; 32]);
        let sealed = c.seal(br#"{"apple_password":"p"}"#, b"job-1").unwrap();
        assert!(!sealed.windows(8).any(|w| w == b"password"));
        assert_eq!(
            c.open(&sealed, b"job-1").unwrap(),
            br#"{"apple_password":"p"}"#
        );
        assert!(c.open(&sealed, b"job-2").is_err());
        assert!(CredentialCipher::new(&[8u8; 32])
            .open(&sealed, b"job-1")
            .is_err());
        assert!(c.open(&sealed[..10], b"job-1").is_err());
        let mut tampered = sealed.clone();
        tampered[20] ^= 1;
        assert!(c.open(&tampered, b"job-1").is_err());
    }
}

/// Property tests of `Authorization` parsing (issue 12 item 7): 2 × 1024 cases.
#[cfg(test)]
mod props {
    use proptest::prelude::*;

    use super::bearer;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        /// Any header: no panic, and a token found is non-empty, trimmed, and follows a
        /// `Bearer` scheme.
        #[test]
        fn any_authorization_value_gives_a_clean_token_or_none(value in any::<String>()) {
            if let Some(token) = bearer(Some(&value)) {
                prop_assert!(!token.is_empty());
                prop_assert_eq!(token, token.trim());
                let scheme = value.trim().split_once(' ').map(|(s, _)| s);
                prop_assert!(scheme.is_some_and(|s| s.eq_ignore_ascii_case("bearer")));
            }
        }

        /// `Bearer <token>` with the scheme in any case gives the token back.
        #[test]
        fn a_bearer_header_gives_its_token_back(
            scheme in "[bB][eE][aA][rR][eE][rR]",
            token in "[!-~]{1,64}",
            pad in " {0,3}",
        ) {
            let value = format!("{pad}{scheme} {pad}{token}{pad}");
            prop_assert_eq!(bearer(Some(&value)), Some(token.as_str()));
        }
    }
}
