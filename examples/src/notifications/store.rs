//! Notifications and the directory of users they are addressed by, and their storage.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use serde::Serialize;

/// A notification to one user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    /// A UUID.
    pub id: String,
    /// Its recipient.
    pub user_id: String,
    /// The domain event that caused it (`event.approved`, ...).
    pub event_type: String,
    /// What it is about (the user or event id).
    pub subject_id: String,
    /// Human-readable text.
    pub message: String,
    /// Whether the user marked it read.
    pub read: bool,
    /// RFC 3339.
    pub created_at: String,
    /// The correlation id of the request that caused the domain event (from its envelope).
    pub correlation_id: String,
    /// The domain event's id (a redelivered event adds nothing).
    #[serde(skip)]
    pub source_event_id: String,
}

/// What the service knows of a user, from `user.registered`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// User id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Organization.
    pub organization: String,
    /// Role.
    pub role: String,
}

/// Where notifications and the user directory live. In memory here.
pub trait NotificationRepository: Send + Sync + 'static {
    /// Adds `n` unless the same source event already notified the same user;
    /// returns whether it was added.
    fn add(&self, n: Notification) -> bool;
    /// The user's notifications, newest first (unread only when asked).
    fn for_user(&self, user_id: &str, unread_only: bool) -> Vec<Notification>;
    /// Marks the user's notification `id` read; `None` when it is not theirs or unknown.
    fn mark_read(&self, user_id: &str, id: &str) -> Option<Notification>;
    /// Remembers a user.
    fn remember(&self, member: Member);
    /// The managers and admins of `org`.
    fn approvers(&self, org: &str) -> Vec<Member>;
    /// A known user.
    fn member(&self, id: &str) -> Option<Member>;
    /// How many notifications there are.
    fn count(&self) -> usize;
}

/// Notifications in maps behind a lock (never held across an `.await`).
#[derive(Debug, Default)]
pub struct MemoryNotifications {
    inner: RwLock<Store>,
}

#[derive(Debug, Default)]
struct Store {
    by_user: HashMap<String, Vec<Notification>>,
    members: HashMap<String, Member>,
    total: usize,
}

impl MemoryNotifications {
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

impl NotificationRepository for MemoryNotifications {
    fn add(&self, n: Notification) -> bool {
        let mut store = self.write();
        let list = store.by_user.entry(n.user_id.clone()).or_default();
        if list
            .iter()
            .any(|x| x.source_event_id == n.source_event_id && x.event_type == n.event_type)
        {
            return false;
        }
        list.push(n);
        store.total += 1;
        true
    }

    fn for_user(&self, user_id: &str, unread_only: bool) -> Vec<Notification> {
        let store = self.read();
        store
            .by_user
            .get(user_id)
            .map(|list| {
                list.iter()
                    .rev()
                    .filter(|n| !unread_only || !n.read)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    fn mark_read(&self, user_id: &str, id: &str) -> Option<Notification> {
        let mut store = self.write();
        let n = store
            .by_user
            .get_mut(user_id)?
            .iter_mut()
            .find(|n| n.id == id)?;
        n.read = true;
        Some(n.clone())
    }

    fn remember(&self, member: Member) {
        self.write().members.insert(member.id.clone(), member);
    }

    fn approvers(&self, org: &str) -> Vec<Member> {
        let store = self.read();
        let mut found: Vec<Member> = store
            .members
            .values()
            .filter(|m| m.organization == org && matches!(m.role.as_str(), "manager" | "admin"))
            .cloned()
            .collect();
        found.sort_by(|a, b| a.id.cmp(&b.id));
        found
    }

    fn member(&self, id: &str) -> Option<Member> {
        self.read().members.get(id).cloned()
    }

    fn count(&self) -> usize {
        self.read().total
    }
}
