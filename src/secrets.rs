//! Credentials at rest: XChaCha20-Poly1305 with a 32-byte master key, additional data
//! binding tenant, provider, owning user and key id (a ciphertext cannot be moved to
//! another row — another tenant's, or between a company and a user connection — or
//! opened with another key), and redaction: secret values live in `secrecy` types and
//! never appear in `Debug` output or logs.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock};

use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use secrecy::{ExposeSecret, SecretBox, SecretString};
use serde_json::Value;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::model::{Owner, ProviderId, SealedBlob, TenantId};

/// Format version of a sealed blob: `version || nonce (24) || ciphertext+tag`.
const SEAL_VERSION: u8 = 1;
const NONCE_LEN: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("cannot read master key file {path}: {source}")]
    ReadKey { path: PathBuf, source: std::io::Error },
    #[error("cannot write master key file {path}: {source}")]
    WriteKey { path: PathBuf, source: std::io::Error },
    #[error("master key file {path} must hold 32 raw bytes or 64 hex digits")]
    BadKey { path: PathBuf },
    #[error(
        "master key file {path} may be read or written by other users (mode {mode:04o}); the key opens every \
         stored credential: make it private with `chmod 600 {path}` (owned by the user tributary runs as)"
    )]
    KeyFileOpen { path: PathBuf, mode: u32 },
    #[error(
        "a value was sealed with master key `{sealed}`, which is not loaded (loaded: {loaded}); point \
         TRIBUTARY_MASTER_KEY_FILE at the key file with id `{sealed}`"
    )]
    WrongKey { sealed: String, loaded: String },
    #[error("stored credentials for `{tenant}`/`{provider}` cannot be decrypted (tampered, moved or another key)")]
    Decrypt { tenant: String, provider: String },
    #[error("credentials must be a JSON object of strings: {0}")]
    BadCredentials(String),
}

/// The master key ring: the key every new value is sealed with (its id is the ring's
/// [`id`](Self::id)) and, during a rotation, the keys older values were sealed with,
/// kept for opening them. Each key's id is a fingerprint of the key, so rotation can
/// tell keys apart; a blob names the id of the key that sealed it.
pub struct MasterKey {
    ring: RwLock<Ring>,
}

struct Ring {
    keys: Vec<KeyEntry>,
    /// Index in `keys` of the key new values are sealed with.
    write: usize,
}

struct KeyEntry {
    id: String,
    key: SecretBox<[u8; 32]>,
}

impl KeyEntry {
    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.key.expose_secret().into())
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({}, [redacted])", self.ids().join(", "))
    }
}

/// Where the master key was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOrigin {
    /// `TRIBUTARY_MASTER_KEY_FILE` or the settings file.
    Configured(PathBuf),
    /// `$CREDENTIALS_DIRECTORY/master-key` (systemd `LoadCredential=`).
    Systemd(PathBuf),
    /// An existing key file beside the database.
    Existing(PathBuf),
    /// Generated just now, beside the database.
    Generated(PathBuf),
}

impl fmt::Display for KeyOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Configured(p) => write!(f, "configured key file {}", p.display()),
            Self::Systemd(p) => write!(f, "systemd credential {}", p.display()),
            Self::Existing(p) => write!(f, "key file {}", p.display()),
            Self::Generated(p) => write!(f, "newly generated key file {}", p.display()),
        }
    }
}

/// The key file name used beside the database.
pub const KEY_FILE_NAME: &str = "tributary.master-key";

/// The id of a key: `k` and the first 8 hex digits of a SHA-256 over it.
fn key_id(bytes: &[u8; 32]) -> String {
    let digest = Sha256::new().chain_update(b"tributary key id\0").chain_update(bytes).finalize();
    format!("k{}", &hex::encode(digest)[..8])
}

