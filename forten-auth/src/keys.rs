//! Signing and verifying keys, and the rotatable [`KeySet`] verifiers read.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};

use crate::error::AuthError;

/// The shortest HS256 secret accepted (RFC 7518 3.2: at least the hash size).
pub const MIN_HMAC_SECRET_BYTES: usize = 32;

fn key_err(what: &'static str) -> impl FnOnce(jsonwebtoken::errors::Error) -> AuthError {
    move |source| AuthError::Key { what, source }
}

fn check_secret(secret: &[u8]) -> Result<(), AuthError> {
    if secret.len() < MIN_HMAC_SECRET_BYTES {
        return Err(AuthError::Config(format!(
            "an HS256 secret must be at least {MIN_HMAC_SECRET_BYTES} bytes (got {}); \
             generate 32 random bytes",
            secret.len()
        )));
    }
    Ok(())
}

/// A key that signs tokens: an algorithm, the private key (or shared secret)
/// and an optional `kid` written into each token's header.
///
/// ```
/// use forten_auth::SigningKey;
/// let key = SigningKey::hs256(&[7u8; 32]).unwrap().with_kid("2026-11");
/// assert_eq!(key.kid(), Some("2026-11"));
/// ```
#[derive(Clone)]
pub struct SigningKey {
    kid: Option<Arc<str>>,
    alg: Algorithm,
    key: EncodingKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// An HS256 shared secret (at least 32 bytes).
    pub fn hs256(secret: &[u8]) -> Result<Self, AuthError> {
        check_secret(secret)?;
        Ok(Self::new(
            Algorithm::HS256,
            EncodingKey::from_secret(secret),
        ))
    }

    /// An Ed25519 private key in PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub fn ed25519_pem(pem: &[u8]) -> Result<Self, AuthError> {
        let key = EncodingKey::from_ed_pem(pem).map_err(key_err("Ed25519 private"))?;
        Self::checked(Algorithm::EdDSA, key, "Ed25519 private")
    }

    /// An Ed25519 private key in PKCS#8 DER.
    pub fn ed25519_pkcs8_der(der: &[u8]) -> Result<Self, AuthError> {
        Self::checked(
            Algorithm::EdDSA,
            EncodingKey::from_ed_der(der),
            "Ed25519 private",
        )
    }

    /// A P-256 (ES256) private key in PKCS#8 PEM.
    pub fn es256_pem(pem: &[u8]) -> Result<Self, AuthError> {
        let key = EncodingKey::from_ec_pem(pem).map_err(key_err("P-256 private"))?;
        Self::checked(Algorithm::ES256, key, "P-256 private")
    }

    /// A P-256 (ES256) private key in PKCS#8 DER.
    pub fn es256_pkcs8_der(der: &[u8]) -> Result<Self, AuthError> {
        Self::checked(
            Algorithm::ES256,
            EncodingKey::from_ec_der(der),
            "P-256 private",
        )
    }

    fn new(alg: Algorithm, key: EncodingKey) -> Self {
        SigningKey {
            kid: None,
            alg,
            key,
        }
    }

    /// Loads the key by signing once, so a bad key fails at start-up, not at the first request.
    fn checked(alg: Algorithm, key: EncodingKey, what: &'static str) -> Result<Self, AuthError> {
        let k = Self::new(alg, key);
        jsonwebtoken::crypto::sign(b"forten-auth key check", &k.key, alg).map_err(key_err(what))?;
        Ok(k)
    }

    /// Names this key; the `kid` goes into every token's header so verifiers can pick the key.
    pub fn with_kid(mut self, kid: impl Into<Arc<str>>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// The key id, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The algorithm this key signs with.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    pub(crate) fn encoding_key(&self) -> &EncodingKey {
        &self.key
    }

    /// The JWS header this key signs with: its algorithm, `typ: JWT` and its `kid`.
    pub fn header(&self) -> Header {
        let mut header = Header::new(self.alg);
        header.kid = self.kid.as_deref().map(str::to_owned);
        header
    }

    /// Signs `claims` into a compact JWT with [`header`](Self::header) (an
    /// issuer of user tokens uses this; service tokens come from
    /// [`ServiceAuth`](crate::ServiceAuth)).
    pub fn sign<T: serde::Serialize>(&self, claims: &T) -> Result<String, AuthError> {
        self.sign_with_header(&self.header(), claims)
    }

    /// Signs `claims` with a custom `header`, whose `alg` must be this key's.
    pub fn sign_with_header<T: serde::Serialize>(
        &self,
        header: &Header,
        claims: &T,
    ) -> Result<String, AuthError> {
        if header.alg != self.alg {
            return Err(AuthError::Config(format!(
                "header alg {:?} differs from the key's {:?}",
                header.alg, self.alg
            )));
        }
        jsonwebtoken::encode(header, claims, &self.key).map_err(AuthError::Sign)
    }

    /// The matching verifying key (same `kid`): the secret itself for HS256,
    /// the public key for Ed25519 / ES256.
    ///
    /// Ed25519 keys must be PKCS#8 v1 (the 48-byte form `openssl genpkey` writes) to
    /// derive the public half here; otherwise load the public key with
    /// [`VerifyingKey::ed25519_pem`].
    pub fn verifying_key(&self) -> Result<VerifyingKey, AuthError> {
        let decoding = match self.alg {
            Algorithm::HS256 => DecodingKey::from_secret(self.key.as_bytes()),
            alg => {
                let jwk = Jwk::from_encoding_key(&self.key, alg).map_err(key_err("public"))?;
                DecodingKey::from_jwk(&jwk).map_err(key_err("public"))?
            }
        };
        Ok(VerifyingKey {
            kid: self.kid.clone(),
            issuer: None,
            alg: self.alg,
            key: decoding,
        })
    }
}

