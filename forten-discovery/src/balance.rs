//! Load balancing over a service's instances, with feedback from each pick.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rand::RngExt;
use tokio::time::Instant;

use crate::instance::ServiceInstance;

/// How [`DiscoveryClient`](crate::DiscoveryClient) picks one instance of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LoadBalancer {
    /// Each instance in turn (the default).
    #[default]
    RoundRobin,
    /// Uniformly at random.
    Random,
    /// Smooth weighted round robin (nginx's): instance `i` gets `weight_i / sum` of the picks,
    /// interleaved rather than in bursts.
    WeightedRoundRobin,
    /// The instance with the fewest requests in flight ([`Pick`](crate::Pick)s not yet
    /// finished); ties go round robin.
    LeastOutstanding,
    /// Power of two choices on peak-EWMA latency (Finagle's and tower's `PeakEwma` cost:
    /// latency estimate times requests in flight + 1): two random instances, the cheaper wins.
    PeakEwma,
}

/// What the balancers know of one instance: the instance and its load.
#[derive(Debug)]
pub(crate) struct Endpoint {
    pub(crate) instance: ServiceInstance,
    /// The instance id, shared: handed to callers without a copy per pick.
    pub(crate) id: Arc<str>,
    /// `host:port` of the base URL, parsed once; `None` when the address
    /// is not a valid URI authority.
    pub(crate) authority: Option<http::uri::Authority>,
    outstanding: AtomicU32,
    /// Smooth weighted round robin's running weight (guarded by the view's WRR lock).
    current_weight: Mutex<i64>,
    ewma: Mutex<PeakEwma>,
}

/// Peak-EWMA latency estimate, as in tower::load::PeakEwma: a new peak is taken at once,
/// lower samples decay in with time constant `tau`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeakEwma {
    /// Estimated round-trip time in nanoseconds.
    rtt_ns: f64,
    stamp: Instant,
}

/// The latency assumed for an instance before its first measurement.
pub(crate) const DEFAULT_RTT: Duration = Duration::from_millis(10);
/// The decay time constant of the latency estimate.
pub(crate) const DECAY: Duration = Duration::from_secs(10);
/// The latency a failed request counts as at least, so that an instance failing fast does not
/// look fast and attract traffic (the "black hole" of latency-only balancing).
pub(crate) const FAILURE_PENALTY: Duration = Duration::from_secs(1);

impl PeakEwma {
    fn new(now: Instant) -> Self {
        PeakEwma {
            rtt_ns: DEFAULT_RTT.as_nanos() as f64,
            stamp: now,
        }
    }

    fn decayed(&self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.stamp).as_nanos() as f64;
        self.rtt_ns * (-elapsed / DECAY.as_nanos() as f64).exp()
    }

    pub(crate) fn observe(&mut self, rtt: Duration, now: Instant) {
        let rtt = rtt.as_nanos() as f64;
        self.rtt_ns = if rtt > self.rtt_ns {
            rtt
        } else {
            let elapsed = now.saturating_duration_since(self.stamp).as_nanos() as f64;
            let decay = (-elapsed / DECAY.as_nanos() as f64).exp();
            self.rtt_ns * decay + rtt * (1.0 - decay)
        };
        self.stamp = now;
    }
}

impl Endpoint {
    pub(crate) fn new(instance: ServiceInstance) -> Self {
        let base = instance.base_url();
        let authority = base
            .strip_prefix("http://")
            .and_then(|a| a.parse::<http::uri::Authority>().ok());
        Endpoint {
            id: Arc::from(instance.id.as_str()),
            authority,
            instance,
            outstanding: AtomicU32::new(0),
            current_weight: Mutex::new(0),
            ewma: Mutex::new(PeakEwma::new(Instant::now())),
        }
    }

    pub(crate) fn outstanding(&self) -> u32 {
        self.outstanding.load(Ordering::Relaxed)
    }

