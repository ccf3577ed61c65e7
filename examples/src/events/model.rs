//! Events, their workflow and their storage.
//!
//! ```text
//! draft --submit--> submitted --approve--> approved
//!                             \--reject--> rejected
//! ```
//! Editing and deleting are allowed in `draft` only. Every other move is a
//! [`WorkflowError::Conflict`] (409).

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use serde::{Deserialize, Serialize};

use crate::runtime::ApiError;

/// Where an event is in its workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Being written; editable.
    Draft,
    /// Waiting for a manager's decision.
    Submitted,
    /// Approved (final).
    Approved,
    /// Rejected (final).
    Rejected,
}

impl Status {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Draft => "draft",
            Status::Submitted => "submitted",
            Status::Approved => "approved",
            Status::Rejected => "rejected",
        }
    }
}

/// A workflow move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// draft -> submitted.
    Submit,
    /// submitted -> approved.
    Approve,
    /// submitted -> rejected.
    Reject,
}

impl Action {
    /// The domain event a successful move publishes.
    pub fn event_type(self) -> &'static str {
        match self {
            Action::Submit => "event.submitted",
            Action::Approve => "event.approved",
            Action::Reject => "event.rejected",
        }
    }

    /// The status after the move, or why it is not allowed from `from`.
    pub fn apply(self, from: Status) -> Result<Status, WorkflowError> {
        match (self, from) {
            (Action::Submit, Status::Draft) => Ok(Status::Submitted),
            (Action::Approve, Status::Submitted) => Ok(Status::Approved),
            (Action::Reject, Status::Submitted) => Ok(Status::Rejected),
            (action, from) => Err(WorkflowError::Conflict(format!(
                "cannot {} an event that is {}",
                match action {
                    Action::Submit => "submit",
                    Action::Approve => "approve",
                    Action::Reject => "reject",
                },
                from.as_str()
            ))),
        }
    }
}

/// An event on the board.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BoardEvent {
    /// A UUID.
    pub id: String,
    /// 1 to 200 characters.
    pub title: String,
    /// Free text, optional.
    pub description: Option<String>,
    /// Workflow status.
    pub status: Status,
    /// The organization it belongs to (the creator's).
    pub organization: String,
    /// The creator's user id.
    pub created_by: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// Why it was rejected, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejection_reason: Option<String>,
}

/// Why a change is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkflowError {
    /// No such event in the caller's organization (404).
    NotFound,
    /// Not the caller's to change (403).
    Forbidden(String),
    /// Not allowed in the current status (409).
    Conflict(String),
}

impl From<WorkflowError> for ApiError {
    fn from(e: WorkflowError) -> Self {
        match e {
            WorkflowError::NotFound => ApiError::not_found("no such event in your organization"),
            WorkflowError::Forbidden(d) => ApiError::forbidden(d),
            WorkflowError::Conflict(d) => ApiError::conflict(d),
        }
    }
}

/// A change applied under the repository's lock.
pub type Change<'a> = &'a mut (dyn FnMut(&mut BoardEvent) -> Result<(), WorkflowError> + Send);

