//! [`CorrelationId`]: the id that follows one logical request across services.

use std::fmt;
use std::str::FromStr;

use std::sync::Arc;

/// The longest correlation id accepted (DESIGN 4.1).
pub const MAX_CORRELATION_ID_LEN: usize = 128;

/// A correlation id: 1 to 128 visible ASCII characters (`!` to `~`).
///
/// Ids up to 46 bytes (a UUID is 36) are stored inline, so cloning one never
/// allocates; longer ones share one heap copy.
///
/// ```
/// use forten_core::correlation::CorrelationId;
/// let id: CorrelationId = "order-42".parse().unwrap();
/// assert_eq!(id.as_str(), "order-42");
/// assert!("has space".parse::<CorrelationId>().is_err());
/// assert_eq!(CorrelationId::generate().as_str().len(), 36); // a lowercase UUID v4
/// ```
#[derive(Clone)]
pub struct CorrelationId {
    repr: Repr,
}

const INLINE: usize = 46;

#[derive(Clone)]
enum Repr {
    Inline { len: u8, buf: [u8; INLINE] },
    Shared(Arc<str>),
}

/// Why a string is not a valid [`CorrelationId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidCorrelationId {
    /// The id is empty.
    #[error("correlation id is empty; send 1 to 128 visible ASCII characters")]
    Empty,
    /// The id is longer than 128 characters.
    #[error("correlation id is {0} bytes long; the limit is 128")]
    TooLong(usize),
    /// The id has a character outside visible ASCII.
    #[error("correlation id has a character outside visible ASCII (0x21-0x7e) at byte {0}")]
    BadCharacter(usize),
}

impl CorrelationId {
    /// A fresh id: a random UUID v4 in lowercase hyphenated form.
    pub fn generate() -> Self {
        let bytes = crate::random::u128().to_le_bytes();
        let uuid = uuid::Builder::from_random_bytes(bytes).into_uuid();
        let mut buf = [0u8; INLINE];
        let len = uuid.hyphenated().encode_lower(&mut buf).len();
        CorrelationId {
            repr: Repr::Inline {
                len: len as u8,
                buf,
            },
        }
    }

    /// Validates and stores `s`.
    pub fn new(s: &str) -> Result<Self, InvalidCorrelationId> {
        let bytes = s.as_bytes();
        if bytes.is_empty() {
            return Err(InvalidCorrelationId::Empty);
        }
        if bytes.len() > MAX_CORRELATION_ID_LEN {
            return Err(InvalidCorrelationId::TooLong(bytes.len()));
        }
        if let Some(pos) = bytes.iter().position(|b| !b.is_ascii_graphic()) {
            return Err(InvalidCorrelationId::BadCharacter(pos));
        }
        if bytes.len() > INLINE {
            return Ok(CorrelationId {
                repr: Repr::Shared(Arc::from(s)),
            });
        }
        let mut buf = [0u8; INLINE];
        buf[..bytes.len()].copy_from_slice(bytes);
        Ok(CorrelationId {
            repr: Repr::Inline {
                len: bytes.len() as u8,
                buf,
            },
        })
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        match &self.repr {
            // Only visible ASCII is ever stored, which is valid UTF-8.
            Repr::Inline { len, buf } => {
                std::str::from_utf8(&buf[..usize::from(*len)]).unwrap_or_default()
            }
            Repr::Shared(s) => s,
        }
    }
}

impl FromStr for CorrelationId {
    type Err = InvalidCorrelationId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CorrelationId::new(s)
    }
}

impl fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CorrelationId")
            .field(&self.as_str())
            .finish()
    }
}

impl PartialEq for CorrelationId {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for CorrelationId {}

impl std::hash::Hash for CorrelationId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}
