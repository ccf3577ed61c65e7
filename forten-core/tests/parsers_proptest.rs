//! Every public parser: never panics on any input, round-trips every valid value.

use std::time::Duration;

use forten_core::correlation::{
    CorrelationId, SpanId, TraceFlags, TraceId, TraceParent, TraceState,
};
use forten_core::deadline::{encode_grpc_timeout, parse_grpc_timeout, parse_request_timeout_ms};
use proptest::prelude::*;

proptest! {
    #[test]
    fn parsers_never_panic(s in any::<String>()) {
        let _ = TraceParent::parse(&s);
        let _ = TraceState::parse(&s);
        let _ = CorrelationId::new(&s);
        let _ = parse_grpc_timeout(&s);
        let _ = parse_request_timeout_ms(&s);
    }

    #[test]
    fn parsers_never_panic_on_header_like_input(s in "[ -~\t]{0,80}") {
        let _ = TraceParent::parse(&s);
        let _ = TraceState::parse(&s);
        let _ = parse_grpc_timeout(&s);
    }

    #[test]
    fn a_traceparent_with_any_byte_not_lowercase_hex_is_refused(
        trace in 1u128.., parent in 1u64.., flags in any::<u8>(),
        at in prop::sample::select((0..2).chain(3..35).chain(36..52).chain(53..55).collect::<Vec<usize>>()),
        bad in any::<u8>().prop_filter("not lowercase hex", |b| !b.is_ascii_digit() && !(b'a'..=b'f').contains(b)),
    ) {
        let tp = TraceParent::new(
            TraceId::from_u128(trace).unwrap(),
            SpanId::from_u64(parent).unwrap(),
            TraceFlags::new(flags),
        );
        let mut bytes = tp.to_header_bytes().to_vec();
        bytes[at] = bad;
        // Not always UTF-8 (a byte over 0x7f alone is not): parse the text when it is one.
        if let Ok(text) = String::from_utf8(bytes) {
            prop_assert!(TraceParent::parse(&text).is_err(), "{text:?} was accepted");
        }
    }

    #[test]
    fn traceparent_round_trips(trace in 1u128.., parent in 1u64.., flags in any::<u8>()) {
        let tp = TraceParent::new(
            TraceId::from_u128(trace).unwrap(),
            SpanId::from_u64(parent).unwrap(),
            TraceFlags::new(flags),
        );
        let text = tp.to_string();
        prop_assert_eq!(text.len(), 55);
        prop_assert_eq!(&tp.to_header_bytes()[..], text.as_bytes());
        prop_assert_eq!(TraceParent::parse(&text), Ok(tp));
        prop_assert_eq!(tp.child().trace_id(), tp.trace_id());
    }

    #[test]
    fn tracestate_round_trips(
        members in proptest::collection::btree_map("[a-z][a-z0-9_*/-]{0,20}", "[!-+\\--<>-~]{1,30}", 1..=32)
    ) {
        let text = members.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
        let parsed = TraceState::parse(&text).unwrap();
        prop_assert_eq!(parsed.to_string(), text.clone());
        prop_assert_eq!(TraceState::parse(&parsed.to_string()), Ok(parsed.clone()));
        prop_assert_eq!(parsed.len(), members.len());
        for (k, v) in &members {
            prop_assert_eq!(parsed.get(k), Some(v.as_str()));
        }
    }

    #[test]
    fn correlation_id_round_trips(s in "[!-~]{1,128}") {
        let id = CorrelationId::new(&s).unwrap();
        prop_assert_eq!(id.as_str(), s.as_str());
        prop_assert_eq!(id.to_string().parse::<CorrelationId>(), Ok(id.clone()));
    }

    #[test]
    fn request_timeout_ms_round_trips(ms in any::<u64>()) {
        prop_assert_eq!(parse_request_timeout_ms(&ms.to_string()), Ok(Duration::from_millis(ms)));
    }

    #[test]
    fn grpc_timeout_round_trips_and_never_shrinks(nanos in 0u64..=u64::MAX / 2) {
        let d = Duration::from_nanos(nanos);
        let text = encode_grpc_timeout(d);
        let back = parse_grpc_timeout(&text).unwrap();
        prop_assert!(back >= d, "{} decoded to less than {:?}", text, d);
        prop_assert!(text.len() <= 9);
    }

    #[test]
    fn grpc_timeout_accepts_every_valid_form(n in 0u64..100_000_000, unit in "[HMSmun]") {
        let parsed = parse_grpc_timeout(&format!("{n}{unit}")).unwrap();
        let expected = match unit.as_str() {
            "H" => Duration::from_secs(n * 3600),
            "M" => Duration::from_secs(n * 60),
            "S" => Duration::from_secs(n),
            "m" => Duration::from_millis(n),
            "u" => Duration::from_micros(n),
            _ => Duration::from_nanos(n),
        };
        prop_assert_eq!(parsed, expected);
    }
}

#[test]
fn grpc_timeout_rejects_bad_forms() {
    for bad in [
        "",
        "S",
        "123456789S",
        "10s",
        "10",
        "-1S",
        "1.5S",
        "10 S",
        "１S",
    ] {
        assert!(parse_grpc_timeout(bad).is_err(), "{bad:?}");
    }
}
