//! Header names of forten's wire contracts (DESIGN 4.1-4.4), as `http::HeaderName` constants.

use http::HeaderName;

/// `x-correlation-id`: the id that follows one logical request across services.
pub const X_CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");
/// `x-request-id`: accepted on input as the correlation id when `x-correlation-id` is absent.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// `traceparent` (W3C Trace Context).
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// `tracestate` (W3C Trace Context).
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
/// `x-request-timeout-ms`: the caller's remaining budget in milliseconds.
pub const X_REQUEST_TIMEOUT_MS: HeaderName = HeaderName::from_static("x-request-timeout-ms");
/// `grpc-timeout`: gRPC's deadline header, honoured on input.
pub const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");
/// `idempotency-key` (IETF httpapi draft).
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// `idempotent-replayed`: set to `true` on a replayed idempotent response.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
