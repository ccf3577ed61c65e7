//! proptest state-machine test: the breaker against a simple reference model
//! (a `VecDeque` window and plain integers), on paused time.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::VecDeque;
use std::time::Duration;

use forten_core::circuit::{
    CircuitBreaker, CircuitBreakerLayer, CircuitBreakerService, CircuitState, ErrorClassifier,
};
use forten_core::{BoxError, Error};
use proptest::prelude::*;
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest, prop_state_machine};
use tower::{Layer, ServiceExt, service_fn};

#[derive(Debug, Clone)]
struct Config {
    window: usize,
    minimum: usize,
    threshold_pct: u64,
    permits: u32,
    wait_ms: u64,
    growth: u64,
    max_wait_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Passed,
    Rejected { retry_after_ms: u64 },
}

#[derive(Debug, Clone)]
struct Model {
    config: Config,
    now_ms: u64,
    state: CircuitState,
    window: VecDeque<bool>,
    open_until_ms: u64,
    consecutive: u32,
    permits_left: u32,
    probes: u32,
    probe_failures: u32,
    last: Option<Answer>,
}

#[derive(Debug, Clone)]
enum Op {
    Call { fail: bool },
    Advance { ms: u64 },
    ForceOpen,
    Disable,
    Reset,
}

impl Model {
    fn trips(&self, calls: usize, failures: usize) -> bool {
        calls > 0 && failures as u64 * 100 >= self.config.threshold_pct * calls as u64
    }

    fn wait_ms(&self) -> u64 {
        let mut wait = self.config.wait_ms;
        for _ in 1..self.consecutive {
            wait = wait.saturating_mul(self.config.growth);
        }
        wait.min(self.config.max_wait_ms)
    }

    fn to(&mut self, state: CircuitState) {
        match state {
            CircuitState::Open => {
                self.consecutive += 1;
                self.open_until_ms = self.now_ms + self.wait_ms();
            }
            CircuitState::HalfOpen => {
                self.permits_left = self.config.permits;
                self.probes = 0;
                self.probe_failures = 0;
            }
            CircuitState::Closed => {
                self.window.clear();
                self.consecutive = 0;
            }
            _ => {}
        }
        self.state = state;
    }

    fn call(&mut self, fail: bool) -> Answer {
        if self.state == CircuitState::Open {
            if self.now_ms < self.open_until_ms {
                return Answer::Rejected {
                    retry_after_ms: self.open_until_ms - self.now_ms,
                };
            }
            self.to(CircuitState::HalfOpen);
        }
        match self.state {
            CircuitState::Closed => {
                self.window.push_back(fail);
                if self.window.len() > self.config.window {
                    self.window.pop_front();
                }
                let failures = self.window.iter().filter(|f| **f).count();
                if self.window.len() >= self.config.minimum
                    && self.trips(self.window.len(), failures)
                {
                    self.to(CircuitState::Open);
                }
                Answer::Passed
            }
            CircuitState::HalfOpen => {
                if self.permits_left == 0 {
                    return Answer::Rejected {
                        retry_after_ms: 1000,
                    };
                }
                self.permits_left -= 1;
                self.probes += 1;
                self.probe_failures += u32::from(fail);
                if self.probes == self.config.permits {
                    let reopen = self.trips(self.probes as usize, self.probe_failures as usize);
                    self.to(if reopen {
                        CircuitState::Open
                    } else {
                        CircuitState::Closed
                    });
                }
                Answer::Passed
            }
            CircuitState::ForcedOpen => Answer::Rejected {
                retry_after_ms: self.config.wait_ms,
            },
            _ => Answer::Passed,
        }
    }
}

struct Reference;

impl ReferenceStateMachine for Reference {
    type State = Model;
    type Transition = Op;

    fn init_state() -> BoxedStrategy<Model> {
        (1usize..8, 1u64..=4, 1u32..4, 1u64..5, prop::bool::ANY)
            .prop_flat_map(|(window, quarter, permits, wait_s, grows)| {
                (1..=window).prop_map(move |minimum| Model {
                    config: Config {
                        window,
                        minimum,
                        threshold_pct: quarter * 25,
                        permits,
                        wait_ms: wait_s * 1000,
                        growth: if grows { 2 } else { 1 },
                        max_wait_ms: if grows { wait_s * 4000 } else { wait_s * 1000 },
                    },
                    now_ms: 0,
                    state: CircuitState::Closed,
                    window: VecDeque::new(),
                    open_until_ms: 0,
                    consecutive: 0,
                    permits_left: 0,
                    probes: 0,
                    probe_failures: 0,
                    last: None,
                })
            })
            .boxed()
    }

