//! Checks: what to probe, how often it may fail before it counts, and what failure means.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;
use crate::report::{ComponentType, Status};

/// The future a [`Probe`] returns.
///
/// Boxed on purpose: a probe runs once per check per interval in the background, never on a
/// request path, and boxing lets checks of different types live in one monitor.
pub type ProbeFuture = Pin<Box<dyn Future<Output = CheckResult> + Send + 'static>>;

/// Something that can observe one dependency. Implement it for a custom check, or use the
/// constructors on [`Check`] ([`Check::from_fn`], [`Check::tcp`], ...).
///
/// The monitor applies the timeout, so a probe may simply await its dependency.
pub trait Probe: Send + Sync + 'static {
    /// Observes the dependency once.
    fn probe(&self) -> ProbeFuture;
}

/// The outcome of one probe: a status, and optionally what was measured and why it is not `pass`.
///
/// ```
/// use forten_health::{CheckResult, Status};
/// let r = CheckResult::pass().with_observed_value(3).with_observed_unit("connections");
/// assert_eq!(r.status, Status::Pass);
/// let r = CheckResult::fail("connection refused");
/// assert_eq!(r.output.as_deref(), Some("connection refused"));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CheckResult {
    /// Pass, warn or fail, before the monitor applies thresholds and criticality.
    pub status: Status,
    /// What was measured (`observedValue`).
    pub observed_value: Option<serde_json::Value>,
    /// The unit of the measurement (`observedUnit`).
    pub observed_unit: Option<String>,
    /// Why the result is not `pass` (`output`; never sent on pass).
    pub output: Option<String>,
    /// Identifies the sub-component observed (`componentId`).
    pub component_id: Option<String>,
}

impl CheckResult {
    fn with_status(status: Status, output: Option<String>) -> Self {
        CheckResult {
            status,
            observed_value: None,
            observed_unit: None,
            output,
            component_id: None,
        }
    }

    /// The dependency is healthy.
    pub fn pass() -> Self {
        Self::with_status(Status::Pass, None)
    }

    /// The dependency works but something deserves attention.
    pub fn warn(output: impl Into<String>) -> Self {
        Self::with_status(Status::Warn, Some(output.into()))
    }

    /// The dependency does not work.
    pub fn fail(output: impl Into<String>) -> Self {
        Self::with_status(Status::Fail, Some(output.into()))
    }

    /// Sets the measured value.
    pub fn with_observed_value(mut self, value: impl Into<serde_json::Value>) -> Self {
        self.observed_value = Some(value.into());
        self
    }

    /// Sets the unit of the measured value.
    pub fn with_observed_unit(mut self, unit: impl Into<String>) -> Self {
        self.observed_unit = Some(unit.into());
        self
    }

    /// Sets the id of the sub-component observed.
    pub fn with_component_id(mut self, id: impl Into<String>) -> Self {
        self.component_id = Some(id.into());
        self
    }

    /// Sets the measured value to a latency in milliseconds (unit `ms`, microsecond precision).
    pub fn with_latency(self, elapsed: Duration) -> Self {
        let ms = (elapsed.as_secs_f64() * 1_000_000.0).round() / 1000.0;
        let value = serde_json::Number::from_f64(ms).map_or(serde_json::Value::Null, Into::into);
        self.with_observed_value(value).with_observed_unit("ms")
    }
}

impl From<bool> for CheckResult {
    /// `true` passes, `false` fails.
    fn from(ok: bool) -> Self {
        if ok {
            CheckResult::pass()
        } else {
            CheckResult::fail("check reported unhealthy")
        }
    }
}

impl<E: fmt::Display> From<Result<(), E>> for CheckResult {
    /// `Ok` passes, `Err` fails with the error as output.
    fn from(result: Result<(), E>) -> Self {
        match result {
            Ok(()) => CheckResult::pass(),
            Err(e) => CheckResult::fail(e.to_string()),
        }
    }
}

/// Which endpoints a check counts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum CheckKind {
    /// Counts for `/health/ready` and `/health` (the default).
    #[default]
    Readiness,
    /// Shown on `/health` only; never gates readiness. (`/health/live` runs no check at all:
    /// liveness is the process alone.)
    Informational,
}

