//! JSON bodies of the registry HTTP API (DESIGN 4.9), shared by server and client.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::instance::ServiceInstance;

/// The header carrying a service's change index on `GET /registry/services/{name}`.
pub const INDEX_HEADER: &str = "x-registry-index";

/// The answer to a registration or heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lease {
    /// The instance id (generated when the registration had none).
    pub instance_id: String,
    /// How long the lease lives without a heartbeat.
    pub ttl_seconds: u64,
}

/// The answer to `GET /registry/services/{name}`: the healthy instances and the index of the
/// service's last change (pass it back as `?index=` to long-poll for the next change).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceInstances {
    /// The service name.
    pub name: String,
    /// The index of the service's last change.
    pub index: u64,
    /// Its healthy instances, sorted by id.
    pub instances: Vec<ServiceInstance>,
}

/// The answer to `GET /registry/services`: every service with healthy instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceDirectory {
    /// The registry's global change index.
    pub index: u64,
    /// Service name to its healthy instances.
    pub services: BTreeMap<String, Vec<ServiceInstance>>,
}
