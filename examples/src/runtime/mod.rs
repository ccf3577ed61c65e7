//! What every EventBoard service shares: the server stack
//! ([`server_stack`]), registration, health and graceful stop
//! ([`RunningService`]), the bus connection ([`BusConfig`]), keys, service
//! tokens and the forwarded user ([`Keys`], [`CurrentUser`]), and input
//! handling that answers JSON:API documents, never a 500 ([`JsonObject`],
//! [`ApiError`]), and the process's Prometheus `/metrics` ([`metrics`]).

mod accept;
pub mod auth;
pub mod bus;
pub mod context;
pub mod guard;
pub mod input;
pub mod metrics;
pub mod serve;

pub use accept::spawn_router;
pub use auth::{CurrentUser, Keys, Secrets, USER_TOKEN_HEADER};
pub use bus::{Bus, BusConfig};
pub use context::{ServiceContext, names, publish};
pub use input::{ApiError, ApiResult, JsonObject, PathId, QueryMap};
pub use serve::{Launch, RunningService, server_stack};
