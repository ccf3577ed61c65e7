//! The `Idempotency-Key` header value: an RFC 8941 sf-string, or a bare token.

use std::fmt;
use std::str::FromStr;

use http::HeaderValue;

/// The most characters a key may have (IETF httpapi Idempotency-Key draft, DESIGN 4.4).
pub const MAX_KEY_LEN: usize = 255;

/// A validated idempotency key: 1 to [`MAX_KEY_LEN`] characters.
///
/// Parsed from the header as an RFC 8941 sf-string (`"8e03978e-40d5"`, with
/// `\"` and `\\` escapes) or, leniently, as a bare token of RFC 9110 `tchar`s
/// plus `:` and `/` (`8e03978e-40d5`). [`Display`](fmt::Display) writes the
/// canonical sf-string form, and parsing that gives the same key back.
///
/// ```
/// use forten_core::idempotency::IdempotencyKey;
///
/// let quoted: IdempotencyKey = "\"8e03978e-40d5\"".parse().unwrap();
/// let bare: IdempotencyKey = "8e03978e-40d5".parse().unwrap();
/// assert_eq!(quoted, bare);
/// assert_eq!(quoted.as_str(), "8e03978e-40d5");
/// assert_eq!(quoted.to_string(), "\"8e03978e-40d5\"");
/// assert!("\"\"".parse::<IdempotencyKey>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

/// Why a header value is not a valid idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidIdempotencyKey {
    /// The key is empty.
    #[error("the Idempotency-Key is empty; send 1 to 255 characters, e.g. a UUID")]
    Empty,
    /// The key is longer than [`MAX_KEY_LEN`].
    #[error("the Idempotency-Key has {0} characters; at most 255 are allowed")]
    TooLong(usize),
    /// The value is neither an sf-string nor a token.
    #[error(
        "the Idempotency-Key is not a structured-field string (\"...\") or a token: {0}; quote the key"
    )]
    Syntax(&'static str),
}

impl IdempotencyKey {
    /// Parses a header value (surrounding spaces and tabs are ignored).
    pub fn parse(value: &[u8]) -> Result<Self, InvalidIdempotencyKey> {
        let value = trim_ows(value);
        let key = match value.first() {
            None => return Err(InvalidIdempotencyKey::Empty),
            Some(b'"') => parse_sf_string(value)?,
            Some(_) => parse_token(value)?,
        };
        Self::new(key)
    }

    /// A key from its raw characters (what goes between the quotes, unescaped).
    /// Every printable ASCII character (`0x20..=0x7E`) is allowed.
    pub fn new(key: impl Into<String>) -> Result<Self, InvalidIdempotencyKey> {
        let key = key.into();
        if key.is_empty() {
            return Err(InvalidIdempotencyKey::Empty);
        }
        if key.len() > MAX_KEY_LEN {
            return Err(InvalidIdempotencyKey::TooLong(key.len()));
        }
        if !key.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
            return Err(InvalidIdempotencyKey::Syntax(
                "only printable ASCII characters are allowed",
            ));
        }
        Ok(IdempotencyKey(key))
    }

    /// A fresh random key (a lowercase UUID v4).
    pub fn generate() -> Self {
        IdempotencyKey(uuid::Uuid::new_v4().to_string())
    }

    /// The key's characters, unquoted and unescaped.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The canonical header value (the sf-string form).
    pub fn to_header_value(&self) -> HeaderValue {
        // Printable ASCII plus quotes and backslashes is always a valid header value.
        HeaderValue::from_str(&self.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("\"\""))
    }
}

impl FromStr for IdempotencyKey {
    type Err = InvalidIdempotencyKey;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s.as_bytes())
    }
}

impl TryFrom<&HeaderValue> for IdempotencyKey {
    type Error = InvalidIdempotencyKey;

    fn try_from(value: &HeaderValue) -> Result<Self, Self::Error> {
        Self::parse(value.as_bytes())
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for part in self.0.split_inclusive(['"', '\\']) {
            match part.as_bytes().last() {
                Some(&c @ (b'"' | b'\\')) => {
                    f.write_str(&part[..part.len() - 1])?;
                    f.write_str("\\")?;
                    f.write_str(if c == b'"' { "\"" } else { "\\" })?;
                }
                _ => f.write_str(part)?,
            }
        }
        f.write_str("\"")
    }
}

fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// RFC 8941 section 4.2.5, for a whole field value.
fn parse_sf_string(v: &[u8]) -> Result<String, InvalidIdempotencyKey> {
    let mut out = String::with_capacity(v.len());
    let mut i = 1;
    while i < v.len() {
        match v[i] {
            b'\\' => {
                match v.get(i + 1) {
                    Some(&c @ (b'"' | b'\\')) => out.push(char::from(c)),
                    _ => {
                        return Err(InvalidIdempotencyKey::Syntax(
                            "a backslash may only escape '\"' or '\\'",
                        ));
                    }
                }
                i += 2;
            }
            b'"' => {
                return if i + 1 == v.len() {
                    Ok(out)
                } else {
                    Err(InvalidIdempotencyKey::Syntax(
                        "characters follow the closing quote",
                    ))
                };
            }
            c @ 0x20..=0x7e => {
                out.push(char::from(c));
                i += 1;
            }
            _ => {
                return Err(InvalidIdempotencyKey::Syntax(
                    "only printable ASCII characters are allowed",
                ));
            }
        }
    }
    Err(InvalidIdempotencyKey::Syntax(
        "the closing quote is missing",
    ))
}

fn parse_token(v: &[u8]) -> Result<String, InvalidIdempotencyKey> {
    let is_tchar = |c: &u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(c);
    if v.iter().all(is_tchar) {
        // all ASCII, so this cannot fail
        Ok(String::from_utf8_lossy(v).into_owned())
    } else {
        Err(InvalidIdempotencyKey::Syntax(
            "a bare key may only hold token characters",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_sf_strings_and_tokens() {
        let k = IdempotencyKey::parse(b" \"a\\\"b\\\\c d\"\t").unwrap();
        assert_eq!(k.as_str(), "a\"b\\c d");
        assert_eq!(k.to_string(), "\"a\\\"b\\\\c d\"");
        assert_eq!(IdempotencyKey::parse(b"abc:/1").unwrap().as_str(), "abc:/1");
    }

    #[test]
    fn length_limits() {
        let max = "a".repeat(255);
        assert!(IdempotencyKey::parse(max.as_bytes()).is_ok());
        let quoted = format!("\"{max}\"");
        assert!(IdempotencyKey::parse(quoted.as_bytes()).is_ok());
        let long = "a".repeat(256);
        assert_eq!(
            IdempotencyKey::parse(long.as_bytes()),
            Err(InvalidIdempotencyKey::TooLong(256))
        );
        assert_eq!(
            IdempotencyKey::parse(b"\"\""),
            Err(InvalidIdempotencyKey::Empty)
        );
        assert_eq!(
            IdempotencyKey::parse(b"  "),
            Err(InvalidIdempotencyKey::Empty)
        );
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            &b"\"abc"[..],
            b"\"a\"b",
            b"\"a\\x\"",
            b"a b",
            b"a,b",
            b"\"\x01\"",
            b"\"\xc3\xa9\"",
        ] {
            assert!(
                matches!(
                    IdempotencyKey::parse(bad),
                    Err(InvalidIdempotencyKey::Syntax(_))
                ),
                "{bad:?}"
            );
        }
    }
}
