//! `events-service` (:3002): events scoped to the caller's organization and
//! their workflow (see [`model`]); publishes `event.created`,
//! `event.submitted`, `event.approved`, `event.rejected` (data: the event).
//!
//! Internal API (every route needs the gateway's service token and the
//! forwarded user token, `x-user-token`):
//!
//! | route | answer |
//! |---|---|
//! | `POST /events` `{title, description?}` | 201 event; 422 `/title` |
//! | `GET /events` | 200 the organization's events, newest first |
//! | `GET /events/{id}` | 200; 404 unknown or another organization's |
//! | `PATCH /events/{id}` `{title?, description?}` | 200; draft only (409), creator only (403) |
//! | `DELETE /events/{id}` | 204; draft only (409), creator only (403) |
//! | `POST /events/{id}/submit` | 200; creator only (403); draft only (409) |
//! | `POST /events/{id}/approve` | 200; needs `events:approve` (403); submitted only (409) |
//! | `POST /events/{id}/reject` `{reason?}` | 200; as approve |

pub mod model;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use forten_health::{Check, CheckResult};
use serde_json::{Value, json};

pub use model::{Action, BoardEvent, EventRepository, MemoryEvents, Status, WorkflowError};

use crate::runtime::auth::APPROVE;
use crate::runtime::guard::internal;
use crate::runtime::input::check_len;
use crate::runtime::names::EVENTS;
use crate::runtime::{
    ApiError, ApiResult, Bus, CurrentUser, JsonObject, Launch, PathId, ServiceContext, publish,
    server_stack,
};
use crate::system::SystemError;

/// Longest title, in characters.
pub const MAX_TITLE: usize = 200;
/// Longest description, in characters.
pub const MAX_DESCRIPTION: usize = 5000;
/// Longest rejection reason, in characters.
pub const MAX_REASON: usize = 1000;

#[derive(Clone)]
struct EventsState {
    events: Arc<dyn EventRepository>,
    bus: Bus,
}

/// Builds events-service around `events` (kept across restarts).
pub async fn launch(
    ctx: &ServiceContext,
    events: Arc<dyn EventRepository>,
) -> Result<Launch, SystemError> {
    let bus = ctx.bus.connect(EVENTS).await?;
    let counted = Arc::clone(&events);
    let monitor = ctx
        .monitor(EVENTS, Some(&bus))
        .check(
            Check::from_fn("events:count", move || {
                let n = counted.count();
                async move { CheckResult::pass().with_observed_value(n) }
            })
            .informational(),
        )
        .build()?;
    let state = EventsState {
        events,
        bus: bus.clone(),
    };
    let routes = Router::new()
        .route("/events", post(create).get(list))
        .route("/events/{id}", get(show).patch(edit).delete(remove))
        .route("/events/{id}/submit", post(submit))
        .route("/events/{id}/approve", post(approve))
        .route("/events/{id}/reject", post(reject))
        .with_state(state);
    let internal = internal(routes, EVENTS, &ctx.keys)?;
    let router = server_stack(
        EVENTS,
        internal.nest_service("/health", monitor.routes().nested()),
        ctx.max_deadline,
        Some(&ctx.keys),
    );
    Ok(Launch {
        name: EVENTS,
        router,
        monitor,
        registry: Some(ctx.registry.clone()),
        bus: Some(bus),
        subscriptions: Vec::new(),
    })
}

/// `{"data": <event>}`, serialized straight from the event (a `json!`
/// value in between cost a dozen allocations per answer).
#[derive(serde::Serialize)]
struct Data {
    data: BoardEvent,
}

/// The answer with one event.
type EventDoc = Json<Data>;

fn data(event: BoardEvent) -> EventDoc {
    Json(Data { data: event })
}

/// What a body says about the description.
enum DescriptionField {
    /// Not in the body: keep it.
    Absent,
    /// `null` or a string (up to the limit): set it.
    Set(Option<String>),
}

fn description(body: &JsonObject) -> Result<DescriptionField, ApiError> {
    if !body.has("description") {
        return Ok(DescriptionField::Absent);
    }
    let d = body.optional_str("description")?;
    if let Some(d) = d {
        check_len("description", d, 0, MAX_DESCRIPTION)?;
    }
    Ok(DescriptionField::Set(d.map(str::to_owned)))
}

async fn create(
    State(s): State<EventsState>,
    user: CurrentUser,
    body: JsonObject,
) -> ApiResult<(StatusCode, EventDoc)> {
    user.require("events:write")?;
    let title = body.required_str("title")?.trim().to_owned();
    check_len("title", &title, 1, MAX_TITLE)?;
    let description = match description(&body)? {
        DescriptionField::Set(d) => d,
        DescriptionField::Absent => None,
    };
    let now = forten_core::time::now_rfc3339();
    let event = BoardEvent {
        id: uuid::Uuid::new_v4().to_string(),
        title,
        description,
        status: Status::Draft,
        organization: user.organization().to_owned(),
        created_by: user.id().to_owned(),
        created_at: now.clone(),
        updated_at: now,
        rejection_reason: None,
    };
    s.events.insert(event.clone());
    publish(&s.bus, "event.created", "event", &event.id, &event).await;
    Ok((StatusCode::CREATED, data(event)))
}