/// A key that verifies tokens: one algorithm (a token is checked only with
/// the algorithm its key was registered for, whatever its header claims), the
/// public key or shared secret, and an optional `kid`.
#[derive(Clone)]
pub struct VerifyingKey {
    kid: Option<Arc<str>>,
    issuer: Option<Arc<str>>,
    alg: Algorithm,
    key: DecodingKey,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("issuer", &self.issuer)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl VerifyingKey {
    /// An HS256 shared secret (at least 32 bytes).
    pub fn hs256(secret: &[u8]) -> Result<Self, AuthError> {
        check_secret(secret)?;
        Ok(Self::new(
            Algorithm::HS256,
            DecodingKey::from_secret(secret),
        ))
    }

    /// An Ed25519 public key in SPKI PEM (`-----BEGIN PUBLIC KEY-----`).
    pub fn ed25519_pem(pem: &[u8]) -> Result<Self, AuthError> {
        let key = DecodingKey::from_ed_pem(pem).map_err(key_err("Ed25519 public"))?;
        Ok(Self::new(Algorithm::EdDSA, key))
    }

    /// An Ed25519 public key as its 32 raw bytes.
    pub fn ed25519_raw(public: &[u8]) -> Result<Self, AuthError> {
        if public.len() != 32 {
            return Err(AuthError::Config(format!(
                "an Ed25519 public key is 32 bytes (got {})",
                public.len()
            )));
        }
        Ok(Self::new(
            Algorithm::EdDSA,
            DecodingKey::from_ed_der(public),
        ))
    }

    /// A P-256 (ES256) public key in SPKI PEM.
    pub fn es256_pem(pem: &[u8]) -> Result<Self, AuthError> {
        let key = DecodingKey::from_ec_pem(pem).map_err(key_err("P-256 public"))?;
        Ok(Self::new(Algorithm::ES256, key))
    }

    /// A P-256 (ES256) public key as its uncompressed point (65 bytes, `04 || x || y`).
    pub fn es256_uncompressed(point: &[u8]) -> Result<Self, AuthError> {
        if point.len() != 65 || point.first() != Some(&4) {
            return Err(AuthError::Config(
                "a P-256 public point is 65 bytes starting with 0x04".to_owned(),
            ));
        }
        Ok(Self::new(Algorithm::ES256, DecodingKey::from_ec_der(point)))
    }

    /// A public key from a JWK. Symmetric (`oct`) keys are refused: a JWKS
    /// publishes public keys only. The algorithm is the JWK's `alg`, or for
    /// keys without one: Ed25519 -> EdDSA, P-256 -> ES256, P-384 -> ES384, RSA -> RS256.
    /// The `kid` is the JWK's.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, AuthError> {
        let by_type = match &jwk.algorithm {
            AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
                Algorithm::EdDSA
            }
            AlgorithmParameters::EllipticCurve(p) => match p.curve {
                EllipticCurve::P256 => Algorithm::ES256,
                EllipticCurve::P384 => Algorithm::ES384,
                _ => return Err(AuthError::Config("unsupported JWK curve".to_owned())),
            },
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            _ => {
                return Err(AuthError::Config(
                    "only public JWKs (OKP Ed25519, EC P-256/P-384, RSA) are accepted".to_owned(),
                ));
            }
        };
        let alg = match jwk.common.key_algorithm {
            None => by_type,
            Some(ka) => {
                let alg = Algorithm::try_from(ka).map_err(key_err("JWK"))?;
                if alg.family() != by_type.family() || matches!(ka, KeyAlgorithm::UNKNOWN_ALGORITHM)
                {
                    return Err(AuthError::Config(format!(
                        "JWK alg {ka} does not fit its key type"
                    )));
                }
                alg
            }
        };
        let key = DecodingKey::from_jwk(jwk).map_err(key_err("JWK"))?;
        Ok(VerifyingKey {
            kid: jwk.common.key_id.as_deref().map(Arc::from),
            issuer: None,
            alg,
            key,
        })
    }

    fn new(alg: Algorithm, key: DecodingKey) -> Self {
        VerifyingKey {
            kid: None,
            issuer: None,
            alg,
            key,
        }
    }

    /// Names this key; tokens whose header carries this `kid` are checked with it.
    pub fn with_kid(mut self, kid: impl Into<Arc<str>>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// The key id, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// Binds this key to one issuer: a token it verifies must carry this `iss`
    /// (which must also be allowed by the verifier). With one key pair per
    /// calling service, this stops a caller from minting tokens in another
    /// caller's name with its own key.
    pub fn bound_to_issuer(mut self, issuer: impl Into<Arc<str>>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// The issuer this key is bound to, if any.
    pub fn issuer(&self) -> Option<&str> {
        self.issuer.as_deref()
    }

    /// The one algorithm this key verifies.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    pub(crate) fn decoding_key(&self) -> &DecodingKey {
        &self.key
    }
}

