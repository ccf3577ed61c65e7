use std::time::Duration;

use proptest::prelude::*;

use super::*;

fn jitter() -> impl Strategy<Value = Jitter> {
    prop_oneof![
        Just(Jitter::None),
        Just(Jitter::Full),
        Just(Jitter::Equal),
        Just(Jitter::Decorrelated),
    ]
}

fn schedule() -> impl Strategy<Value = ExponentialBackoff> {
    (
        1u64..10_000,
        1.0f64..10.0,
        0u64..100_000,
        0u32..40,
        jitter(),
    )
        .prop_map(|(base, factor, extra, retries, jitter)| {
            ExponentialBackoff::builder()
                .base(Duration::from_millis(base))
                .factor(factor)
                .max_delay(Duration::from_millis(base + extra))
                .max_retries(retries)
                .jitter(jitter)
                .build()
                .unwrap()
        })
}

proptest! {
    #[test]
    fn delays_stay_within_bounds(b in schedule(), seed in any::<u64>()) {
        let delays: Vec<Duration> = Backoff::from(b).delays_seeded(seed).collect();
        prop_assert_eq!(delays.len(), b.max_retries() as usize);
        for d in delays {
            prop_assert!(d <= b.max_delay());
            if b.jitter() == Jitter::Decorrelated {
                prop_assert!(d >= b.base());
            }
        }
    }

    #[test]
    fn no_jitter_is_capped_geometric(b in schedule()) {
        let b = ExponentialBackoff::builder()
            .base(b.base()).factor(b.factor()).max_delay(b.max_delay())
            .max_retries(b.max_retries()).jitter(Jitter::None).build().unwrap();
        let mut expected = b.base().as_nanos() as f64;
        for d in Backoff::from(b).delays() {
            let want = expected.min(b.max_delay().as_nanos() as f64) as u128;
            prop_assert!(d.as_nanos().abs_diff(want) <= 1, "{d:?} vs {want}");
            expected = (expected * b.factor()).min(b.max_delay().as_nanos() as f64);
        }
    }

    #[test]
    fn constant_is_constant(ms in 0u64..100_000, n in 0u32..50) {
        let c = Constant::new(Duration::from_millis(ms), n).unwrap();
        let delays: Vec<Duration> = Backoff::from(c).delays().collect();
        prop_assert_eq!(delays.len(), n as usize);
        prop_assert!(delays.iter().all(|d| *d == Duration::from_millis(ms)));
    }

    #[test]
    fn seeded_sequences_repeat(b in schedule(), seed in any::<u64>()) {
        let one: Vec<Duration> = Backoff::from(b).delays_seeded(seed).collect();
        let two: Vec<Duration> = Backoff::from(b).delays_seeded(seed).collect();
        prop_assert_eq!(one, two);
    }
}

#[test]
fn full_jitter_mean_is_half_the_delay() {
    // first delay of every sequence is U(0, base): mean base / 2
    let b = ExponentialBackoff::builder()
        .base(Duration::from_secs(1))
        .max_delay(Duration::from_secs(10))
        .max_retries(1)
        .jitter(Jitter::Full)
        .build()
        .unwrap();
    let n = 20_000u64;
    let total: u128 = (0..n)
        .map(|seed| {
            Backoff::from(b)
                .delays_seeded(seed)
                .next()
                .unwrap()
                .as_micros()
        })
        .sum();
    let mean_ms = total as f64 / n as f64 / 1000.0;
    assert!((mean_ms - 500.0).abs() < 15.0, "mean {mean_ms} ms");
}

#[test]
fn equal_jitter_is_at_least_half() {
    let b = ExponentialBackoff::builder()
        .base(Duration::from_millis(100))
        .max_retries(10)
        .jitter(Jitter::Equal)
        .build()
        .unwrap();
    let mut undelayed = Backoff::from(
        ExponentialBackoff::builder()
            .base(Duration::from_millis(100))
            .max_retries(10)
            .jitter(Jitter::None)
            .build()
            .unwrap(),
    )
    .delays();
    for d in Backoff::from(b).delays_seeded(7) {
        let full = undelayed.next().unwrap();
        assert!(d >= full / 2 && d <= full, "{d:?} vs {full:?}");
    }
}

#[test]
fn builder_rejects_bad_config() {
    assert_eq!(
        ExponentialBackoff::builder().base(Duration::ZERO).build(),
        Err(BackoffError::ZeroBase)
    );
    assert!(matches!(
        ExponentialBackoff::builder().factor(0.5).build(),
        Err(BackoffError::InvalidFactor(_))
    ));
    assert!(matches!(
        ExponentialBackoff::builder().factor(f64::NAN).build(),
        Err(BackoffError::InvalidFactor(_))
    ));
    assert!(matches!(
        ExponentialBackoff::builder()
            .base(Duration::from_secs(2))
            .max_delay(Duration::from_secs(1))
            .build(),
        Err(BackoffError::CapBelowBase { .. })
    ));
    assert!(matches!(
        Constant::new(Duration::from_secs(86_400 * 400), 1),
        Err(BackoffError::TooLong(_))
    ));
}