async fn list(State(s): State<EventsState>, user: CurrentUser) -> ApiResult<Json<Value>> {
    user.require("events:read")?;
    Ok(Json(json!({ "data": s.events.list(user.organization()) })))
}

async fn show(
    State(s): State<EventsState>,
    user: CurrentUser,
    PathId(id): PathId,
) -> ApiResult<EventDoc> {
    user.require("events:read")?;
    let event = s
        .events
        .get(user.organization(), &id)
        .ok_or(WorkflowError::NotFound)?;
    Ok(data(event))
}

fn creator_only(user: &CurrentUser, event: &BoardEvent, what: &str) -> Result<(), WorkflowError> {
    if event.created_by == user.id() {
        Ok(())
    } else {
        Err(WorkflowError::Forbidden(format!(
            "only the event's creator can {what} it"
        )))
    }
}

fn draft_only(event: &BoardEvent, what: &str) -> Result<(), WorkflowError> {
    if event.status == Status::Draft {
        Ok(())
    } else {
        Err(WorkflowError::Conflict(format!(
            "cannot {what} an event that is {}; only drafts can be changed",
            event.status.as_str()
        )))
    }
}

async fn edit(
    State(s): State<EventsState>,
    user: CurrentUser,
    PathId(id): PathId,
    body: JsonObject,
) -> ApiResult<EventDoc> {
    user.require("events:write")?;
    let title = match body.optional_str("title")? {
        Some(t) => {
            check_len("title", t, 1, MAX_TITLE)?;
            Some(t.trim().to_owned())
        }
        None if body.has("title") => {
            return Err(ApiError::invalid("/title", "`title` cannot be null"));
        }
        None => None,
    };
    let description = description(&body)?;
    let event = s.events.update(user.organization(), &id, &mut |e| {
        creator_only(&user, e, "edit")?;
        draft_only(e, "edit")?;
        if let Some(t) = &title {
            e.title.clone_from(t);
        }
        if let DescriptionField::Set(d) = &description {
            e.description.clone_from(d);
        }
        e.updated_at = forten_core::time::now_rfc3339();
        Ok(())
    })?;
    Ok(data(event))
}

async fn remove(
    State(s): State<EventsState>,
    user: CurrentUser,
    PathId(id): PathId,
) -> ApiResult<StatusCode> {
    user.require("events:write")?;
    s.events.remove(user.organization(), &id, &mut |e| {
        creator_only(&user, e, "delete")?;
        draft_only(e, "delete")
    })?;
    Ok(StatusCode::NO_CONTENT)
}

async fn transition(
    s: &EventsState,
    user: &CurrentUser,
    id: &str,
    action: Action,
    reason: Option<String>,
) -> ApiResult<EventDoc> {
    match action {
        Action::Submit => user.require("events:write")?,
        Action::Approve | Action::Reject => user.require(APPROVE)?,
    }
    let event = s.events.update(user.organization(), id, &mut |e| {
        if action == Action::Submit {
            creator_only(user, e, "submit")?;
        }
        e.status = action.apply(e.status)?;
        if action == Action::Reject {
            e.rejection_reason.clone_from(&reason);
        }
        e.updated_at = forten_core::time::now_rfc3339();
        Ok(())
    })?;
    publish(&s.bus, action.event_type(), "event", &event.id, &event).await;
    Ok(data(event))
}

async fn submit(
    State(s): State<EventsState>,
    user: CurrentUser,
    PathId(id): PathId,
) -> ApiResult<EventDoc> {
    transition(&s, &user, &id, Action::Submit, None).await
}

async fn approve(
    State(s): State<EventsState>,
    user: CurrentUser,
    PathId(id): PathId,
) -> ApiResult<EventDoc> {
    transition(&s, &user, &id, Action::Approve, None).await
}

/// Reject's body is optional: none, empty, or `{"reason": "..."}`.
async fn reject(
    State(s): State<EventsState>,
    user: CurrentUser,
    PathId(id): PathId,
    req: Request,
) -> ApiResult<EventDoc> {
    let bytes = axum::body::to_bytes(req.into_body(), crate::runtime::input::MAX_BODY_BYTES)
        .await
        .map_err(|_| ApiError::bad_request("the request body could not be read"))?;
    let reason = if bytes.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let body = JsonObject::parse(&bytes)?;
        let reason = body.optional_str("reason")?.map(|r| r.trim().to_owned());
        if let Some(r) = &reason {
            check_len("reason", r, 0, MAX_REASON)?;
        }
        reason.filter(|r| !r.is_empty())
    };
    transition(&s, &user, &id, Action::Reject, reason).await
}
