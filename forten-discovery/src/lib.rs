//! Service discovery for tower services.
//!
//! - [`ServiceInstance`]: what a service registers (name, version, address, port, health-check
//!   URL, metadata, weight), validated, JSON in camelCase (DESIGN 4.9).
//! - [`Registry`]: register (a [`Registration`] heartbeats in the background), deregister,
//!   discover the healthy instances, watch changes. Backends: [`MemoryRegistry`] (embedded,
//!   TTL leases), `HttpRegistry` (client of the registry HTTP API, feature `http-client`),
//!   `EtcdRegistry` (etcd v3 JSON gateway, feature `etcd`), `ConsulRegistry` (Consul agent API,
//!   feature `consul`).
//! - `RegistryServer` (feature `server`): the registry HTTP API as a tower `Service`, mountable
//!   in axum.
//! - [`DiscoveryClient`]: a cached, watched view per service and a load-balanced [`Pick`] with
//!   feedback ([`LoadBalancer`]: round robin, random, smooth weighted round robin, least
//!   outstanding, power of two choices on peak EWMA).
//! - [`DiscoverChanges`]: a `tower::discover::Discover` for `tower::balance::p2c::Balance`.
//!
//! ```
//! use forten_discovery::{DiscoveryClient, MemoryRegistry, Registry, ServiceInstance};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), forten_discovery::DiscoveryError> {
//! let registry = MemoryRegistry::new();
//! let registration = registry
//!     .register(ServiceInstance::builder("events-service", "127.0.0.1", 3002).version("1.0.0").build()?)
//!     .await?;
//!
//! let discovery = DiscoveryClient::new(registry.clone());
//! assert_eq!(discovery.get_service_url("events-service").await?, "http://127.0.0.1:3002");
//!
//! registration.deregister().await?; // on shutdown
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod balance;
mod client;
#[cfg(feature = "consul")]
mod consul;
mod discover;
mod error;
#[cfg(feature = "etcd")]
mod etcd;
#[cfg(feature = "http-client")]
mod http_client;
mod instance;
mod memory;
mod registry;
#[cfg(feature = "server")]
mod server;
#[cfg(any(feature = "http-client", feature = "etcd", feature = "consul"))]
mod transport;
#[cfg(any(feature = "server", feature = "http-client"))]
pub mod wire;

pub use balance::LoadBalancer;
pub use client::{DiscoveryClient, DiscoveryClientBuilder, Pick, ServiceHandle};
#[cfg(feature = "consul")]
pub use consul::{ConsulRegistry, ConsulRegistryBuilder};
pub use discover::DiscoverChanges;
pub use error::DiscoveryError;
#[cfg(feature = "etcd")]
pub use etcd::{EtcdRegistry, EtcdRegistryBuilder};
#[cfg(feature = "http-client")]
pub use http_client::{HttpRegistry, HttpRegistryBuilder};
pub use instance::{
    MAX_METADATA_ENTRIES, MAX_METADATA_LEN, MAX_NAME_LEN, MAX_WEIGHT, ServiceInstance,
    ServiceInstanceBuilder,
};
#[cfg(feature = "health-check")]
pub use memory::HealthCheckConfig;
pub use memory::{DEFAULT_TTL, MemoryRegistry, MemoryRegistryBuilder};
pub use registry::{AnyRegistry, BoxFuture, InstanceStream, Registration, Registry};
#[cfg(feature = "server")]
pub use server::{
    DEFAULT_BODY_LIMIT, DEFAULT_WAIT, MAX_WAIT, RegistryServer, RegistryServerBuilder,
};

/// The README's examples, compiled and run as doctests.
#[cfg(all(
    doctest,
    feature = "server",
    feature = "http-client",
    feature = "health-check"
))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
