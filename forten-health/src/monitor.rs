//! The monitor: runs checks in the background, caches their results, builds the reports.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, SystemTime};

use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, MissedTickBehavior};

use crate::check::{Check, CheckKind, CheckResult, Probe, validate_name};
use crate::error::Error;
use crate::report::{CheckReport, HealthReport, Status};
use crate::routes::HealthRoutes;

/// The default interval between two rounds of checks.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// Which endpoint a report is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Endpoint {
    /// `/health`: every check.
    Health,
    /// `/health/live`: the process alone, never a dependency.
    Live,
    /// `/health/ready`: the readiness checks, and `fail` once shutdown has begun.
    Ready,
}

/// The service's health: checks run in a background task, results cached for the endpoints.
///
/// Cheap to clone (an `Arc`); every clone sees the same cache. The background task stops
/// once every clone is dropped.
///
/// ```
/// use std::time::Duration;
/// use forten_health::{Check, CheckResult, Endpoint, HealthMonitor, Status};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), forten_health::Error> {
/// let monitor = HealthMonitor::builder("auth-service", "1.0.0")
///     .interval(Duration::from_secs(5))
///     .check(Check::from_fn("postgres:connections", || async {
///         CheckResult::pass().with_observed_value(3)
///     }))
///     .build()?;
/// let _task = monitor.start()?; // runs the checks now, then every 5 s
/// monitor.run_checks_once().await; // (or wait for the first round)
/// assert_eq!(monitor.report(Endpoint::Ready).status, Status::Pass);
///
/// monitor.shutting_down(); // graceful shutdown: readiness fails at once
/// assert_eq!(monitor.report(Endpoint::Ready).status, Status::Fail);
/// assert_eq!(monitor.report(Endpoint::Live).status, Status::Pass);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct HealthMonitor {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for HealthMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthMonitor")
            .field("service_id", &self.inner.service_id)
            .field("release_id", &self.inner.release_id)
            .field("checks", &self.inner.checks.len())
            .field("shutting_down", &self.is_shutting_down())
            .finish_non_exhaustive()
    }
}

struct Inner {
    service_id: String,
    release_id: String,
    version: String,
    description: Option<String>,
    interval: Duration,
    stale_after: Duration,
    checks: Vec<Entry>,
    shutting_down: AtomicBool,
    started: AtomicBool,
    born: Instant,
}

struct Entry {
    name: String,
    component_type: String,
    kind: CheckKind,
    timeout: Duration,
    critical: bool,
    failure_threshold: u32,
    success_threshold: u32,
    probe: Arc<dyn Probe>,
    /// Locked only to read or write a few fields, never across an `.await`.
    state: Mutex<SlotState>,
}

#[derive(Default)]
struct SlotState {
    /// Starts false: a check is failing until it has passed `success_threshold` times.
    healthy: bool,
    consecutive_failures: u32,
    consecutive_successes: u32,
    last: Option<Observation>,
}

struct Observation {
    result: CheckResult,
    at: Instant,
    wall: SystemTime,
}

/// Builds a [`HealthMonitor`]; see [`HealthMonitor::builder`].
#[derive(Debug)]
#[must_use]
pub struct HealthMonitorBuilder {
    service_id: String,
    release_id: String,
    version: Option<String>,
    description: Option<String>,
    interval: Duration,
    stale_after: Option<Duration>,
    checks: Vec<Check>,
}

impl HealthMonitorBuilder {
    /// The interval between two rounds of checks (default 10 s). Each round runs every check
    /// concurrently, each bounded by its own timeout.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// How old a cached result may get before it reports `warn` (a `fail` stays `fail`).
    /// Default: twice the interval plus the longest check timeout.
    pub fn stale_after(mut self, stale_after: Duration) -> Self {
        self.stale_after = Some(stale_after);
        self
    }

    /// The public version (`version`); by default the release id up to its first `.`
    /// (`"1.4.2"` gives `"1"`).
    pub fn public_version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// A human-readable description of the service (`description`).
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// Registers a check.
    pub fn check(mut self, check: Check) -> Self {
        self.checks.push(check);
        self
    }

