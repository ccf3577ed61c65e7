//! The token check every JWT layer shares: size limit, header, algorithm
//! allow-list, key choice by `kid`, signature and registered claims.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use jsonwebtoken::{Algorithm, Validation};
use serde::de::DeserializeOwned;

use crate::error::{AuthError, Rejection};
use crate::keys::{KeySet, VerifyingKey};

/// The default token size limit: 8 KiB, far above any sane JWT.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;
/// The default clock-skew leeway for `exp` and `nbf`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

/// Called with a `kid` the key set does not know (the JWKS cache refetches).
pub(crate) type UnknownKidHook = Arc<dyn Fn(&str) + Send + Sync>;

/// Settings shared by the service and user token verifiers.
pub(crate) struct VerifierSettings {
    pub(crate) keys: KeySet,
    pub(crate) algorithms: Vec<Algorithm>,
    pub(crate) issuers: Vec<String>,
    pub(crate) audiences: Vec<String>,
    pub(crate) leeway: Duration,
    pub(crate) max_token_bytes: usize,
    pub(crate) on_unknown_kid: Option<UnknownKidHook>,
}

/// A ready-to-use verifier: one prebuilt [`Validation`] per allowed algorithm.
/// Seconds since the Unix epoch: the clock `iat` is stamped with and `exp`
/// checked against.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(crate) struct Verifier {
    keys: KeySet,
    /// Each allowed algorithm with its validation (jsonwebtoken insists that
    /// every algorithm of a validation is of the key's family, so one each).
    allowed: Vec<(Algorithm, Validation)>,
    max_token_bytes: usize,
    on_unknown_kid: Option<UnknownKidHook>,
    leeway: u64,
}

impl Verifier {
    pub(crate) fn new(s: VerifierSettings) -> Result<Self, AuthError> {
        if s.algorithms.is_empty() {
            return Err(AuthError::Config(
                "no algorithm allowed: list the algorithms your issuers sign with".to_owned(),
            ));
        }
        if s.issuers.is_empty() {
            return Err(AuthError::Config(
                "no issuer allowed: name the trusted issuers (`iss`)".to_owned(),
            ));
        }
        if s.audiences.is_empty() {
            return Err(AuthError::Config(
                "no audience: name this service (`aud`)".to_owned(),
            ));
        }
        if s.max_token_bytes < 64 {
            return Err(AuthError::Config(
                "max_token_bytes below 64 rejects every JWT".to_owned(),
            ));
        }
        let allowed = s
            .algorithms
            .iter()
            .map(|&alg| {
                let mut v = Validation::new(alg);
                v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
                v.leeway = s.leeway.as_secs();
                v.validate_exp = true;
                v.validate_nbf = true;
                v.validate_aud = true;
                v.set_issuer(&s.issuers);
                v.set_audience(&s.audiences);
                (alg, v)
            })
            .collect();
        Ok(Verifier {
            keys: s.keys,
            allowed,
            max_token_bytes: s.max_token_bytes,
            on_unknown_kid: s.on_unknown_kid,
            leeway: s.leeway.as_secs(),
        })
    }

    /// The keys tokens are checked against now (a snapshot: a rotation makes a new one).
    pub(crate) fn keys(&self) -> Arc<[VerifyingKey]> {
        self.keys.snapshot()
    }

    /// The last second a token with this `exp` is accepted (`exp + leeway`).
    pub(crate) fn valid_through(&self, exp: u64) -> u64 {
        exp.saturating_add(self.leeway)
    }

    /// Verifies `token` against `keys` (a [`keys`](Self::keys) snapshot) and returns its claims.
    pub(crate) fn verify_with<C: DeserializeOwned>(
        &self,
        token: &str,
        keys: &[VerifyingKey],
    ) -> Result<C, Rejection> {
        if token.len() > self.max_token_bytes {
            return Err(Rejection::TooLarge {
                limit: self.max_token_bytes,
            });
        }
        if token.is_empty() {
            return Err(Rejection::Missing);
        }
        if token.bytes().filter(|&b| b == b'.').count() != 2 {
            return Err(Rejection::Malformed);
        }
        // `alg: none` (any case) and unknown names fail to parse here.
        let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::Json(_) if mentions_alg(token) => {
                Rejection::AlgorithmNotAllowed
            }
            _ => Rejection::Malformed,
        })?;
        let Some((_, validation)) = self.allowed.iter().find(|(a, _)| *a == header.alg) else {
            return Err(Rejection::AlgorithmNotAllowed);
        };
        // Header fields `jwk`, `jku`, `x5u`, `x5c` are never used: keys come only from the set.
        let key = pick_key(keys, header.kid.as_deref(), header.alg).inspect_err(|r| {
            if let (Rejection::UnknownKey, Some(kid), Some(hook)) =
                (r, header.kid.as_deref(), &self.on_unknown_kid)
            {
                hook(kid);
            }
        })?;
        let bound;
        let validation = match key.issuer() {
            None => validation,
            Some(iss) => {
                if !validation.iss.as_ref().is_some_and(|set| set.contains(iss)) {
                    return Err(Rejection::WrongIssuer);
                }
                let mut v = validation.clone();
                v.set_issuer(&[iss]);
                bound = v;
                &bound
            }
        };
        jsonwebtoken::decode::<C>(token, key.decoding_key(), validation)
            .map(|data| data.claims)
            .map_err(|e| Rejection::from_jwt(&e))
    }
}

/// Whether the header decodes to JSON with an `alg` (so a parse failure means
/// an algorithm jsonwebtoken does not know, such as `none`).
fn mentions_alg(token: &str) -> bool {
    use base64::Engine as _;
    let Some(head) = token.split('.').next() else {
        return false;
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(head)
        .ok()
        .and_then(|raw| serde_json::from_slice::<serde_json::Value>(&raw).ok())
        .is_some_and(|v| v.get("alg").is_some())
}

fn pick_key<'a>(
    keys: &'a [VerifyingKey],
    kid: Option<&str>,
    alg: Algorithm,
) -> Result<&'a VerifyingKey, Rejection> {
    match kid {
        Some(kid) => {
            let key = keys
                .iter()
                .find(|k| k.kid() == Some(kid))
                .ok_or(Rejection::UnknownKey)?;
            if key.algorithm() == alg {
                Ok(key)
            } else {
                Err(Rejection::AlgorithmMismatch)
            }
        }
        None => keys
            .iter()
            .find(|k| k.kid().is_none() && k.algorithm() == alg)
            .ok_or(Rejection::UnknownKey),
    }
}

/// The bearer token of a request: exactly one `Authorization` header with the
/// `Bearer` scheme (any case).
pub(crate) fn bearer_token(headers: &HeaderMap) -> Result<&str, Rejection> {
    let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
    let value = values.next().ok_or(Rejection::Missing)?;
    if values.next().is_some() {
        return Err(Rejection::BadHeader);
    }
    let value = value.to_str().map_err(|_| Rejection::BadHeader)?;
    let (scheme, token) = value.split_once(' ').ok_or(Rejection::BadHeader)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Rejection::BadHeader);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(Rejection::Missing);
    }
    Ok(token)
}

/// Serde helper: `aud` as one string or an array of strings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// A single audience.
    One(String),
    /// Several audiences.
    Many(Vec<String>),
}

impl Audience {
    /// Whether `name` is among the audiences.
    pub fn contains(&self, name: &str) -> bool {
        match self {
            Audience::One(a) => a == name,
            Audience::Many(v) => v.iter().any(|a| a == name),
        }
    }
}