impl MasterKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let entry = KeyEntry { id: key_id(&bytes), key: SecretBox::new(Box::new(bytes)) };
        Self { ring: RwLock::new(Ring { keys: vec![entry], write: 0 }) }
    }

    /// A fresh random key.
    pub fn generate() -> Self {
        let key = chacha20poly1305::Key::generate();
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(key.as_slice());
        Self::from_bytes(bytes)
    }

    fn ring(&self) -> std::sync::RwLockReadGuard<'_, Ring> {
        self.ring.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The id of the key new values are sealed with.
    pub fn id(&self) -> String {
        let ring = self.ring();
        ring.keys[ring.write].id.clone()
    }

    /// The ids of every key of the ring (the sealing key first).
    pub fn ids(&self) -> Vec<String> {
        let ring = self.ring();
        let mut ids = vec![ring.keys[ring.write].id.clone()];
        ids.extend(ring.keys.iter().enumerate().filter(|(i, _)| *i != ring.write).map(|(_, k)| k.id.clone()));
        ids
    }

    /// Whether the ring holds the key `id`.
    pub fn holds(&self, id: &str) -> bool {
        self.ring().keys.iter().any(|k| k.id == id)
    }

    /// Takes `other`'s sealing key into the ring and seals with it from now on; the keys
    /// already held stay, for opening what they sealed.
    pub fn adopt(&self, other: MasterKey) {
        let other = other.ring.into_inner().unwrap_or_else(PoisonError::into_inner);
        let new_id = other.keys[other.write].id.clone();
        let mut ring = self.ring.write().unwrap_or_else(PoisonError::into_inner);
        for entry in other.keys {
            if !ring.keys.iter().any(|k| k.id == entry.id) {
                ring.keys.push(entry);
            }
        }
        if let Some(i) = ring.keys.iter().position(|k| k.id == new_id) {
            ring.write = i;
        }
    }

    /// Reads a key file: 32 raw bytes, or 64 hex digits with optional whitespace. A file
    /// other users may read or write is refused: the key opens every stored credential.
    pub fn read(path: &Path) -> Result<Self, SecretsError> {
        check_private(path)?;
        let data =
            Zeroizing::new(std::fs::read(path).map_err(|source| SecretsError::ReadKey { path: path.into(), source })?);
        let bad = || SecretsError::BadKey { path: path.into() };
        let mut bytes = [0u8; 32];
        if data.len() == 32 {
            bytes.copy_from_slice(&data);
        } else {
            let text = std::str::from_utf8(&data).map_err(|_| bad())?.trim();
            hex::decode_to_slice(text, &mut bytes).map_err(|_| bad())?;
        }
        Ok(Self::from_bytes(bytes))
    }

    /// Writes a new random key to `path` (created 0600, never over an existing file) and
    /// returns it.
    pub fn generate_file(path: &Path) -> Result<Self, SecretsError> {
        let key = Self::generate();
        let bytes = {
            let ring = key.ring();
            *ring.keys[0].key.expose_secret()
        };
        let bytes = Zeroizing::new(bytes);
        write_key_file(path, &bytes).map_err(|source| SecretsError::WriteKey { path: path.into(), source })?;
        Ok(key)
    }

    /// Finds the master key: a configured file, else `$CREDENTIALS_DIRECTORY/master-key`,
    /// else `<state_dir>/tributary.master-key`, generated (mode 0600) when missing.
    pub fn locate(
        configured: Option<&Path>,
        credentials_dir: Option<&Path>,
        state_dir: &Path,
    ) -> Result<(Self, KeyOrigin), SecretsError> {
        if let Some(found) = Self::find(configured, credentials_dir, state_dir) {
            return found;
        }
        let p = state_dir.join(KEY_FILE_NAME);
        let key = Self::generate_file(&p)?;
        Ok((key, KeyOrigin::Generated(p)))
    }

    /// [`Self::locate`] without generating: `None` when no key file exists where it looks.
    pub fn find(
        configured: Option<&Path>,
        credentials_dir: Option<&Path>,
        state_dir: &Path,
    ) -> Option<Result<(Self, KeyOrigin), SecretsError>> {
        if let Some(p) = configured {
            return Some(Self::read(p).map(|k| (k, KeyOrigin::Configured(p.into()))));
        }
        if let Some(dir) = credentials_dir {
            let p = dir.join("master-key");
            if p.is_file() {
                return Some(Self::read(&p).map(|k| (k, KeyOrigin::Systemd(p))));
            }
        }
        let p = state_dir.join(KEY_FILE_NAME);
        if p.exists() {
            return Some(Self::read(&p).map(|k| (k, KeyOrigin::Existing(p))));
        }
        None
    }

    /// Encrypts the credentials of a company connection: `plaintext` bound to (tenant,
    /// provider, this key's id).
    pub fn seal(&self, tenant: &TenantId, provider: &ProviderId, plaintext: &[u8]) -> SealedBlob {
        self.seal_as(Sealed::Credentials, tenant, provider, Owner::Company, plaintext)
    }

    /// Decrypts a company connection's credentials sealed for (tenant, provider).
    pub fn open(
        &self,
        tenant: &TenantId,
        provider: &ProviderId,
        blob: &SealedBlob,
    ) -> Result<Zeroizing<Vec<u8>>, SecretsError> {
        self.open_as(Sealed::Credentials, tenant, provider, Owner::Company, blob)
    }

    /// Encrypts `plaintext` as `what` of `owner`'s connection, bound to (tenant, provider,
    /// owner, the sealing key's id): a blob sealed as one kind of secret does not open as
    /// another, and a user's does not open as the company's (nor the other way round).
    pub fn seal_as(
        &self,
        what: Sealed,
        tenant: &TenantId,
        provider: &ProviderId,
        owner: Owner<'_>,
        plaintext: &[u8],
    ) -> SealedBlob {
        let ring = self.ring();
        let entry = &ring.keys[ring.write];
        seal_with(entry, &aad(what, tenant, provider, owner, &entry.id), plaintext)
    }

    /// Decrypts a blob sealed as `what` of `owner`'s connection to (tenant, provider),
    /// with whichever key of the ring sealed it.
    pub fn open_as(
        &self,
        what: Sealed,
        tenant: &TenantId,
        provider: &ProviderId,
        owner: Owner<'_>,
        blob: &SealedBlob,
    ) -> Result<Zeroizing<Vec<u8>>, SecretsError> {
        let fail = || SecretsError::Decrypt { tenant: tenant.to_string(), provider: provider.to_string() };
        let ring = self.ring();
        let entry = self.entry(&ring, blob)?;
        open_with(entry, &aad(what, tenant, provider, owner, &entry.id), blob).ok_or_else(fail)
    }

    /// The key of the ring that sealed `blob`.
    fn entry<'r>(&self, ring: &'r Ring, blob: &SealedBlob) -> Result<&'r KeyEntry, SecretsError> {
        ring.keys.iter().find(|k| k.id == blob.key_id).ok_or_else(|| SecretsError::WrongKey {
            sealed: blob.key_id.clone(),
            loaded: ring.keys.iter().map(|k| k.id.as_str()).collect::<Vec<_>>().join(", "),
        })
    }
}