    fn transitions(_state: &Model) -> BoxedStrategy<Op> {
        prop_oneof![
            10 => prop::bool::weighted(0.5).prop_map(|fail| Op::Call { fail }),
            3 => (0u64..6000).prop_map(|ms| Op::Advance { ms }),
            1 => Just(Op::ForceOpen),
            1 => Just(Op::Disable),
            1 => Just(Op::Reset),
        ]
        .boxed()
    }

    fn apply(mut state: Model, op: &Op) -> Model {
        state.last = None;
        match op {
            Op::Call { fail } => state.last = Some(state.call(*fail)),
            Op::Advance { ms } => state.now_ms += ms,
            Op::ForceOpen => {
                if state.state != CircuitState::ForcedOpen {
                    state.to(CircuitState::ForcedOpen);
                }
            }
            Op::Disable => {
                if state.state != CircuitState::Disabled {
                    state.to(CircuitState::Disabled);
                }
            }
            Op::Reset => state.to(CircuitState::Closed),
        }
        state
    }
}

type Upstream = tower::util::ServiceFn<fn(bool) -> std::future::Ready<Result<(), BoxError>>>;

struct Sut {
    rt: tokio::runtime::Runtime,
    breaker: CircuitBreaker,
    svc: CircuitBreakerService<Upstream, ErrorClassifier>,
}

fn answer(fail: bool) -> std::future::Ready<Result<(), BoxError>> {
    std::future::ready(if fail { Err("boom".into()) } else { Ok(()) })
}

struct BreakerTest;

impl StateMachineTest for BreakerTest {
    type SystemUnderTest = Sut;
    type Reference = Reference;

    fn init_test(model: &Model) -> Sut {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let c = &model.config;
        let breaker = rt.block_on(async {
            CircuitBreaker::builder("model")
                .count_window(c.window as u32)
                .minimum_calls(c.minimum as u32)
                .failure_rate_threshold(c.threshold_pct as f64 / 100.0)
                .half_open_permits(c.permits)
                .wait_duration(Duration::from_millis(c.wait_ms))
                .wait_growth(c.growth as f64, Duration::from_millis(c.max_wait_ms))
                .build()
                .unwrap()
        });
        let upstream: Upstream = service_fn(answer as fn(bool) -> _);
        let svc = CircuitBreakerLayer::new(breaker.clone())
            .classifier(ErrorClassifier)
            .layer(upstream);
        Sut { rt, breaker, svc }
    }

    fn apply(sut: Sut, model: &Model, op: Op) -> Sut {
        match op {
            Op::Call { fail } => {
                let result = sut.rt.block_on(sut.svc.clone().oneshot(fail));
                match (model.last, result) {
                    (Some(Answer::Passed), Ok(())) => assert!(!fail),
                    (Some(Answer::Passed), Err(e)) => {
                        assert!(fail, "unexpected error {e}");
                        assert!(Error::find(e.as_ref()).is_none(), "rejected: {e}");
                    }
                    (Some(Answer::Rejected { retry_after_ms }), Err(e)) => {
                        match Error::find(e.as_ref()) {
                            Some(Error::CircuitOpen { retry_after, .. }) => {
                                assert_eq!(*retry_after, Duration::from_millis(retry_after_ms));
                            }
                            _ => panic!("expected a rejection, got {e}"),
                        }
                    }
                    (expected, got) => panic!("model {expected:?}, breaker {got:?}"),
                }
            }
            Op::Advance { ms } => sut
                .rt
                .block_on(tokio::time::advance(Duration::from_millis(ms))),
            Op::ForceOpen => sut.breaker.force_open(),
            Op::Disable => sut.breaker.disable(),
            Op::Reset => sut.breaker.reset(),
        }
        sut
    }

    fn check_invariants(sut: &Sut, model: &Model) {
        assert_eq!(sut.breaker.state(), model.state);
        let m = sut.rt.block_on(async { sut.breaker.metrics() });
        assert_eq!(m.consecutive_openings, model.consecutive);
        if model.state == CircuitState::Closed {
            assert_eq!(m.calls, model.window.len() as u64);
            assert_eq!(
                m.failures,
                model.window.iter().filter(|f| **f).count() as u64
            );
        }
        if model.state == CircuitState::Open {
            assert_eq!(
                m.time_left_open,
                Some(Duration::from_millis(
                    model.open_until_ms.saturating_sub(model.now_ms)
                ))
            );
        }
    }
}

prop_state_machine! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn breaker_matches_the_reference_model(sequential 1..60 => BreakerTest);
}
