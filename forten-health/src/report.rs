//! The `application/health+json` document (IETF draft "Health Check Response Format for HTTP APIs").
//!
//! These types serialize what the endpoints answer and deserialize what other services answer,
//! so a gateway or a registry can read a peer's health with the same types.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The media type of every health document: `application/health+json`.
pub const HEALTH_JSON_CONTENT_TYPE: &str = "application/health+json";

/// The health of a service or of one check: `pass`, `warn` or `fail`.
///
/// Ordered from best to worst, so the overall status is the maximum of its parts.
/// Reading a peer's document also accepts the draft's aliases (`ok`/`up` for pass,
/// `error`/`down` for fail).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Healthy: HTTP 200.
    #[serde(alias = "ok", alias = "up")]
    Pass,
    /// Healthy with a concern: HTTP 200.
    Warn,
    /// Unhealthy: HTTP 503.
    #[serde(alias = "error", alias = "down")]
    Fail,
}

impl Status {
    /// The HTTP status an endpoint answers for this health status (pass/warn 200, fail 503).
    pub fn http_status(self) -> http::StatusCode {
        match self {
            Status::Pass | Status::Warn => http::StatusCode::OK,
            Status::Fail => http::StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The wire name: `"pass"`, `"warn"` or `"fail"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The health document: the body of `/health`, `/health/live` and `/health/ready`.
///
/// ```
/// use forten_health::{HealthReport, Status};
/// let body = r#"{"status":"pass","serviceId":"auth-service",
///   "checks":{"postgres:connections":[{"componentType":"datastore","status":"pass","observedValue":3}]}}"#;
/// let report: HealthReport = serde_json::from_str(body).unwrap();
/// assert_eq!(report.status, Status::Pass);
/// assert_eq!(report.checks["postgres:connections"][0].observed_value, Some(3.into()));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct HealthReport {
    /// The overall status: the worst status among the checks included.
    pub status: Status,
    /// The public (major) version of the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The release of the service, e.g. `1.0.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_id: Option<String>,
    /// The unique name of the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_id: Option<String>,
    /// A human-readable description of the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Why the service is not `pass` (omitted on pass).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Results keyed `component:measurement`; each key holds one or more observations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub checks: BTreeMap<String, Vec<CheckReport>>,
}

impl HealthReport {
    /// A report with only a status.
    pub fn new(status: Status) -> Self {
        HealthReport {
            status,
            version: None,
            release_id: None,
            service_id: None,
            description: None,
            output: None,
            checks: BTreeMap::new(),
        }
    }
}

/// One observation of one check, an element of a `checks` array.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct CheckReport {
    /// Identifies a sub-component, e.g. one node of a cluster or the peer's `serviceId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component_id: Option<String>,
    /// The kind of component: `component`, `datastore`, `system`, or a custom value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component_type: Option<String>,
    /// What was measured (a number, a string, anything JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_value: Option<serde_json::Value>,
    /// The unit of `observedValue`, e.g. `ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_unit: Option<String>,
    /// The status of this observation.
    pub status: Status,
    /// When the observation was made, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// Why the observation is not `pass`; never sent on pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
}

impl CheckReport {
    /// An observation with only a status.
    pub fn new(status: Status) -> Self {
        CheckReport {
            component_id: None,
            component_type: None,
            observed_value: None,
            observed_unit: None,
            status,
            time: None,
            output: None,
        }
    }
}

/// The kind of component a check observes (the draft's `componentType`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ComponentType {
    /// A service or library component (the default).
    Component,
    /// A database, cache or other store.
    Datastore,
    /// The host or process: memory, CPU, uptime.
    System,
    /// Any other value, sent as is.
    Custom(String),
}

impl ComponentType {
    /// The wire value.
    pub fn as_str(&self) -> &str {
        match self {
            ComponentType::Component => "component",
            ComponentType::Datastore => "datastore",
            ComponentType::System => "system",
            ComponentType::Custom(s) => s,
        }
    }
}

impl fmt::Display for ComponentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
