//! What guards a service's internal routes (everything the gateway calls).

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use forten_auth::AuthError;
use forten_core::error::ErrorResponseLayer;
use forten_core::idempotency::{IdempotencyLayer, MemoryStore};
use http::Request;
use http_body_util::{Either, Full};
use tower::ServiceBuilder;

use super::auth::Keys;
use super::context::names::GATEWAY;

/// Guards `routes` of the service `me` (outermost first):
/// [`ServiceAuthLayer`](forten_auth::ServiceAuthLayer), so only the gateway's
/// service token (audience `me`) gets in (401 otherwise); then an
/// [`IdempotencyLayer`] for POST and PATCH, because forten-client sends every
/// attempt of one call with the same `Idempotency-Key` and retries a POST
/// whose answer was lost: the retry replays the first answer instead of
/// creating the event twice. (Its store lives as long as the service runs.)
/// Health routes are added after this, so they need no token.
pub fn internal(routes: Router, me: &str, keys: &Keys) -> Result<Router, AuthError> {
    let to_body = |req: Request<Either<Body, Full<Bytes>>>| req.map(Body::new);
    Ok(routes.route_layer(
        ServiceBuilder::new()
            .layer(ErrorResponseLayer::new())
            .layer(keys.service_auth_layer(me, &[GATEWAY])?)
            .layer(IdempotencyLayer::new(MemoryStore::new()))
            .map_request(to_body),
    ))
}