/// The verifying keys a verifier trusts, shared and swappable at run time:
/// clones share the same set, so rotating a key on one handle is seen by
/// every layer built from it.
///
/// Rotation: [`insert`](KeySet::insert) the new key (verifiers accept both),
/// switch signers to it, then [`retire`](KeySet::retire) the old `kid`.
///
/// ```
/// use forten_auth::{KeySet, VerifyingKey};
/// let keys = KeySet::new([VerifyingKey::hs256(&[1u8; 32]).unwrap().with_kid("old")]);
/// keys.insert(VerifyingKey::hs256(&[2u8; 32]).unwrap().with_kid("new"));
/// assert!(keys.retire("old"));
/// assert_eq!(keys.kids(), vec!["new".to_owned()]);
/// ```
#[derive(Clone, Default)]
pub struct KeySet {
    inner: Arc<RwLock<Arc<[VerifyingKey]>>>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.snapshot().iter()).finish()
    }
}

impl KeySet {
    /// A set holding `keys` (a later key with the same `kid` replaces an earlier one).
    pub fn new(keys: impl IntoIterator<Item = VerifyingKey>) -> Self {
        let set = KeySet::default();
        for key in keys {
            set.insert(key);
        }
        set
    }

    /// Adds a key; a key with the same `kid` (or, without kid, the same
    /// algorithm and no kid) is replaced.
    pub fn insert(&self, key: VerifyingKey) {
        let mut keys: Vec<VerifyingKey> = self
            .snapshot()
            .iter()
            .filter(|k| !(k.kid == key.kid && (key.kid.is_some() || k.alg == key.alg)))
            .cloned()
            .collect();
        keys.push(key);
        self.store(keys.into());
    }

    /// Removes the key named `kid`; tokens signed with it stop verifying at once.
    /// Returns whether a key was removed.
    pub fn retire(&self, kid: &str) -> bool {
        let before = self.snapshot();
        let keys: Vec<VerifyingKey> = before
            .iter()
            .filter(|k| k.kid.as_deref() != Some(kid))
            .cloned()
            .collect();
        let removed = keys.len() != before.len();
        self.store(keys.into());
        removed
    }

    /// Replaces the whole set.
    pub fn replace(&self, keys: impl IntoIterator<Item = VerifyingKey>) {
        self.store(keys.into_iter().collect());
    }

    /// The key ids in the set (keys without a kid are not listed).
    pub fn kids(&self) -> Vec<String> {
        self.snapshot()
            .iter()
            .filter_map(|k| k.kid.as_deref().map(str::to_owned))
            .collect()
    }

    /// How many keys the set holds.
    pub fn len(&self) -> usize {
        self.snapshot().len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The algorithms of the keys in the set (deduplicated).
    pub(crate) fn algorithms(&self) -> Vec<Algorithm> {
        let mut algs: Vec<Algorithm> = Vec::new();
        for k in self.snapshot().iter() {
            if !algs.contains(&k.alg) {
                algs.push(k.alg);
            }
        }
        algs
    }

    pub(crate) fn snapshot(&self) -> Arc<[VerifyingKey]> {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn store(&self, keys: Arc<[VerifyingKey]>) {
        *self.inner.write().unwrap_or_else(PoisonError::into_inner) = keys;
    }
}
