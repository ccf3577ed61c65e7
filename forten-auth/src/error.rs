//! The crate's error type and the reasons a request is turned away.

use std::fmt;

/// Why a token or key was rejected. Every variant but [`Rejection::MissingScope`]
/// and [`Rejection::MissingPermission`] answers 401; those two answer 403.
///
/// The `Display` text is what goes into the error document's `detail`: it names
/// the failed check without echoing the token.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// No credentials were sent (no `Authorization: Bearer`, no API key header).
    Missing,
    /// The credentials header is present but not usable (wrong scheme, several values, not ASCII).
    BadHeader,
    /// The token is longer than the configured limit; it was not parsed.
    TooLarge {
        /// The configured limit in bytes.
        limit: usize,
    },
    /// Not a JWS compact token: wrong shape, bad base64 or bad JSON.
    Malformed,
    /// The header's `alg` is not in the allow-list (or is `none`, or unknown).
    AlgorithmNotAllowed,
    /// The header's `alg` does not match the algorithm of the key its `kid` names.
    AlgorithmMismatch,
    /// No key with the token's `kid` (or, without `kid`, no key for its `alg`).
    UnknownKey,
    /// The signature does not verify.
    BadSignature,
    /// `exp` is in the past (beyond the leeway).
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    NotYetValid,
    /// A required claim is absent.
    MissingClaim(String),
    /// A claim has the wrong type.
    BadClaim(String),
    /// `aud` does not name this service.
    WrongAudience,
    /// `iss` is not in the allow-list.
    WrongIssuer,
    /// The API key matches none of the configured keys.
    WrongKey,
    /// The token is valid but lacks a scope this route requires (403).
    MissingScope(String),
    /// The caller is authenticated but its roles do not grant this permission (403).
    MissingPermission(String),
    /// The request carries no authenticated identity at all: an auth layer is missing
    /// in front of the permission check (401).
    NotAuthenticated,
}

impl Rejection {
    /// Whether this rejection answers 403 (authenticated but not allowed) rather than 401.
    pub fn is_forbidden(&self) -> bool {
        matches!(
            self,
            Rejection::MissingScope(_) | Rejection::MissingPermission(_)
        )
    }

    /// The forten error (DESIGN 4.3) this rejection answers with.
    pub fn to_error(&self) -> forten_core::Error {
        let detail = self.to_string();
        if self.is_forbidden() {
            forten_core::Error::Forbidden { detail }
        } else {
            forten_core::Error::Unauthenticated { detail }
        }
    }

    pub(crate) fn from_jwt(err: &jsonwebtoken::errors::Error) -> Self {
        use jsonwebtoken::errors::ErrorKind as K;
        match err.kind() {
            K::ExpiredSignature => Rejection::Expired,
            K::ImmatureSignature => Rejection::NotYetValid,
            K::InvalidAudience => Rejection::WrongAudience,
            K::InvalidIssuer => Rejection::WrongIssuer,
            K::MissingRequiredClaim(c) => Rejection::MissingClaim(c.clone()),
            K::InvalidClaimFormat(c) => Rejection::BadClaim(c.clone()),
            K::InvalidSignature => Rejection::BadSignature,
            K::InvalidAlgorithm | K::InvalidAlgorithmName | K::MissingAlgorithm => {
                Rejection::AlgorithmNotAllowed
            }
            K::InvalidKeyFormat
            | K::InvalidEcdsaKey
            | K::InvalidEddsaKey
            | K::InvalidRsaKey(_)
            | K::UnsupportedAlgorithm => Rejection::AlgorithmMismatch,
            _ => Rejection::Malformed,
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::Missing => f.write_str("no credentials were sent"),
            Rejection::BadHeader => f.write_str("the credentials header is not usable"),
            Rejection::TooLarge { limit } => write!(f, "token longer than {limit} bytes"),
            Rejection::Malformed => f.write_str("token is malformed"),
            Rejection::AlgorithmNotAllowed => f.write_str("token algorithm is not allowed"),
            Rejection::AlgorithmMismatch => f.write_str("token algorithm does not match its key"),
            Rejection::UnknownKey => f.write_str("token signed with an unknown key"),
            Rejection::BadSignature => f.write_str("token signature is invalid"),
            Rejection::Expired => f.write_str("token has expired"),
            Rejection::NotYetValid => f.write_str("token is not valid yet"),
            Rejection::MissingClaim(c) => write!(f, "token lacks the required claim `{c}`"),
            Rejection::BadClaim(c) => write!(f, "token claim `{c}` has the wrong type"),
            Rejection::WrongAudience => f.write_str("token is not meant for this service"),
            Rejection::WrongIssuer => f.write_str("token issuer is not trusted"),
            Rejection::WrongKey => f.write_str("invalid API key"),
            Rejection::MissingScope(s) => write!(f, "token lacks the scope `{s}`"),
            Rejection::MissingPermission(p) => write!(f, "missing the permission `{p}`"),
            Rejection::NotAuthenticated => f.write_str("no authenticated caller"),
        }
    }
}

/// Errors of forten-auth: configuration mistakes found by the builders, key
/// loading, signing, and rejected tokens when verifying outside a layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// A builder was given an unusable setting; the message says which and how to fix it.
    #[error("invalid auth configuration: {0}")]
    Config(String),
    /// A key could not be loaded from the given bytes.
    #[error(
        "cannot load {what} key: {source}; pass a PKCS#8 private / SPKI public key of that type"
    )]
    Key {
        /// Which kind of key was expected.
        what: &'static str,
        /// What jsonwebtoken reported.
        #[source]
        source: jsonwebtoken::errors::Error,
    },
    /// Signing a token failed (a key unusable for its algorithm).
    #[error("cannot sign a token: {0}")]
    Sign(#[source] jsonwebtoken::errors::Error),
    /// A token was rejected.
    #[error("token rejected: {0}")]
    Rejected(Rejection),
    /// Fetching or parsing a JWKS document failed; the keys fetched before stay in use.
    #[error("JWKS refresh from {uri} failed: {detail}")]
    Jwks {
        /// The JWKS URL.
        uri: String,
        /// What went wrong.
        detail: String,
    },
}

impl From<Rejection> for AuthError {
    fn from(r: Rejection) -> Self {
        AuthError::Rejected(r)
    }
}