    /// Validates the configuration and builds the monitor. The checks do not run until
    /// [`HealthMonitor::start`] (or [`HealthMonitor::run_checks_once`]).
    pub fn build(self) -> Result<HealthMonitor, Error> {
        if self.interval.is_zero() {
            return Err(Error::ZeroInterval);
        }
        let longest = self
            .checks
            .iter()
            .map(|c| c.timeout)
            .max()
            .unwrap_or_default();
        let stale_after = self
            .stale_after
            .unwrap_or_else(|| self.interval.saturating_mul(2).saturating_add(longest));
        let mut names = HashSet::new();
        let mut entries = Vec::with_capacity(self.checks.len());
        for check in self.checks {
            validate_name(&check.name)?;
            if !names.insert(check.name.clone()) {
                return Err(Error::DuplicateName { name: check.name });
            }
            let probe = check.probe?;
            if check.timeout.is_zero() {
                return Err(Error::ZeroTimeout { name: check.name });
            }
            for (which, n) in [
                ("failure", check.failure_threshold),
                ("success", check.success_threshold),
            ] {
                if n == 0 {
                    return Err(Error::ZeroThreshold {
                        name: check.name,
                        which,
                    });
                }
            }
            let needed = self.interval.saturating_add(check.timeout);
            if stale_after <= needed {
                return Err(Error::StaleTooSoon {
                    stale_after,
                    name: check.name,
                    needed,
                });
            }
            entries.push(Entry {
                name: check.name,
                component_type: check.component_type.as_str().to_owned(),
                kind: check.kind,
                timeout: check.timeout,
                critical: check.critical,
                failure_threshold: check.failure_threshold,
                success_threshold: check.success_threshold,
                probe,
                state: Mutex::new(SlotState::default()),
            });
        }
        let version = self.version.unwrap_or_else(|| {
            self.release_id
                .split('.')
                .next()
                .unwrap_or_default()
                .to_owned()
        });
        Ok(HealthMonitor {
            inner: Arc::new(Inner {
                service_id: self.service_id,
                release_id: self.release_id,
                version,
                description: self.description,
                interval: self.interval,
                stale_after,
                checks: entries,
                shutting_down: AtomicBool::new(false),
                started: AtomicBool::new(false),
                born: Instant::now(),
            }),
        })
    }
}

impl HealthMonitor {
    /// Starts configuring the monitor of service `service_id` at release `version`
    /// (sent as `releaseId`; `version` gets its major part, see
    /// [`HealthMonitorBuilder::public_version`]).
    pub fn builder(
        service_id: impl Into<String>,
        version: impl Into<String>,
    ) -> HealthMonitorBuilder {
        HealthMonitorBuilder {
            service_id: service_id.into(),
            release_id: version.into(),
            version: None,
            description: None,
            interval: DEFAULT_INTERVAL,
            stale_after: None,
            checks: Vec::new(),
        }
    }

    /// Spawns the background task on the current tokio runtime: a round of checks at once,
    /// then one per interval (a round that overruns delays the next rather than piling up).
    ///
    /// The task ends when every clone of the monitor is dropped, or when its handle is aborted.
    pub fn start(&self) -> Result<JoinHandle<()>, Error> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        if self.inner.started.swap(true, Ordering::AcqRel) {
            return Err(Error::AlreadyStarted);
        }
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let interval = self.inner.interval;
        Ok(runtime.spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                run_round(&inner).await;
            }
        }))
    }

    /// Runs every check once, concurrently, each bounded by its timeout, and updates the cache.
    /// The background task calls this on its interval; tests and warm-up code may call it directly.
    pub async fn run_checks_once(&self) {
        run_round(&self.inner).await;
    }

    /// Begins graceful shutdown: from now on `/health/ready` (and `/health`) answer `fail` (503),
    /// so load balancers stop sending traffic while in-flight requests finish. Liveness is unchanged.
    pub fn shutting_down(&self) {
        if !self.inner.shutting_down.swap(true, Ordering::AcqRel) {
            tracing::info!(service = %self.inner.service_id, "shutdown begun: readiness now fails");
        }
    }

    /// Whether [`shutting_down`](Self::shutting_down) was called.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::Acquire)
    }

    /// The tower service answering `/health`, `/health/live` and `/health/ready`.
    pub fn routes(&self) -> HealthRoutes {
        HealthRoutes::new(self.clone())
    }

    /// The current report for `endpoint`, from the cache (never waits on a check).
    pub fn report(&self, endpoint: Endpoint) -> HealthReport {
        let inner = &*self.inner;
        let now = Instant::now();
        let mut report = HealthReport::new(Status::Pass);
        report.version = Some(inner.version.clone()).filter(|v| !v.is_empty());
        report.release_id = Some(inner.release_id.clone());
        report.service_id = Some(inner.service_id.clone());
        report.description.clone_from(&inner.description);

        let mut checks = BTreeMap::new();
        let mut not_passing = Vec::new();
        let mut status = Status::Pass;
        if endpoint != Endpoint::Live {
            for entry in &inner.checks {
                if endpoint == Endpoint::Ready && entry.kind != CheckKind::Readiness {
                    continue;
                }
                let check = entry.evaluate(now, inner.stale_after);
                if check.status != Status::Pass {
                    not_passing.push(format!("{} {}", entry.name, check.status));
                }
                status = status.max(check.status);
                checks.insert(entry.name.clone(), vec![check]);
            }
        }
        if endpoint != Endpoint::Ready {
            let mut uptime = CheckReport::new(Status::Pass);
            uptime.component_type = Some("system".to_owned());
            let secs = now.saturating_duration_since(inner.born).as_secs_f64();
            uptime.observed_value = serde_json::Number::from_f64((secs * 1000.0).round() / 1000.0)
                .map(serde_json::Value::Number);
            uptime.observed_unit = Some("s".to_owned());
            uptime.time = Some(forten_core::time::now_rfc3339());
            checks.insert("uptime".to_owned(), vec![uptime]);
        }
        let shutting_down = endpoint != Endpoint::Live && self.is_shutting_down();
        if shutting_down {
            status = Status::Fail;
            report.output = Some("shutting down".to_owned());
        } else if status != Status::Pass {
            report.output = Some(not_passing.join(", "));
        }
        report.status = status;
        report.checks = checks;
        report
    }
}