    pub(crate) fn begin(&self) {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn end(&self, rtt: Option<Duration>) {
        let _ = self
            .outstanding
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        if let Some(rtt) = rtt {
            self.ewma
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .observe(rtt, Instant::now());
        }
    }

    /// Peak-EWMA cost: the latency estimate (never below 1 ns) times requests in flight + 1.
    pub(crate) fn cost(&self, now: Instant) -> f64 {
        let rtt = self
            .ewma
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .decayed(now);
        p2c_cost(rtt, self.outstanding())
    }
}

pub(crate) fn p2c_cost(rtt_ns: f64, outstanding: u32) -> f64 {
    (rtt_ns.max(1.0)) * (f64::from(outstanding) + 1.0)
}

/// Per-service balancer state shared by every pick.
#[derive(Debug, Default)]
pub(crate) struct BalancerState {
    next: AtomicUsize,
    wrr: Mutex<()>,
}

impl BalancerState {
    /// Picks an index into `endpoints` (non-empty).
    pub(crate) fn pick(&self, balancer: LoadBalancer, endpoints: &[Arc<Endpoint>]) -> usize {
        let n = endpoints.len();
        debug_assert!(n > 0);
        match balancer {
            LoadBalancer::RoundRobin => self.next.fetch_add(1, Ordering::Relaxed) % n,
            LoadBalancer::Random => rand::rng().random_range(0..n),
            LoadBalancer::WeightedRoundRobin => {
                let _guard = self.wrr.lock().unwrap_or_else(PoisonError::into_inner);
                let mut weights: Vec<std::sync::MutexGuard<'_, i64>> = endpoints
                    .iter()
                    .map(|e| {
                        e.current_weight
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                    })
                    .collect();
                let mut current: Vec<i64> = weights.iter().map(|w| **w).collect();
                let static_weights: Vec<i64> = endpoints
                    .iter()
                    .map(|e| i64::from(e.instance.weight))
                    .collect();
                let chosen = smooth_wrr_step(&mut current, &static_weights);
                for (slot, value) in weights.iter_mut().zip(current) {
                    **slot = value;
                }
                chosen
            }
            LoadBalancer::LeastOutstanding => {
                let loads: Vec<u32> = endpoints.iter().map(|e| e.outstanding()).collect();
                least_outstanding(&loads, self.next.fetch_add(1, Ordering::Relaxed))
            }
            LoadBalancer::PeakEwma => {
                if n == 1 {
                    return 0;
                }
                let (a, b) = two_distinct(n, &mut rand::rng());
                let now = Instant::now();
                p2c_choose(a, endpoints[a].cost(now), b, endpoints[b].cost(now))
            }
        }
    }
}

/// One step of smooth weighted round robin: every current weight grows by its weight, the
/// largest wins (the first on ties) and gives back the total.
pub(crate) fn smooth_wrr_step(current: &mut [i64], weights: &[i64]) -> usize {
    let total: i64 = weights.iter().sum();
    let mut best = 0;
    for i in 0..current.len() {
        current[i] += weights[i];
        if current[i] > current[best] {
            best = i;
        }
    }
    current[best] -= total;
    best
}

/// The index of the least loaded entry, scanning from `start` so that ties rotate.
pub(crate) fn least_outstanding(loads: &[u32], start: usize) -> usize {
    let n = loads.len();
    let mut best = start % n;
    for k in 1..n {
        let i = (start + k) % n;
        if loads[i] < loads[best] {
            best = i;
        }
    }
    best
}

/// Two distinct random indexes below `n` (n >= 2).
pub(crate) fn two_distinct(n: usize, rng: &mut impl rand::Rng) -> (usize, usize) {
    let a = rng.random_range(0..n);
    let mut b = rng.random_range(0..n - 1);
    if b >= a {
        b += 1;
    }
    (a, b)
}

/// Of two sampled candidates, the cheaper (the first on ties).
pub(crate) fn p2c_choose(a: usize, cost_a: f64, b: usize, cost_b: f64) -> usize {
    if cost_b < cost_a { b } else { a }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn smooth_wrr_interleaves() {
        // nginx's example: weights 5, 1, 1 give a a b a c a a (not a a a a a b c).
        let weights = [5, 1, 1];
        let mut current = [0; 3];
        let picks: Vec<usize> = (0..7)
            .map(|_| smooth_wrr_step(&mut current, &weights))
            .collect();
        assert_eq!(picks, [0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn peak_ewma_takes_peaks_and_decays() {
        let t0 = Instant::now();
        let mut e = PeakEwma::new(t0);
        e.observe(Duration::from_millis(100), t0);
        assert!((e.rtt_ns - 100e6).abs() < 1.0);
        // A lower sample long after pulls the estimate almost all the way down.
        e.observe(Duration::from_millis(1), t0 + Duration::from_secs(100));
        assert!(e.rtt_ns < 2e6, "{}", e.rtt_ns);
    }

    proptest! {
        #[test]
        fn round_robin_visits_all_evenly(n in 1usize..20, rounds in 1usize..20) {
            let state = BalancerState::default();
            let endpoints: Vec<Arc<Endpoint>> = (0..n)
                .map(|i| Arc::new(Endpoint::new(
                    ServiceInstance::builder("s", "h", 1).id(i.to_string()).build().unwrap())))
                .collect();
            let mut counts = vec![0usize; n];
            for _ in 0..n * rounds {
                counts[state.pick(LoadBalancer::RoundRobin, &endpoints)] += 1;
            }
            prop_assert!(counts.iter().all(|&c| c == rounds), "{counts:?}");
        }

        #[test]
        fn smooth_wrr_respects_weights(weights in proptest::collection::vec(1i64..20, 1..8), rounds in 1usize..5) {
            let total: i64 = weights.iter().sum();
            let mut current = vec![0; weights.len()];
            let mut counts = vec![0i64; weights.len()];
            let picks = total as usize * rounds;
            for _ in 0..picks {
                counts[smooth_wrr_step(&mut current, &weights)] += 1;
            }
            // Over whole cycles the shares are exact.
            for (c, w) in counts.iter().zip(&weights) {
                prop_assert_eq!(*c, w * rounds as i64);
            }
            // And within any prefix no instance is more than one pick off its share.
            let mut current = vec![0; weights.len()];
            let mut counts = vec![0i64; weights.len()];
            for step in 1..=picks {
                counts[smooth_wrr_step(&mut current, &weights)] += 1;
                for (c, w) in counts.iter().zip(&weights) {
                    let ideal = (*w as f64) * step as f64 / total as f64;
                    prop_assert!((*c as f64 - ideal).abs() <= weights.len() as f64, "{counts:?} at {step}");
                }
            }
        }

        #[test]
        fn least_outstanding_never_picks_busier_when_idle_exists(
            loads in proptest::collection::vec(0u32..5, 1..16), start: usize,
        ) {
            let i = least_outstanding(&loads, start);
            let min = *loads.iter().min().unwrap();
            prop_assert_eq!(loads[i], min);
            if loads.contains(&0) {
                prop_assert_eq!(loads[i], 0);
            }
        }

        #[test]
        fn p2c_never_picks_the_worse_sample(
            costs in proptest::collection::vec(0.0f64..1e9, 2..16), seed: u64,
        ) {
            use rand::SeedableRng;
            let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
            let (a, b) = two_distinct(costs.len(), &mut rng);
            prop_assert_ne!(a, b);
            let chosen = p2c_choose(a, costs[a], b, costs[b]);
            let other = if chosen == a { b } else { a };
            prop_assert!(costs[chosen] <= costs[other]);
        }

        #[test]
        fn p2c_cost_grows_with_load_and_latency(rtt in 0.0f64..1e9, load in 0u32..1000) {
            prop_assert!(p2c_cost(rtt, load + 1) > p2c_cost(rtt, load));
            prop_assert!(p2c_cost(rtt + 10.0, load) >= p2c_cost(rtt, load));
        }
    }
}
