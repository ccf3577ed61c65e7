//! `notification-service` (:3003): consumes the domain events from one
//! subscription (`notification-service.events`, bound to `user.registered`
//! and `event.*`; 3 retries at 200 ms, 1 s, 5 s, then its dead-letter queue;
//! dedup by eventId) and keeps notifications per user:
//!
//! - `user.registered`: a welcome to that user (and the user joins the
//!   service's directory, which says who manages which organization);
//! - `event.created`, `event.approved`, `event.rejected`: to the event's creator;
//! - `event.submitted`: to every manager and admin of the event's organization.
//!
//! Internal API (service token and forwarded user token required):
//! `GET /notifications[?unread=true]` (newest first) and
//! `PUT /notifications/{id}/read` (404 when not the caller's).

mod store;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::{get, put};
use axum::{Json, Router};
use forten_events::{Delivery, HandlerError, Subscription};
use forten_health::{Check, CheckResult};
use serde::Deserialize;
use serde_json::{Value, json};

pub use store::{Member, MemoryNotifications, Notification, NotificationRepository};

use crate::runtime::guard::internal;
use crate::runtime::names::NOTIFICATIONS;
use crate::runtime::{
    ApiError, ApiResult, BusConfig, CurrentUser, Launch, PathId, QueryMap, ServiceContext,
    server_stack,
};
use crate::system::SystemError;

/// The event types the service consumes.
pub const CONSUMED: [&str; 5] = [
    "user.registered",
    "event.created",
    "event.submitted",
    "event.approved",
    "event.rejected",
];

/// The subscription (its queue name carries the bus's namespace, if any).
pub fn subscription(bus: &BusConfig) -> Result<Subscription, forten_events::Error> {
    let mut builder = Subscription::builder(bus.queue_name("notification-service.events"))
        .max_retries(3)
        .retry_delays([
            Duration::from_millis(200),
            Duration::from_secs(1),
            Duration::from_secs(5),
        ])
        .dedup(10_000);
    for event_type in CONSUMED {
        builder = builder.bind(event_type);
    }
    builder.build()
}

/// Builds notification-service around `repo` (kept across restarts): declares
/// and consumes its subscription, serves its routes.
pub async fn launch(
    ctx: &ServiceContext,
    repo: Arc<dyn NotificationRepository>,
) -> Result<Launch, SystemError> {
    let bus = ctx.bus.connect(NOTIFICATIONS).await?;
    let sub = subscription(&ctx.bus)?;
    let consumer = Arc::clone(&repo);
    let handle = bus
        .subscriber()
        .subscribe(
            sub,
            Arc::new(move |d: Delivery| {
                let repo = Arc::clone(&consumer);
                async move {
                    // inside forten-events' span (event, correlation_id): name the service too
                    let _service =
                        tracing::info_span!("consumer", service = NOTIFICATIONS).entered();
                    handle(repo.as_ref(), &d)
                }
            }),
        )
        .await?;
    let counted = Arc::clone(&repo);
    let monitor = ctx
        .monitor(NOTIFICATIONS, Some(&bus))
        .check(
            Check::from_fn("notifications:count", move || {
                let n = counted.count();
                async move { CheckResult::pass().with_observed_value(n) }
            })
            .informational(),
        )
        .build()?;
    let routes = Router::new()
        .route("/notifications", get(list))
        .route("/notifications/{id}/read", put(mark_read))
        .with_state(repo);
    let internal = internal(routes, NOTIFICATIONS, &ctx.keys)?;
    let router = server_stack(
        NOTIFICATIONS,
        internal.nest_service("/health", monitor.routes().nested()),
        ctx.max_deadline,
        Some(&ctx.keys),
    );
    Ok(Launch {
        name: NOTIFICATIONS,
        router,
        monitor,
        registry: Some(ctx.registry.clone()),
        bus: Some(bus),
        subscriptions: vec![handle],
    })
}

#[derive(Deserialize)]
struct RegisteredUser {
    id: String,
    name: String,
    organization: String,
    role: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventData {
    id: String,
    title: String,
    organization: String,
    created_by: String,
    #[serde(default)]
    rejection_reason: Option<String>,
}

/// Turns one domain event into notifications. Data that does not decode is
/// a permanent error (dead-lettered at once).
pub fn handle(repo: &dyn NotificationRepository, d: &Delivery) -> Result<(), HandlerError> {
    let event_type = d.event.event_type.as_str();
    let notify = |user_id: &str, subject_id: &str, message: String| {
        let added = repo.add(Notification {
            id: uuid::Uuid::new_v4().to_string(),
            user_id: user_id.to_owned(),
            event_type: event_type.to_owned(),
            subject_id: subject_id.to_owned(),
            message,
            read: false,
            created_at: forten_core::time::now_rfc3339(),
            correlation_id: d.event.correlation_id.clone(),
            source_event_id: d.event.event_id.clone(),
        });
        tracing::info!(event_type, user_id, added, "notification");
    };
    if event_type == "user.registered" {
        let user = d.decode::<RegisteredUser>()?.data;
        repo.remember(Member {
            id: user.id.clone(),
            name: user.name.clone(),
            organization: user.organization,
            role: user.role,
        });
        notify(
            &user.id,
            &user.id,
            format!("Welcome to EventBoard, {}!", user.name),
        );
        return Ok(());
    }
    let event = d.decode::<EventData>()?.data;
    match event_type {
        "event.created" => notify(
            &event.created_by,
            &event.id,
            format!("You created \"{}\" (draft).", event.title),
        ),
        "event.submitted" => {
            let by = repo
                .member(&event.created_by)
                .map_or_else(|| "Someone".to_owned(), |m| m.name);
            for approver in repo.approvers(&event.organization) {
                notify(
                    &approver.id,
                    &event.id,
                    format!("{by} submitted \"{}\" for approval.", event.title),
                );
            }
        }
        "event.approved" => notify(
            &event.created_by,
            &event.id,
            format!("\"{}\" was approved.", event.title),
        ),
        "event.rejected" => notify(
            &event.created_by,
            &event.id,
            match &event.rejection_reason {
                Some(r) => format!("\"{}\" was rejected: {r}", event.title),
                None => format!("\"{}\" was rejected.", event.title),
            },
        ),
        other => {
            return Err(HandlerError::permanent(format!(
                "notification-service does not handle {other}"
            )));
        }
    }
    Ok(())
}

async fn list(
    State(repo): State<Arc<dyn NotificationRepository>>,
    user: CurrentUser,
    query: QueryMap,
) -> ApiResult<Json<Value>> {
    let unread = query.flag("unread")?.unwrap_or(false);
    Ok(Json(json!({ "data": repo.for_user(user.id(), unread) })))
}

async fn mark_read(
    State(repo): State<Arc<dyn NotificationRepository>>,
    user: CurrentUser,
    PathId(id): PathId,
) -> ApiResult<Json<Value>> {
    let n = repo
        .mark_read(user.id(), &id)
        .ok_or_else(|| ApiError::not_found("no such notification of yours"))?;
    Ok(Json(json!({ "data": n })))
}