impl Entry {
    /// Records one probe outcome, applying the thresholds.
    fn record(&self, result: CheckResult) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let was_healthy = state.healthy;
        if result.status == Status::Fail {
            state.consecutive_successes = 0;
            state.consecutive_failures = state.consecutive_failures.saturating_add(1);
            if state.healthy && state.consecutive_failures >= self.failure_threshold {
                state.healthy = false;
            }
        } else {
            state.consecutive_failures = 0;
            state.consecutive_successes = state.consecutive_successes.saturating_add(1);
            if !state.healthy && state.consecutive_successes >= self.success_threshold {
                state.healthy = true;
            }
        }
        if was_healthy && !state.healthy {
            tracing::warn!(check = %self.name, output = result.output.as_deref().unwrap_or(""), "health check failing");
        } else if !was_healthy && state.healthy && state.last.is_some() {
            tracing::info!(check = %self.name, "health check recovered");
        }
        state.last = Some(Observation {
            result,
            at: Instant::now(),
            wall: SystemTime::now(),
        });
    }

    /// The check's entry in a report, from the cache: thresholds, criticality and staleness applied.
    fn evaluate(&self, now: Instant, stale_after: Duration) -> CheckReport {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut report = CheckReport::new(Status::Fail);
        report.component_type = Some(self.component_type.clone());
        let Some(last) = &state.last else {
            report.status = self.severity(Status::Fail);
            report.output = Some("not checked yet".to_owned());
            return report;
        };
        let raw = &last.result;
        report.component_id.clone_from(&raw.component_id);
        report.observed_value.clone_from(&raw.observed_value);
        report.observed_unit.clone_from(&raw.observed_unit);
        report.time = Some(forten_core::time::rfc3339(last.wall));
        let raw_output = raw.output.as_deref().unwrap_or("failed");
        let (status, output) = match (state.healthy, raw.status) {
            (true, Status::Fail) => (
                Status::Warn,
                Some(format!(
                    "{raw_output} (failure {} of {} before this check fails)",
                    state.consecutive_failures, self.failure_threshold
                )),
            ),
            (true, status) => (status, raw.output.clone()),
            (false, Status::Fail) => (Status::Fail, raw.output.clone()),
            (false, _) => (
                Status::Fail,
                Some(format!(
                    "recovering: success {} of {} before this check passes",
                    state.consecutive_successes, self.success_threshold
                )),
            ),
        };
        let mut status = self.severity(status);
        let mut output = output;
        let age = now.saturating_duration_since(last.at);
        if age > stale_after {
            status = status.max(Status::Warn);
            let stale = format!(
                "result is stale: {}s old (limit {}s)",
                age.as_secs(),
                stale_after.as_secs()
            );
            output = Some(match output {
                Some(o) => format!("{stale}; {o}"),
                None => stale,
            });
        }
        report.status = status;
        // The draft: output is for warn and fail only.
        report.output = if status == Status::Pass { None } else { output };
        report
    }

    /// A non-critical check warns where a critical one fails.
    fn severity(&self, status: Status) -> Status {
        if self.critical {
            status
        } else {
            status.min(Status::Warn)
        }
    }
}

/// Runs every check of `inner` concurrently; each result is cached as soon as it arrives.
async fn run_round(inner: &Arc<Inner>) {
    let mut set = JoinSet::new();
    let mut ids = HashMap::with_capacity(inner.checks.len());
    for (index, entry) in inner.checks.iter().enumerate() {
        let probe = Arc::clone(&entry.probe);
        let timeout = entry.timeout;
        // `probe()` is called inside the task, so a probe that panics, even before its
        // future exists, fails its own check and nothing else.
        let handle = set.spawn(async move {
            match tokio::time::timeout(timeout, probe.probe()).await {
                Ok(result) => result,
                Err(_) => CheckResult::fail(format!("timed out after {timeout:?}")),
            }
        });
        ids.insert(handle.id(), index);
    }
    while let Some(joined) = set.join_next_with_id().await {
        let (index, result) = match joined {
            Ok((id, result)) => (ids.get(&id).copied(), result),
            Err(e) => {
                let message = if e.is_panic() {
                    "check panicked"
                } else {
                    "check was cancelled"
                };
                (ids.get(&e.id()).copied(), CheckResult::fail(message))
            }
        };
        if let Some(entry) = index.and_then(|i| inner.checks.get(i)) {
            entry.record(result);
        }
    }
}