/// `version || nonce || ciphertext+tag` of `plaintext` under `entry`'s key.
fn seal_with(entry: &KeyEntry, aad: &[u8], plaintext: &[u8]) -> SealedBlob {
    let nonce = XNonce::generate();
    // Encryption with a valid key and nonce cannot fail for in-memory buffers.
    let ciphertext = entry.cipher().encrypt(&nonce, Payload { msg: plaintext, aad }).unwrap_or_default();
    let mut bytes = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
    bytes.push(SEAL_VERSION);
    bytes.extend_from_slice(nonce.as_slice());
    bytes.extend_from_slice(&ciphertext);
    SealedBlob { key_id: entry.id.clone(), bytes }
}

/// The plaintext of `blob` under `entry`'s key; `None` if it does not authenticate.
fn open_with(entry: &KeyEntry, aad: &[u8], blob: &SealedBlob) -> Option<Zeroizing<Vec<u8>>> {
    if blob.bytes.len() < 1 + NONCE_LEN || blob.bytes[0] != SEAL_VERSION {
        return None;
    }
    let nonce = XNonce::try_from(&blob.bytes[1..1 + NONCE_LEN]).ok()?;
    entry.cipher().decrypt(&nonce, Payload { msg: &blob.bytes[1 + NONCE_LEN..], aad }).ok().map(Zeroizing::new)
}

impl MasterKey {
    /// Encrypts an outbound webhook endpoint's signing secret, bound to (endpoint id, the
    /// sealing key's id).
    pub fn seal_webhook_secret(&self, endpoint_id: &str, plaintext: &[u8]) -> SealedBlob {
        let ring = self.ring();
        let entry = &ring.keys[ring.write];
        seal_with(entry, &webhook_aad(endpoint_id, &entry.id), plaintext)
    }

    /// Decrypts an outbound webhook endpoint's signing secret.
    pub fn open_webhook_secret(
        &self,
        endpoint_id: &str,
        blob: &SealedBlob,
    ) -> Result<Zeroizing<Vec<u8>>, SecretsError> {
        let fail = || SecretsError::Decrypt { tenant: "-".into(), provider: format!("webhook endpoint {endpoint_id}") };
        let ring = self.ring();
        let entry = self.entry(&ring, blob)?;
        open_with(entry, &webhook_aad(endpoint_id, &entry.id), blob).ok_or_else(fail)
    }
}