/// A named, configured check: the probe plus how the monitor treats its results.
///
/// Defaults: component type `component` (`datastore` for Redis), kind
/// [`CheckKind::Readiness`], timeout 2 s, critical, failure threshold 1, success threshold 1.
///
/// A check starts out failing ("not checked yet") until its first `success_threshold`
/// consecutive successes, like a Kubernetes readiness probe. Once healthy, it reports
/// `fail` only after `failure_threshold` consecutive failures; the failures before that
/// report `warn` (still HTTP 200), so a flapping dependency does not flap readiness.
/// A non-critical check reports `warn` where a critical one reports `fail`. A probe's own
/// `warn` counts as a success for the thresholds and is reported as `warn`.
///
/// ```
/// use std::time::Duration;
/// use forten_health::{Check, CheckKind, ComponentType};
///
/// let check = Check::tcp("postgres:connect", "127.0.0.1:5432")
///     .component_type(ComponentType::Datastore)
///     .timeout(Duration::from_secs(1))
///     .failure_threshold(3)
///     .success_threshold(1);
/// assert_eq!(check.name(), "postgres:connect");
///
/// let cache = Check::from_bool("cache:warm", || true).non_critical().kind(CheckKind::Informational);
/// assert!(!cache.is_critical());
/// ```
pub struct Check {
    pub(crate) name: String,
    pub(crate) component_type: ComponentType,
    pub(crate) kind: CheckKind,
    pub(crate) timeout: Duration,
    pub(crate) critical: bool,
    pub(crate) failure_threshold: u32,
    pub(crate) success_threshold: u32,
    /// The probe, or the configuration error found when the check was made
    /// (reported by [`HealthMonitorBuilder::build`](crate::HealthMonitorBuilder::build)).
    pub(crate) probe: Result<Arc<dyn Probe>, Error>,
}

impl fmt::Debug for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Check")
            .field("name", &self.name)
            .field("component_type", &self.component_type)
            .field("kind", &self.kind)
            .field("timeout", &self.timeout)
            .field("critical", &self.critical)
            .field("failure_threshold", &self.failure_threshold)
            .field("success_threshold", &self.success_threshold)
            .finish_non_exhaustive()
    }
}

/// The default per-check timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

struct FnProbe<F>(F);

impl<F, Fut> Probe for FnProbe<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = CheckResult> + Send + 'static,
{
    fn probe(&self) -> ProbeFuture {
        Box::pin((self.0)())
    }
}

struct BoolProbe<F>(F);

impl<F> Probe for BoolProbe<F>
where
    F: Fn() -> bool + Send + Sync + 'static,
{
    fn probe(&self) -> ProbeFuture {
        let ok = (self.0)();
        Box::pin(std::future::ready(if ok {
            CheckResult::pass()
        } else {
            CheckResult::fail("not connected")
        }))
    }
}

impl Check {
    pub(crate) fn from_parts(
        name: impl Into<String>,
        component_type: ComponentType,
        probe: Result<Arc<dyn Probe>, Error>,
    ) -> Self {
        Check {
            name: name.into(),
            component_type,
            kind: CheckKind::Readiness,
            timeout: DEFAULT_TIMEOUT,
            critical: true,
            failure_threshold: 1,
            success_threshold: 1,
            probe,
        }
    }

    /// A check around your own [`Probe`].
    pub fn new(name: impl Into<String>, probe: impl Probe) -> Self {
        Self::from_parts(name, ComponentType::Component, Ok(Arc::new(probe)))
    }