/// Where events live, always scoped by organization. In memory here; a
/// database-backed implementation would keep the same operations (a change
/// is one transaction).
pub trait EventRepository: Send + Sync + 'static {
    /// Stores a new event.
    fn insert(&self, event: BoardEvent);
    /// The event `id` of `org`.
    fn get(&self, org: &str, id: &str) -> Option<BoardEvent>;
    /// The events of `org`, newest first.
    fn list(&self, org: &str) -> Vec<BoardEvent>;
    /// Applies `change` to the event atomically; returns the changed event.
    fn update(&self, org: &str, id: &str, change: Change<'_>) -> Result<BoardEvent, WorkflowError>;
    /// Removes the event if `check` allows; returns it.
    fn remove(&self, org: &str, id: &str, check: Change<'_>) -> Result<BoardEvent, WorkflowError>;
    /// How many events there are.
    fn count(&self) -> usize;
}

/// Events in a map behind a lock (never held across an `.await`).
#[derive(Debug, Default)]
pub struct MemoryEvents {
    inner: RwLock<Store>,
}

#[derive(Debug, Default)]
struct Store {
    next: u64,
    events: HashMap<String, (u64, BoardEvent)>,
}

impl MemoryEvents {
    /// An empty repository.
    pub fn new() -> Self {
        Self::default()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Store> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Store> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }
}

impl EventRepository for MemoryEvents {
    fn insert(&self, event: BoardEvent) {
        let mut store = self.write();
        store.next += 1;
        let seq = store.next;
        store.events.insert(event.id.clone(), (seq, event));
    }

    fn get(&self, org: &str, id: &str) -> Option<BoardEvent> {
        self.read()
            .events
            .get(id)
            .filter(|(_, e)| e.organization == org)
            .map(|(_, e)| e.clone())
    }

    fn list(&self, org: &str) -> Vec<BoardEvent> {
        let store = self.read();
        let mut found: Vec<_> = store
            .events
            .values()
            .filter(|(_, e)| e.organization == org)
            .collect();
        found.sort_by_key(|(seq, _)| std::cmp::Reverse(*seq));
        found.into_iter().map(|(_, e)| e.clone()).collect()
    }

    fn update(&self, org: &str, id: &str, change: Change<'_>) -> Result<BoardEvent, WorkflowError> {
        let mut store = self.write();
        let (_, event) = store
            .events
            .get_mut(id)
            .filter(|(_, e)| e.organization == org)
            .ok_or(WorkflowError::NotFound)?;
        let mut next = event.clone();
        change(&mut next)?;
        *event = next.clone();
        Ok(next)
    }

    fn remove(&self, org: &str, id: &str, check: Change<'_>) -> Result<BoardEvent, WorkflowError> {
        let mut store = self.write();
        let (_, event) = store
            .events
            .get_mut(id)
            .filter(|(_, e)| e.organization == org)
            .ok_or(WorkflowError::NotFound)?;
        check(event)?;
        store
            .events
            .remove(id)
            .map(|(_, e)| e)
            .ok_or(WorkflowError::NotFound)
    }

    fn count(&self) -> usize {
        self.read().events.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_move_from_every_status() {
        use Action::*;
        use Status::*;
        for from in [Draft, Submitted, Approved, Rejected] {
            for action in [Submit, Approve, Reject] {
                let expected = match (action, from) {
                    (Submit, Draft) => Some(Submitted),
                    (Approve, Submitted) => Some(Approved),
                    (Reject, Submitted) => Some(Rejected),
                    _ => None,
                };
                match (action.apply(from), expected) {
                    (Ok(to), Some(want)) => assert_eq!(to, want),
                    (Err(WorkflowError::Conflict(_)), None) => {}
                    (got, want) => panic!("{action:?} from {from:?}: {got:?}, expected {want:?}"),
                }
            }
        }
    }

    fn event(id: &str, org: &str) -> BoardEvent {
        BoardEvent {
            id: id.into(),
            title: "t".into(),
            description: None,
            status: Status::Draft,
            organization: org.into(),
            created_by: "u".into(),
            created_at: String::new(),
            updated_at: String::new(),
            rejection_reason: None,
        }
    }

    #[test]
    fn organizations_are_isolated_and_lists_newest_first() {
        let repo = MemoryEvents::new();
        repo.insert(event("1", "a"));
        repo.insert(event("2", "a"));
        repo.insert(event("3", "b"));
        let ids: Vec<_> = repo.list("a").into_iter().map(|e| e.id).collect();
        assert_eq!(ids, ["2", "1"]);
        assert!(repo.get("b", "1").is_none());
        assert_eq!(
            repo.update("b", "1", &mut |_| Ok(())),
            Err(WorkflowError::NotFound)
        );
        assert_eq!(
            repo.remove("a", "1", &mut |_| Err(WorkflowError::Conflict("no".into()))),
            Err(WorkflowError::Conflict("no".into()))
        );
        assert_eq!(repo.count(), 3);
        assert!(repo.remove("a", "1", &mut |_| Ok(())).is_ok());
        assert_eq!(repo.count(), 2);
    }
}
