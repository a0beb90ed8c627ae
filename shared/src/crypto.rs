//! Recipient phone numbers at rest: envelope encryption with a KMS key.
//!
//! A writer (api, order-sync) asks KMS for one data key (`GenerateDataKey`, AES_256) the first
//! time it seals a phone in a container and keeps it for the container's life; every phone is
//! then sealed locally with AES-256-GCM under a fresh random 96-bit nonce. The sealed form
//! ([`SealedPhone`]) carries the data key as KMS wrapped it, so a reader (the notifier) unwraps
//! it with one `Decrypt` per data key and container, cached, and never per SMS. Everything
//! else (tracker, scheduler, pushes) carries the sealed form opaque and needs no key.
//!
//! `pw1.<last4>.<wrapped key>.<nonce>.<ciphertext>`: the version and the last four digits are
//! the AEAD's associated data, so neither can be changed without the open failing. KMS binds
//! the wrapped key to the encryption context `purpose=parcelwatch-phone`.

use crate::config::{ConfigError, Env};
use crate::domain::ids::SEALED_PHONE_PREFIX;
use crate::domain::{PhoneLast4, PhoneNumber, SealedPhone};
use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use zeroize::Zeroize;

/// The KMS key (id, ARN or alias) that wraps the data keys.
pub const PHONE_KEY_ID: &str = "PHONE_KEY_ID";
/// The KMS encryption context of every data key.
const CONTEXT: (&str, &str) = ("purpose", "parcelwatch-phone");
/// The wrapped-key bytes of a [`Vault::ephemeral`] vault (no KMS).
const EPHEMERAL_WRAPPED: &[u8] = b"ephemeral-local-key";
/// The sealed phone of the sample stream events (`events/notifier/*.json`): a stand-in of the
/// right shape that no key opens. Tests and `make stack` replace it by a phone sealed with their
/// own key.
pub const SAMPLE_EVENT_PHONE: &str =
    "pw1.5678.U0FNUExFLXdyYXBwZWQta2V5.U0FNUExFLW5vbmNl.U0FNUExFLWNpcGhlcnRleHQ";
/// Unwrapped data keys kept by a reader; beyond this the cache starts over.
const MAX_CACHED_KEYS: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VaultError {
    /// KMS throttled, failed or was unreachable: try again later.
    #[error("phone key service temporarily failed: {0}")]
    Retryable(String),
    /// No key configured, access denied, or a sealed phone that does not open: retrying will
    /// not help.
    #[error("phone vault: {0}")]
    Permanent(String),
}

impl VaultError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, VaultError::Retryable(_))
    }
}

enum KeySource {
    Kms {
        client: aws_sdk_kms::Client,
        key_id: String,
    },
    /// A random key that never leaves the process: unit tests and offline tools.
    Ephemeral(Arc<Aes256Gcm>),
    Disabled,
}

struct DataKey {
    cipher: Arc<Aes256Gcm>,
    wrapped: String,
}

struct Inner {
    keys: KeySource,
    writer: tokio::sync::OnceCell<DataKey>,
    readers: Mutex<HashMap<String, Arc<Aes256Gcm>>>,
    key_service_calls: AtomicU64,
}

/// Seals and opens recipient phone numbers. Cheap to clone (one shared cache).
#[derive(Clone)]
pub struct Vault {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.inner.keys {
            KeySource::Kms { key_id, .. } => format!("kms:{key_id}"),
            KeySource::Ephemeral(_) => "ephemeral".into(),
            KeySource::Disabled => "disabled".into(),
        };
        write!(f, "Vault({kind})")
    }
}

impl Vault {
    fn with(keys: KeySource) -> Vault {
        Vault {
            inner: Arc::new(Inner {
                keys,
                writer: tokio::sync::OnceCell::new(),
                readers: Mutex::new(HashMap::new()),
                key_service_calls: AtomicU64::new(0),
            }),
        }
    }

    /// Data keys from (and unwrapped by) the KMS key `key_id`.
    pub fn kms(client: aws_sdk_kms::Client, key_id: impl Into<String>) -> Vault {
        Vault::with(KeySource::Kms {
            client,
            key_id: key_id.into(),
        })
    }

    /// The KMS vault of `PHONE_KEY_ID` (required).
    pub fn from_env(sdk: &aws_config::SdkConfig, env: &dyn Env) -> Result<Vault, ConfigError> {
        let key_id = crate::config::required(env, PHONE_KEY_ID)?;
        Ok(Vault::kms(aws_sdk_kms::Client::new(sdk), key_id))
    }

    /// A vault with a random in-process key: what it seals only it can open. For tests.
    pub fn ephemeral() -> Vault {
        let key = Aes256Gcm::generate_key(OsRng);
        Vault::with(KeySource::Ephemeral(Arc::new(Aes256Gcm::new(&key))))
    }