    /// A check around an async closure or `async fn` returning a [`CheckResult`]
    /// (anything that converts into one: `bool`, `Result<(), E: Display>`, ... via `.into()`).
    ///
    /// ```
    /// use forten_health::{Check, CheckResult};
    /// async fn queue_depth() -> usize { 12 }
    ///
    /// let check = Check::from_fn("jobs:queueDepth", || async {
    ///     let depth = queue_depth().await;
    ///     let result = if depth < 1000 { CheckResult::pass() } else { CheckResult::warn("queue is backing up") };
    ///     result.with_observed_value(depth).with_observed_unit("jobs")
    /// });
    /// ```
    pub fn from_fn<F, Fut>(name: impl Into<String>, f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = CheckResult> + Send + 'static,
    {
        Self::new(name, FnProbe(f))
    }

    /// A check around a synchronous `bool` (true = pass, false = fail "not connected").
    /// The closure must be cheap and must not block (read a flag, not a socket): the
    /// timeout cannot interrupt synchronous code. For I/O use [`Check::from_fn`].
    ///
    /// This is how a message bus plugs in without either crate depending on the other:
    /// forten-events' bus exposes `is_connected()`, and the closure reads it.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use forten_health::{Check, HealthMonitor};
    ///
    /// // Stands in for forten-events' bus: anything with a cheap `is_connected()`.
    /// struct Bus(AtomicBool);
    /// impl Bus { fn is_connected(&self) -> bool { self.0.load(Ordering::Relaxed) } }
    /// let bus = Arc::new(Bus(AtomicBool::new(true)));
    ///
    /// let monitor = HealthMonitor::builder("notification-service", "1.0.0")
    ///     .check(Check::from_bool("rabbitmq:connection", {
    ///         let bus = Arc::clone(&bus);
    ///         move || bus.is_connected()
    ///     }))
    ///     .build()
    ///     .unwrap();
    /// # let _ = monitor;
    /// ```
    pub fn from_bool<F>(name: impl Into<String>, f: F) -> Self
    where
        F: Fn() -> bool + Send + Sync + 'static,
    {
        Self::new(name, BoolProbe(f))
    }

    /// Sets the component type (`componentType`).
    pub fn component_type(mut self, component_type: ComponentType) -> Self {
        self.component_type = component_type;
        self
    }

    /// Sets which endpoints the check counts for.
    pub fn kind(mut self, kind: CheckKind) -> Self {
        self.kind = kind;
        self
    }

    /// Shorthand for `.kind(CheckKind::Informational)`: shown on `/health`, never gates readiness.
    pub fn informational(self) -> Self {
        self.kind(CheckKind::Informational)
    }

    /// Sets how long one probe may take; a probe still running then is cut off and reported `fail`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Whether a failure of this check fails the service (`true`, the default) or only warns.
    pub fn critical(mut self, critical: bool) -> Self {
        self.critical = critical;
        self
    }

    /// Shorthand for `.critical(false)`: a failure reports `warn` (HTTP 200).
    pub fn non_critical(self) -> Self {
        self.critical(false)
    }

    /// Consecutive failures before a healthy check reports failure (default 1).
    pub fn failure_threshold(mut self, n: u32) -> Self {
        self.failure_threshold = n;
        self
    }

    /// Consecutive successes before a failing check reports healthy again (default 1).
    pub fn success_threshold(mut self, n: u32) -> Self {
        self.success_threshold = n;
        self
    }

    /// The check's name, the key in the `checks` object.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether a failure fails the service.
    pub fn is_critical(&self) -> bool {
        self.critical
    }

    /// Which endpoints the check counts for.
    pub fn check_kind(&self) -> CheckKind {
        self.kind
    }
}

/// Validates a check name: `component:measurement`, or a bare `component`.
pub(crate) fn validate_name(name: &str) -> Result<(), Error> {
    let invalid = |reason| Error::InvalidName {
        name: name.to_owned(),
        reason,
    };
    if name == "uptime" {
        return Err(invalid(
            "`uptime` is the built-in uptime entry; pick another name",
        ));
    }
    if name.is_empty() {
        return Err(invalid("it is empty"));
    }
    if name.len() > 256 {
        return Err(invalid("it is longer than 256 bytes"));
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("it contains whitespace or control characters"));
    }
    let mut parts = name.split(':');
    let component = parts.next().unwrap_or_default();
    let measurement = parts.next();
    if parts.next().is_some() {
        return Err(invalid("it has more than one ':'"));
    }
    if component.is_empty() || measurement.is_some_and(str::is_empty) {
        return Err(invalid("a part around ':' is empty"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["postgres:connections", "disk", "auth-service:ready", "a:b"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ":x", "x:", "a:b:c", "has space:x", "tab\t:x", "uptime"] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn conversions() {
        assert_eq!(CheckResult::from(true).status, Status::Pass);
        assert_eq!(CheckResult::from(false).status, Status::Fail);
        let r: CheckResult = Err::<(), _>("boom").into();
        assert_eq!(r.output.as_deref(), Some("boom"));
        let r = CheckResult::pass().with_latency(Duration::from_micros(1500));
        assert_eq!(r.observed_value, Some(serde_json::json!(1.5)));
        assert_eq!(r.observed_unit.as_deref(), Some("ms"));
    }
}