/// Refuses a key file whose mode lets other users (group or others) read or write it.
#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), SecretsError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|source| SecretsError::ReadKey { path: path.into(), source })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(SecretsError::KeyFileOpen { path: path.into(), mode });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path) -> Result<(), SecretsError> {
    Ok(())
}

fn webhook_aad(endpoint_id: &str, key_id: &str) -> Vec<u8> {
    format!("tributary/webhook-secret/v1\0{endpoint_id}\0{key_id}").into_bytes()
}

/// What a sealed blob holds; part of its additional data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sealed {
    /// A connection's credentials (`connections.credentials`).
    Credentials,
    /// A connection's current access token (`connections.auth_state`).
    AuthState,
}

/// The additional data of a sealed blob. A company connection's is what it always was
/// (blobs stored before user connections existed still open); a user connection's adds
/// the user.
fn aad(what: Sealed, tenant: &TenantId, provider: &ProviderId, owner: Owner<'_>, key_id: &str) -> Vec<u8> {
    let domain = match what {
        Sealed::Credentials => "tributary/credentials/v1",
        Sealed::AuthState => "tributary/auth-state/v1",
    };
    match owner {
        Owner::Company => format!("{domain}\0{tenant}\0{provider}\0{key_id}").into_bytes(),
        Owner::User(user) => format!("{domain}\0{tenant}\0{provider}\0{key_id}\0user\0{user}").into_bytes(),
    }
}

#[cfg(unix)]
fn write_key_file(path: &Path, key: &[u8; 32]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    let text = Zeroizing::new(hex::encode(key));
    f.write_all(text.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_key_file(path: &Path, key: &[u8; 32]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(path)?;
    f.write_all(hex::encode(key).as_bytes())
}

/// The largest credential set accepted (its JSON text): 64 KiB, far above any real
/// key, token or certificate, far below what would strain the store.
pub const MAX_CREDENTIALS_BYTES: usize = 64 * 1024;

/// A provider credential set: field name → secret value. `Debug` shows names only.
#[derive(Default, Clone)]
pub struct Credentials(BTreeMap<String, SecretString>);

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.keys().map(|k| (k, "[redacted]"))).finish()
    }
}