    /// A vault without a key: sealing and opening fail (Permanent).
    pub fn disabled() -> Vault {
        Vault::with(KeySource::Disabled)
    }

    /// How many times this vault called the key service (GenerateDataKey + Decrypt).
    pub fn key_service_calls(&self) -> u64 {
        self.inner.key_service_calls.load(Ordering::Relaxed)
    }

    /// Seal a phone under this container's data key (fetched from KMS on first use).
    pub async fn seal(&self, phone: &PhoneNumber) -> Result<SealedPhone, VaultError> {
        let key = self
            .inner
            .writer
            .get_or_try_init(|| self.new_data_key())
            .await?;
        let last4 = PhoneLast4::from(phone);
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let aad = associated_data(last4.last4());
        let ciphertext = key
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: phone.expose().as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| VaultError::Permanent("AES-GCM sealing failed".into()))?;
        let sealed = format!(
            "{aad}.{}.{}.{}",
            key.wrapped,
            B64.encode(nonce),
            B64.encode(ciphertext)
        );
        SealedPhone::parse(&sealed).map_err(VaultError::Permanent)
    }

    /// The clear phone number of a sealed one (one KMS `Decrypt` per data key, then cached).
    pub async fn open(&self, sealed: &SealedPhone) -> Result<PhoneNumber, VaultError> {
        let (wrapped, nonce, ciphertext) = sealed.parts();
        let cipher = self.reader_key(wrapped).await?;
        let bad = |what: &str| VaultError::Permanent(format!("sealed phone {sealed}: {what}"));
        let nonce = B64.decode(nonce).map_err(|_| bad("nonce is not base64"))?;
        if nonce.len() != 12 {
            return Err(bad("nonce is not 96 bits"));
        }
        let ciphertext = B64
            .decode(ciphertext)
            .map_err(|_| bad("ciphertext is not base64"))?;
        let aad = associated_data(sealed.last4());
        let mut clear = cipher
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| bad("does not open (wrong key or altered)"))?;
        let phone = std::str::from_utf8(&clear)
            .ok()
            .and_then(|s| PhoneNumber::parse(s).ok());
        clear.zeroize();
        let phone = phone.ok_or_else(|| bad("opens to no phone number"))?;
        if phone.last4() != sealed.last4() {
            return Err(bad("last four digits do not match"));
        }
        Ok(phone)
    }

    async fn new_data_key(&self) -> Result<DataKey, VaultError> {
        let (cipher, wrapped) = match &self.inner.keys {
            KeySource::Kms { client, key_id } => {
                self.inner.key_service_calls.fetch_add(1, Ordering::Relaxed);
                let out = client
                    .generate_data_key()
                    .key_id(key_id)
                    .key_spec(aws_sdk_kms::types::DataKeySpec::Aes256)
                    .encryption_context(CONTEXT.0, CONTEXT.1)
                    .send()
                    .await
                    .map_err(classify)?;
                let wrapped = out
                    .ciphertext_blob
                    .ok_or_else(|| {
                        VaultError::Permanent("GenerateDataKey: no CiphertextBlob".into())
                    })?
                    .into_inner();
                let plaintext = out
                    .plaintext
                    .ok_or_else(|| VaultError::Permanent("GenerateDataKey: no Plaintext".into()))?;
                (cipher_of(plaintext.into_inner())?, wrapped)
            }
            KeySource::Ephemeral(c) => (Arc::clone(c), EPHEMERAL_WRAPPED.to_vec()),
            KeySource::Disabled => return Err(disabled()),
        };
        let wrapped = B64.encode(wrapped);
        self.cache(&wrapped, Arc::clone(&cipher));
        tracing::info!(
            key_service_calls = self.key_service_calls(),
            "phone data key ready"
        );
        Ok(DataKey { cipher, wrapped })
    }

    async fn reader_key(&self, wrapped: &str) -> Result<Arc<Aes256Gcm>, VaultError> {
        if let Some(c) = self.cached(wrapped) {
            return Ok(c);
        }
        let blob = B64
            .decode(wrapped)
            .map_err(|_| VaultError::Permanent("wrapped data key is not base64".into()))?;
        let cipher = match &self.inner.keys {
            KeySource::Kms { client, key_id } => {
                self.inner.key_service_calls.fetch_add(1, Ordering::Relaxed);
                let out = client
                    .decrypt()
                    .key_id(key_id)
                    .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(blob))
                    .encryption_context(CONTEXT.0, CONTEXT.1)
                    .send()
                    .await
                    .map_err(classify)?;
                let plaintext = out
                    .plaintext
                    .ok_or_else(|| VaultError::Permanent("Decrypt: no Plaintext".into()))?;
                cipher_of(plaintext.into_inner())?
            }
            KeySource::Ephemeral(c) if blob == EPHEMERAL_WRAPPED => Arc::clone(c),
            KeySource::Ephemeral(_) => {
                return Err(VaultError::Permanent(
                    "sealed under a key this vault does not hold".into(),
                ))
            }
            KeySource::Disabled => return Err(disabled()),
        };
        self.cache(wrapped, Arc::clone(&cipher));
        Ok(cipher)
    }

    fn cached(&self, wrapped: &str) -> Option<Arc<Aes256Gcm>> {
        self.inner
            .readers
            .lock()
            .ok()
            .and_then(|m| m.get(wrapped).cloned())
    }

    fn cache(&self, wrapped: &str, cipher: Arc<Aes256Gcm>) {
        if let Ok(mut m) = self.inner.readers.lock() {
            if m.len() >= MAX_CACHED_KEYS {
                m.clear();
            }
            m.insert(wrapped.to_string(), cipher);
        }
    }
}

