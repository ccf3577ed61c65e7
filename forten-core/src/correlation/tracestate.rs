//! [`TraceState`]: the W3C Trace Context `tracestate` header (level 2).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// The most list members a tracestate may carry.
pub const MAX_MEMBERS: usize = 32;

/// A validated `tracestate`: vendor key/value pairs, passed on unchanged.
///
/// The whole header is rejected when any member is invalid, a key repeats, or
/// there are more than 32 members; empty members and whitespace around
/// members are dropped. Several `tracestate` header lines are joined with `,`
/// before parsing ([`TraceState::parse_lines`]). Cloning is cheap (shared).
///
/// ```
/// use forten_core::correlation::TraceState;
/// let ts: TraceState = "rojo=00f067aa0ba902b7, congo=t61rcWkgMzE".parse().unwrap();
/// assert_eq!(ts.get("congo"), Some("t61rcWkgMzE"));
/// assert_eq!(ts.to_string(), "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
/// assert!("Upper=1".parse::<TraceState>().is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TraceState {
    normalized: Arc<str>,
}

/// Why a `tracestate` value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidTraceState {
    /// More than 32 list members.
    #[error("tracestate has {0} members; at most 32 are allowed")]
    TooManyMembers(usize),
    /// A member is not `key=value` with a valid key and value.
    #[error(
        "tracestate member {0} is invalid: keys are [a-z0-9_-*/] (tenant@system), values printable ASCII without ',' and '='"
    )]
    InvalidMember(usize),
    /// A key appears twice.
    #[error("tracestate key {0:?} appears more than once")]
    DuplicateKey(String),
    /// The header has no members.
    #[error("tracestate is empty")]
    Empty,
}

fn key_char(b: u8) -> bool {
    matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/')
}

fn valid_key(key: &str) -> bool {
    let k = key.as_bytes();
    match key.split_once('@') {
        None => {
            // simple-key = lcalpha 0*255( lcalpha / DIGIT / "_" / "-"/ "*" / "/" )
            (1..=256).contains(&k.len())
                && k[0].is_ascii_lowercase()
                && k.iter().all(|&b| key_char(b))
        }
        Some((tenant, system)) => {
            let (t, s) = (tenant.as_bytes(), system.as_bytes());
            // tenant-id = ( lcalpha / DIGIT ) 0*240( ... ), system-id = lcalpha 0*13( ... )
            (1..=241).contains(&t.len())
                && (t[0].is_ascii_lowercase() || t[0].is_ascii_digit())
                && t.iter().all(|&b| key_char(b))
                && (1..=14).contains(&s.len())
                && s[0].is_ascii_lowercase()
                && s.iter().all(|&b| key_char(b))
        }
    }
}

fn valid_value(value: &str) -> bool {
    // value = 0*255(chr) nblk-chr; chr = %x20 / nblk-chr;
    // nblk-chr = %x21-2B / %x2D-3C / %x3E-7E
    let v = value.as_bytes();
    (1..=256).contains(&v.len())
        && v.iter()
            .all(|&b| b == b' ' || (matches!(b, 0x21..=0x7e) && b != b',' && b != b'='))
        && v[v.len() - 1] != b' '
}

impl TraceState {
    /// Parses one header value.
    pub fn parse(value: &str) -> Result<Self, InvalidTraceState> {
        Self::parse_lines([value])
    }

    /// Parses several header lines as one list (they are joined with `,`).
    pub fn parse_lines<'a>(
        lines: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, InvalidTraceState> {
        let mut keys: Vec<&str> = Vec::new();
        let mut normalized = String::new();
        let mut index = 0usize;
        for line in lines {
            for member in line.split(',') {
                let member = member.trim_matches([' ', '\t']);
                if member.is_empty() {
                    continue;
                }
                index += 1;
                if index > MAX_MEMBERS {
                    return Err(InvalidTraceState::TooManyMembers(index));
                }
                let (key, value) = member
                    .split_once('=')
                    .ok_or(InvalidTraceState::InvalidMember(index))?;
                if !valid_key(key) || !valid_value(value) {
                    return Err(InvalidTraceState::InvalidMember(index));
                }
                if keys.contains(&key) {
                    return Err(InvalidTraceState::DuplicateKey(key.to_owned()));
                }
                keys.push(key);
                if !normalized.is_empty() {
                    normalized.push(',');
                }
                normalized.push_str(member);
            }
        }
        if normalized.is_empty() {
            return Err(InvalidTraceState::Empty);
        }
        Ok(TraceState {
            normalized: normalized.into(),
        })
    }

    /// The value for `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The members in order, as `(key, value)`.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.normalized.split(',').filter_map(|m| m.split_once('='))
    }

    /// The number of members.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Always false: an empty tracestate does not parse.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The header value, members joined with `,`.
    pub fn as_str(&self) -> &str {
        &self.normalized
    }
}

impl FromStr for TraceState {
    type Err = InvalidTraceState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TraceState::parse(s)
    }
}

impl fmt::Display for TraceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.normalized)
    }
}

impl fmt::Debug for TraceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TraceState")
            .field(&&*self.normalized)
            .finish()
    }
}
