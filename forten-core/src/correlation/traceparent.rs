//! [`TraceParent`]: the W3C Trace Context `traceparent` header (level 2).

use std::fmt;
use std::str::FromStr;

/// A W3C `traceparent`: version, trace-id, parent-id and trace flags.
///
/// Parsing follows Trace Context level 2: lowercase hex only, all-zero ids
/// and version `ff` invalid, version `00` allows nothing after the flags, a
/// higher version is parsed from its first 55 characters when what follows
/// starts with `-`. Optional whitespace around the value is ignored. Forten
/// always writes version `00`.
///
/// ```
/// use forten_core::correlation::TraceParent;
/// let tp: TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap();
/// assert!(tp.flags().sampled());
/// assert_eq!(tp.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert_eq!(tp.to_string(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
/// assert!("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01".parse::<TraceParent>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    trace_id: TraceId,
    parent_id: SpanId,
    flags: TraceFlags,
}

/// A 16-byte trace id; never all zeros. `Display` is 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId(u128);

/// An 8-byte span (parent) id; never all zeros. `Display` is 16 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanId(u64);

/// The 8-bit trace flags: bit 0 `sampled`, bit 1 `random`; other bits are
/// kept and propagated unchanged.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TraceFlags(u8);

/// Why a `traceparent` value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidTraceParent {
    /// Too short, or (version 00) too long.
    #[error("traceparent has length {0}; version 00 is exactly 55 characters")]
    Length(usize),
    /// A field is not lowercase hex or a separator is missing.
    #[error("traceparent is malformed at byte {0}: expected lowercase hex fields separated by '-'")]
    Malformed(usize),
    /// Version `ff` is forbidden.
    #[error("traceparent version ff is invalid")]
    ForbiddenVersion,
    /// The trace-id is all zeros.
    #[error("traceparent trace-id is all zeros")]
    ZeroTraceId,
    /// The parent-id is all zeros.
    #[error("traceparent parent-id is all zeros")]
    ZeroParentId,
}

impl TraceId {
    /// A random, non-zero trace id.
    pub fn random() -> Self {
        loop {
            let v = crate::random::u128();
            if v != 0 {
                return TraceId(v);
            }
        }
    }

    /// The trace id from its integer value, or `None` for zero (invalid).
    pub fn from_u128(v: u128) -> Option<Self> {
        (v != 0).then_some(TraceId(v))
    }

    /// The id as an integer.
    pub fn to_u128(self) -> u128 {
        self.0
    }
}

impl SpanId {
    /// A random, non-zero span id.
    pub fn random() -> Self {
        loop {
            let v = crate::random::u64();
            if v != 0 {
                return SpanId(v);
            }
        }
    }

    /// The span id from its integer value, or `None` for zero (invalid).
    pub fn from_u64(v: u64) -> Option<Self> {
        (v != 0).then_some(SpanId(v))
    }

    /// The id as an integer.
    pub fn to_u64(self) -> u64 {
        self.0
    }
}

impl TraceFlags {
    /// The `sampled` bit.
    pub const SAMPLED: u8 = 0x01;
    /// The level 2 `random` bit: the trace-id's right 7 bytes are random.
    pub const RANDOM: u8 = 0x02;

    /// Flags from their byte.
    pub fn new(bits: u8) -> Self {
        TraceFlags(bits)
    }

    /// The byte.
    pub fn bits(self) -> u8 {
        self.0
    }

    /// Whether the caller may have recorded this trace.
    pub fn sampled(self) -> bool {
        self.0 & Self::SAMPLED != 0
    }

    /// Whether the trace-id was generated randomly (level 2).
    pub fn random(self) -> bool {
        self.0 & Self::RANDOM != 0
    }
}

impl TraceParent {
    /// A traceparent from its parts.
    pub fn new(trace_id: TraceId, parent_id: SpanId, flags: TraceFlags) -> Self {
        TraceParent {
            trace_id,
            parent_id,
            flags,
        }
    }

    /// The start of a new trace: random ids, flags `sampled | random`.
    pub fn new_root() -> Self {
        TraceParent::new(
            TraceId::random(),
            SpanId::random(),
            TraceFlags(TraceFlags::SAMPLED | TraceFlags::RANDOM),
        )
    }