impl Credentials {
    /// Parses a JSON object whose values are strings (numbers and booleans are kept as text).
    pub fn from_json(bytes: &[u8]) -> Result<Self, SecretsError> {
        if bytes.len() > MAX_CREDENTIALS_BYTES {
            return Err(SecretsError::BadCredentials(format!(
                "{} bytes is more than the limit of {MAX_CREDENTIALS_BYTES} bytes (64 KiB)",
                bytes.len()
            )));
        }
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| SecretsError::BadCredentials(format!("not valid JSON ({e})")))?;
        let Value::Object(map) = value else {
            return Err(SecretsError::BadCredentials("expected a JSON object".into()));
        };
        if map.is_empty() {
            return Err(SecretsError::BadCredentials("the object is empty".into()));
        }
        let mut out = BTreeMap::new();
        for (k, v) in map {
            let text = match v {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => {
                    return Err(SecretsError::BadCredentials(format!("field `{k}` must be a string")));
                }
            };
            out.insert(k, SecretString::from(text));
        }
        Ok(Self(out))
    }

    /// The JSON form, for sealing; wiped on drop.
    pub fn to_json(&self) -> Zeroizing<Vec<u8>> {
        let map: serde_json::Map<String, Value> =
            self.0.iter().map(|(k, v)| (k.clone(), Value::String(v.expose_secret().to_owned()))).collect();
        Zeroizing::new(serde_json::to_vec(&map).unwrap_or_default())
    }

    /// Replaces one field (a rotated refresh token).
    pub fn set(&mut self, name: &str, value: &str) {
        self.0.insert(name.to_owned(), SecretString::from(value.to_owned()));
    }

    pub fn get(&self, name: &str) -> Option<&SecretString> {
        self.0.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// Fields of `required` that are missing or empty.
    pub fn missing<'a>(&self, required: &'a [String]) -> Vec<&'a str> {
        required
            .iter()
            .filter(|r| self.0.get(r.as_str()).is_none_or(|v| v.expose_secret().trim().is_empty()))
            .map(String::as_str)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::UserId;

    fn ids() -> (TenantId, ProviderId) {
        (TenantId::parse("acme").unwrap(), ProviderId::parse("aptem").unwrap())
    }

    #[test]
    fn seal_open_round_trip_and_binding() {
        let key = MasterKey::generate();
        let (t, p) = ids();
        let blob = key.seal(&t, &p, b"{\"api_token\":\"s3cret\"}");
        assert!(!blob.bytes.windows(6).any(|w| w == b"s3cret"));
        assert_eq!(&key.open(&t, &p, &blob).unwrap()[..], b"{\"api_token\":\"s3cret\"}");
        // Bound to tenant and provider: moving the blob fails.
        let other_t = TenantId::parse("globex").unwrap();
        assert!(matches!(key.open(&other_t, &p, &blob), Err(SecretsError::Decrypt { .. })));
        let other_p = ProviderId::parse("hubspot").unwrap();
        assert!(matches!(key.open(&t, &other_p, &blob), Err(SecretsError::Decrypt { .. })));
        // Another key is refused by id; a forged id still fails authentication.
        let other = MasterKey::generate();
        assert!(matches!(other.open(&t, &p, &blob), Err(SecretsError::WrongKey { .. })));
        let forged = SealedBlob { key_id: other.id().to_owned(), bytes: blob.bytes.clone() };
        assert!(matches!(other.open(&t, &p, &forged), Err(SecretsError::Decrypt { .. })));
        // Tampering is detected.
        let mut tampered = blob.clone();
        let last = tampered.bytes.len() - 1;
        tampered.bytes[last] ^= 1;
        assert!(key.open(&t, &p, &tampered).is_err());
        assert!(key.open(&t, &p, &SealedBlob { key_id: key.id(), bytes: vec![1, 2] }).is_err());
    }

    #[test]
    fn tokens_and_credentials_do_not_open_as_each_other() {
        let key = MasterKey::generate();
        let (t, p) = ids();
        let company = Owner::Company;
        let token = key.seal_as(Sealed::AuthState, &t, &p, company, b"{\"access_token\":\"at\"}");
        assert_eq!(&key.open_as(Sealed::AuthState, &t, &p, company, &token).unwrap()[..], b"{\"access_token\":\"at\"}");
        assert!(matches!(key.open(&t, &p, &token), Err(SecretsError::Decrypt { .. })));
        let creds = key.seal(&t, &p, b"{}");
        assert!(matches!(key.open_as(Sealed::AuthState, &t, &p, company, &creds), Err(SecretsError::Decrypt { .. })));
    }

    #[test]
    fn user_and_company_secrets_do_not_open_as_each_other() {
        let key = MasterKey::generate();
        let (t, p) = ids();
        let (bob, carol) = (UserId::parse("bob").unwrap(), UserId::parse("carol").unwrap());
        let company = key.seal(&t, &p, b"{\"refresh_token\":\"company\"}");
        let bobs = key.seal_as(Sealed::Credentials, &t, &p, Owner::User(&bob), b"{\"refresh_token\":\"bob\"}");
        assert_eq!(
            &key.open_as(Sealed::Credentials, &t, &p, Owner::User(&bob), &bobs).unwrap()[..],
            b"{\"refresh_token\":\"bob\"}"
        );
        // Bob's credentials moved onto the company connection (or Carol's) do not open,
        // nor do the company's on Bob's connection.
        assert!(matches!(key.open(&t, &p, &bobs), Err(SecretsError::Decrypt { .. })));
        let as_carol = key.open_as(Sealed::Credentials, &t, &p, Owner::User(&carol), &bobs);
        assert!(matches!(as_carol, Err(SecretsError::Decrypt { .. })));
        let as_bob = key.open_as(Sealed::Credentials, &t, &p, Owner::User(&bob), &company);
        assert!(matches!(as_bob, Err(SecretsError::Decrypt { .. })));
        // A user's token is bound to the user as well.
        let token = key.seal_as(Sealed::AuthState, &t, &p, Owner::User(&bob), b"{}");
        assert!(key.open_as(Sealed::AuthState, &t, &p, Owner::Company, &token).is_err());
    }

    #[test]
    fn nonces_differ_between_seals() {
        let key = MasterKey::generate();
        let (t, p) = ids();
        assert_ne!(key.seal(&t, &p, b"x").bytes, key.seal(&t, &p, b"x").bytes);
    }

    #[test]
    fn key_file_is_generated_once_with_mode_0600_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (k1, o1) = MasterKey::locate(None, None, dir.path()).unwrap();
        assert!(matches!(o1, KeyOrigin::Generated(_)));
        let (k2, o2) = MasterKey::locate(None, None, dir.path()).unwrap();
        assert!(matches!(o2, KeyOrigin::Existing(_)));
        assert_eq!(k1.id(), k2.id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE_NAME)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn key_sources_in_order_and_bad_files_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("creds");
        std::fs::create_dir(&creds).unwrap();
        write_private(&creds.join("master-key"), &[7u8; 32]);
        let configured = dir.path().join("configured");
        write_private(&configured, format!("{}\n", "ab".repeat(32)).as_bytes());
        let (k, o) = MasterKey::locate(Some(&configured), Some(&creds), dir.path()).unwrap();
        assert_eq!(o, KeyOrigin::Configured(configured.clone()));
        assert_eq!(k.id(), MasterKey::from_bytes([0xab; 32]).id());
        let (k, o) = MasterKey::locate(None, Some(&creds), dir.path()).unwrap();
        assert!(matches!(o, KeyOrigin::Systemd(_)));
        assert_eq!(k.id(), MasterKey::from_bytes([7; 32]).id());
        std::fs::write(&configured, "too short").unwrap();
        assert!(matches!(MasterKey::read(&configured), Err(SecretsError::BadKey { .. })));
    }

    fn write_private(path: &Path, bytes: &[u8]) {
        std::fs::write(path, bytes).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_others_may_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        write_private(&path, "cd".repeat(32).as_bytes());
        assert!(MasterKey::read(&path).is_ok());
        for mode in [0o644, 0o640, 0o604, 0o620] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = MasterKey::read(&path).unwrap_err();
            assert!(matches!(err, SecretsError::KeyFileOpen { mode: m, .. } if m == mode), "{mode:o}: {err}");
            let text = err.to_string();
            assert!(text.contains(&format!("{mode:04o}")) && text.contains("chmod 600"), "{text}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(MasterKey::read(&path).is_ok());
    }

    #[test]
    fn a_ring_opens_with_every_key_and_seals_with_the_adopted_one() {
        let (t, p) = ids();
        let old = MasterKey::from_bytes([1; 32]);
        let old_id = old.id();
        let by_old = old.seal(&t, &p, b"old");
        let hook_old = old.seal_webhook_secret("ep1", b"whsec");
        let new = MasterKey::from_bytes([2; 32]);
        let new_id = new.id();
        assert_ne!(old_id, new_id);
        // A process holding only the new key names both ids when it meets the old one.
        let err = new.open(&t, &p, &by_old).unwrap_err().to_string();
        assert!(err.contains(&old_id) && err.contains(&new_id), "{err}");
        old.adopt(new);
        assert_eq!(old.id(), new_id);
        assert_eq!(old.ids(), vec![new_id.clone(), old_id.clone()]);
        assert!(old.holds(&old_id) && old.holds(&new_id) && !old.holds("kffffffff"));
        let by_new = old.seal(&t, &p, b"new");
        assert_eq!(by_new.key_id, new_id);
        assert_eq!(&old.open(&t, &p, &by_old).unwrap()[..], b"old");
        assert_eq!(&old.open(&t, &p, &by_new).unwrap()[..], b"new");
        assert_eq!(&old.open_webhook_secret("ep1", &hook_old).unwrap()[..], b"whsec");
        assert_eq!(old.seal_webhook_secret("ep1", b"x").key_id, new_id);
        // The key id is part of the additional data: relabelling a blob does not open it.
        let relabelled = SealedBlob { key_id: old_id.clone(), bytes: by_new.bytes.clone() };
        assert!(matches!(old.open(&t, &p, &relabelled), Err(SecretsError::Decrypt { .. })));
    }

    #[test]
    fn credentials_parse_redact_and_report_missing() {
        let c = Credentials::from_json(br#"{"client_id":"abc","client_secret":"topsecret","port":5}"#).unwrap();
        let debug = format!("{c:?}");
        assert!(debug.contains("client_secret") && !debug.contains("topsecret") && !debug.contains("abc"));
        let required = vec!["client_id".to_owned(), "refresh_token".to_owned()];
        assert_eq!(c.missing(&required), vec!["refresh_token"]);
        assert_eq!(c.get("port").map(|s| s.expose_secret().to_owned()), Some("5".into()));
        for bad in [&b"[1]"[..], b"not json", b"{}", br#"{"a":{"b":1}}"#] {
            assert!(Credentials::from_json(bad).is_err());
        }
        let key = MasterKey::from_bytes([0x3c; 32]);
        assert!(!format!("{key:?}").contains(&hex::encode([0x3c; 32])));
    }
}
