//! Users and their storage: the [`UserRepository`] trait and its in-memory
//! implementation, plus password hashing (argon2id).

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Serialize};

/// A user as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// A UUID.
    pub id: String,
    /// Unique (compared case-insensitively).
    pub email: String,
    /// Display name.
    pub name: String,
    /// The organization the user belongs to.
    pub organization: String,
    /// `member`, `manager` or `admin`.
    pub role: String,
}

/// A user with its password hash (PHC string).
#[derive(Debug, Clone)]
pub struct StoredUser {
    /// The user.
    pub user: User,
    /// The argon2id hash in PHC format.
    pub password_hash: String,
}

/// The email is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DuplicateEmail;

/// Where users live. In memory here; a database-backed implementation
/// would keep the same operations (and enforce the unique email in the database).
pub trait UserRepository: Send + Sync + 'static {
    /// Stores a new user; the email must not be taken.
    fn insert(&self, user: StoredUser) -> Result<(), DuplicateEmail>;
    /// The user with this email (case-insensitive).
    fn by_email(&self, email: &str) -> Option<StoredUser>;
    /// The user with this id.
    fn by_id(&self, id: &str) -> Option<User>;
    /// How many users there are.
    fn count(&self) -> usize;
}

/// Users in a map behind a lock (never held across an `.await`).
#[derive(Debug, Default)]
pub struct MemoryUsers {
    inner: RwLock<Maps>,
}

#[derive(Debug, Default)]
struct Maps {
    by_email: HashMap<String, StoredUser>,
    email_of: HashMap<String, String>,
}

impl MemoryUsers {
    /// An empty repository.
    pub fn new() -> Self {
        Self::default()
    }
}

impl UserRepository for MemoryUsers {
    fn insert(&self, user: StoredUser) -> Result<(), DuplicateEmail> {
        let mut maps = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        let key = user.user.email.to_lowercase();
        if maps.by_email.contains_key(&key) {
            return Err(DuplicateEmail);
        }
        maps.email_of.insert(user.user.id.clone(), key.clone());
        maps.by_email.insert(key, user);
        Ok(())
    }

    fn by_email(&self, email: &str) -> Option<StoredUser> {
        let maps = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        maps.by_email.get(&email.to_lowercase()).cloned()
    }

    fn by_id(&self, id: &str) -> Option<User> {
        let maps = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        let email = maps.email_of.get(id)?;
        maps.by_email.get(email).map(|u| u.user.clone())
    }

    fn count(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .by_email
            .len()
    }
}

/// Password hashing with argon2id (OWASP's minimum: 19 MiB, 2 passes, 1 lane).
#[derive(Clone)]
pub struct Passwords {
    params: Params,
    /// A hash of a random password, verified against when the email is
    /// unknown so that a login takes as long either way.
    dummy: String,
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passwords").finish_non_exhaustive()
    }
}

impl Passwords {
    /// argon2id with OWASP's minimum parameters.
    pub fn new() -> Self {
        Self::with_params(Params::new(19 * 1024, 2, 1, None).unwrap_or_default())
    }

    /// argon2id with `params`.
    pub fn with_params(params: Params) -> Self {
        let mut p = Passwords {
            params,
            dummy: String::new(),
        };
        p.dummy = p
            .hash(&uuid::Uuid::new_v4().to_string())
            .unwrap_or_default();
        p
    }

    fn argon(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    /// A PHC string for `password` with a fresh random salt.
    pub fn hash(&self, password: &str) -> Result<String, argon2::password_hash::Error> {
        let salt = SaltString::encode_b64(uuid::Uuid::new_v4().as_bytes())?;
        Ok(self
            .argon()
            .hash_password(password.as_bytes(), &salt)?
            .to_string())
    }

    /// Whether `password` matches `hash` (a `None` hash: the dummy, always false).
    pub fn verify(&self, password: &str, hash: Option<&str>) -> bool {
        let known = hash.is_some();
        let phc = hash.unwrap_or(&self.dummy);
        let Ok(parsed) = PasswordHash::new(phc) else {
            return false;
        };
        self.argon()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
            && known
    }
}

impl Default for Passwords {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ_per_salt() {
        let p = Passwords::with_params(Params::new(256, 1, 1, None).expect("params"));
        let a = p.hash("correct horse").expect("hash");
        let b = p.hash("correct horse").expect("hash");
        assert_ne!(a, b);
        assert!(a.starts_with("$argon2id$"));
        assert!(p.verify("correct horse", Some(&a)));
        assert!(!p.verify("wrong horse", Some(&a)));
        assert!(!p.verify("correct horse", None));
        assert!(!p.verify("correct horse", Some("not a phc string")));
    }

    #[test]
    fn emails_are_unique_case_insensitively() {
        let users = MemoryUsers::new();
        let user = |id: &str, email: &str| StoredUser {
            user: User {
                id: id.into(),
                email: email.into(),
                name: "A".into(),
                organization: "o".into(),
                role: "member".into(),
            },
            password_hash: String::new(),
        };
        assert_eq!(users.insert(user("1", "a@b.io")), Ok(()));
        assert_eq!(users.insert(user("2", "A@B.io")), Err(DuplicateEmail));
        assert_eq!(users.by_id("1").map(|u| u.email), Some("a@b.io".into()));
        assert!(users.by_email("A@b.IO").is_some());
        assert_eq!(users.count(), 1);
    }
}