    /// The same trace and flags with a fresh parent-id: what one outbound hop sends.
    pub fn child(&self) -> Self {
        TraceParent {
            parent_id: SpanId::random(),
            ..*self
        }
    }

    /// The trace id.
    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// The parent (span) id.
    pub fn parent_id(&self) -> SpanId {
        self.parent_id
    }

    /// The trace flags.
    pub fn flags(&self) -> TraceFlags {
        self.flags
    }

    /// The header value (version 00) as bytes, formatted on the stack: what
    /// `Display` writes, without a heap allocation.
    pub fn to_header_bytes(&self) -> [u8; 55] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [b'-'; 55];
        out[0] = b'0';
        out[1] = b'0';
        let trace = self.trace_id.0;
        for i in 0..32 {
            out[3 + i] = HEX[((trace >> (124 - 4 * i)) & 0xf) as usize];
        }
        let parent = self.parent_id.0;
        for i in 0..16 {
            out[36 + i] = HEX[((parent >> (60 - 4 * i)) & 0xf) as usize];
        }
        out[53] = HEX[usize::from(self.flags.0 >> 4)];
        out[54] = HEX[usize::from(self.flags.0 & 0xf)];
        out
    }

    /// Parses a header value (see the type's docs for the rules).
    pub fn parse(value: &str) -> Result<Self, InvalidTraceParent> {
        let s = value.trim_matches([' ', '\t']).as_bytes();
        if s.len() < 55 {
            return Err(InvalidTraceParent::Length(s.len()));
        }
        let version = hex_u8(&s[0..2]).ok_or(InvalidTraceParent::Malformed(0))?;
        if version == 0xff {
            return Err(InvalidTraceParent::ForbiddenVersion);
        }
        if version == 0 && s.len() != 55 {
            return Err(InvalidTraceParent::Length(s.len()));
        }
        if s.len() > 55 && s[55] != b'-' {
            return Err(InvalidTraceParent::Malformed(55));
        }
        for pos in [2, 35, 52] {
            if s[pos] != b'-' {
                return Err(InvalidTraceParent::Malformed(pos));
            }
        }
        let trace = hex_u128(&s[3..35]).ok_or(InvalidTraceParent::Malformed(3))?;
        let parent = hex_u64(&s[36..52]).ok_or(InvalidTraceParent::Malformed(36))?;
        let flags = hex_u8(&s[53..55]).ok_or(InvalidTraceParent::Malformed(53))?;
        let trace_id = TraceId::from_u128(trace).ok_or(InvalidTraceParent::ZeroTraceId)?;
        let parent_id = SpanId::from_u64(parent).ok_or(InvalidTraceParent::ZeroParentId)?;
        Ok(TraceParent::new(trace_id, parent_id, TraceFlags(flags)))
    }
}

/// Lowercase hex digit values, [`NOT_HEX`] for every other byte. A table
/// rather than a `match` on ranges: the digits of random ids fall on either
/// side of `'9'` at random, and that branch mispredicted about every other
/// digit (~0.2 us to parse one traceparent, measured in a profile).
const HEX_VALUE: [u8; 256] = {
    let mut table = [NOT_HEX; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};
const NOT_HEX: u8 = 0xff;

/// The value of hex digits `s` (at most 32). The digits' values OR-ed
/// together stay below 16 only when every byte was a lowercase hex digit:
/// one test at the end instead of one per byte.
fn hex_u128(s: &[u8]) -> Option<u128> {
    let mut acc = 0u128;
    let mut seen = 0u8;
    for &b in s {
        let v = HEX_VALUE[usize::from(b)];
        seen |= v;
        acc = acc << 4 | u128::from(v & 0xf);
    }
    (seen < 16).then_some(acc)
}

fn hex_u64(s: &[u8]) -> Option<u64> {
    hex_u128(s).and_then(|v| u64::try_from(v).ok())
}

fn hex_u8(s: &[u8]) -> Option<u8> {
    hex_u128(s).and_then(|v| u8::try_from(v).ok())
}

impl FromStr for TraceParent {
    type Err = InvalidTraceParent;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TraceParent::parse(s)
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            self.trace_id, self.parent_id, self.flags.0
        )
    }
}

impl fmt::Debug for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceParent({self})")
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({self})")
    }
}

impl fmt::Debug for TraceFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceFlags({:02x})", self.0)
    }
}
