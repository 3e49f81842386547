//! API keys: `trb_<id>_<secret>`. The id (12 hex digits) finds the key's row; the secret
//! (256 random bits, 64 hex digits) is checked against the SHA-256 digest the row holds.
//! The key itself is shown once, when it is created, and never stored.

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The prefix of every key.
pub const PREFIX: &str = "trb_";

/// A new key: its id, the whole key (shown once) and the digest to store.
pub struct NewKey {
    pub id: String,
    pub key: Zeroizing<String>,
    pub digest: String,
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKey").field("id", &self.id).field("key", &"<redacted>").finish()
    }
}

/// A fresh random key.
pub fn generate() -> NewKey {
    use chacha20poly1305::aead::Generate;
    let id_bytes = chacha20poly1305::Key::generate();
    let id = hex::encode(&id_bytes.as_slice()[..6]);
    let secret = Zeroizing::new(hex::encode(chacha20poly1305::Key::generate().as_slice()));
    let digest = digest(&secret);
    NewKey { key: Zeroizing::new(format!("{PREFIX}{id}_{}", secret.as_str())), id, digest }
}

/// The id and secret of a key; `None` if `key` is not shaped like one.
pub fn parse(key: &str) -> Option<(&str, &str)> {
    let (id, secret) = key.strip_prefix(PREFIX)?.split_once('_')?;
    let hex_of = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex_of(id, 12) && hex_of(secret, 64)).then_some((id, secret))
}

/// The hex SHA-256 digest of a secret.
pub fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Whether `secret` matches `stored` (a digest from [`digest`]), comparing in constant time.
pub fn matches(secret: &str, stored: &str) -> bool {
    let ours = digest(secret);
    let (a, b) = (ours.as_bytes(), stored.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_parses_and_matches_only_its_digest() {
        let k = generate();
        assert!(k.key.starts_with("trb_") && k.key.len() == 4 + 12 + 1 + 64, "{}", k.key.len());
        let (id, secret) = parse(&k.key).unwrap();
        assert_eq!(id, k.id);
        assert!(matches(secret, &k.digest));
        let other = generate();
        assert!(!matches(secret, &other.digest));
        assert_ne!(k.id, other.id);
        assert!(!format!("{k:?}").contains(secret));
        for bad in [
            "",
            "trb_",
            "trb_abc_def",
            "xyz_0123456789ab_00",
            &k.key[..k.key.len() - 1],
            &k.key.replace("trb_", "trx_"),
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
        // A digest known independently: SHA-256 of "abc".
        assert_eq!(digest("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