fn associated_data(last4: &str) -> String {
    format!("{SEALED_PHONE_PREFIX}.{last4}")
}

fn disabled() -> VaultError {
    VaultError::Permanent(format!("no phone key configured ({PHONE_KEY_ID})"))
}

/// An AES-256-GCM cipher from a plaintext data key, which is wiped once the cipher holds it.
fn cipher_of(mut key: Vec<u8>) -> Result<Arc<Aes256Gcm>, VaultError> {
    let cipher = Aes256Gcm::new_from_slice(&key);
    key.zeroize();
    cipher
        .map(Arc::new)
        .map_err(|_| VaultError::Permanent("data key is not 256 bits".into()))
}

fn classify<E>(
    e: aws_sdk_kms::error::SdkError<E, aws_sdk_kms::config::http::HttpResponse>,
) -> VaultError
where
    E: aws_sdk_kms::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let f = crate::aws_error::read(&e);
    if f.transient {
        VaultError::Retryable(f.message)
    } else {
        VaultError::Permanent(f.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phone(s: &str) -> PhoneNumber {
        PhoneNumber::parse(s).unwrap()
    }

    #[tokio::test]
    async fn sealed_phones_open_to_the_number_and_hide_it() {
        let vault = Vault::ephemeral();
        let p = phone("13812345678");
        let a = vault.seal(&p).await.unwrap();
        let b = vault.seal(&p).await.unwrap();
        // A fresh nonce per seal: the same number never seals the same way twice.
        assert_ne!(a.as_str(), b.as_str());
        for s in [&a, &b] {
            assert!(s.as_str().starts_with("pw1.5678."), "{}", s.as_str());
            assert!(!s.as_str().contains("13812345678"));
            assert!(!s.as_str().contains("3812345"));
            assert_eq!(vault.open(s).await.unwrap(), p);
        }
        // Stored and read back as a string, it still opens.
        let again = SealedPhone::parse(a.as_str()).unwrap();
        assert_eq!(vault.open(&again).await.unwrap().expose(), "+8613812345678");
        assert_eq!(vault.key_service_calls(), 0);
    }

    #[tokio::test]
    async fn altered_or_foreign_sealed_phones_do_not_open() {
        let vault = Vault::ephemeral();
        let s = vault.seal(&phone("13812345678")).await.unwrap();
        // The last four are authenticated.
        let relabelled = SealedPhone::parse(&s.as_str().replacen("5678", "0000", 1)).unwrap();
        assert!(matches!(
            vault.open(&relabelled).await,
            Err(VaultError::Permanent(_))
        ));
        // A flipped ciphertext byte.
        let (w, n, c) = s.parts();
        let mut ct = B64.decode(c).unwrap();
        ct[0] ^= 1;
        let flipped = SealedPhone::parse(&format!("pw1.5678.{w}.{n}.{}", B64.encode(ct))).unwrap();
        let err = vault.open(&flipped).await.unwrap_err();
        assert!(!err.is_retryable());
        assert!(!err.to_string().contains("13812345678"), "{err}");
        // Another vault's key.
        assert!(Vault::ephemeral().open(&s).await.is_err());
        // No key at all.
        let off = Vault::disabled();
        assert_eq!(
            off.seal(&phone("13812345678")).await.unwrap_err(),
            VaultError::Permanent("no phone key configured (PHONE_KEY_ID)".into())
        );
        assert!(off.open(&s).await.is_err());
    }

    #[tokio::test]
    async fn a_vault_is_shared_by_its_clones() {
        let vault = Vault::ephemeral();
        let other = vault.clone();
        let s = vault.seal(&phone("+447700900123")).await.unwrap();
        assert_eq!(other.open(&s).await.unwrap().expose(), "+447700900123");
        assert_eq!(format!("{vault:?}"), "Vault(ephemeral)");
    }
}
