//! [`RedisBackend`]: GCRA limits kept in Redis, shared by replicas.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::Script;
use redis::aio::ConnectionManager;

use super::backend::{Decision, RateLimitBackend};
use super::config::{LimitKey, RateLimitPolicy};
use crate::BoxError;

/// GCRA in one atomic step on Redis' own clock (`TIME`), so replicas with
/// skewed clocks still share one budget. Stores the theoretical arrival time
/// (microseconds) with a `PX` expiry at the moment the budget is full again.
/// Returns {allowed, remaining, reset_after_us, retry_after_us}.
static GCRA: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local t = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + t
local allow_at = new_tat - cap
if now < allow_at then
  return {0, 0, tat - now, allow_at - now}
end
local ttl_ms = math.max(1, math.ceil((new_tat - now) / 1000))
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', string.format('%.0f', ttl_ms))
return {1, math.floor((now + cap - new_tat) / t), new_tat - now, 0}",
    )
});

/// A rate-limit backend on Redis: every layer instance (in any process) using
/// the same prefix and policy shares each key's budget. One script call per
/// request.
///
/// ```no_run
/// use std::time::Duration;
/// use forten_core::ratelimit::{RateLimitLayer, RateLimitPolicy, RedisBackend};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let policy = RateLimitPolicy::new("api", 100, Duration::from_secs(60))?;
/// let backend = RedisBackend::connect("redis://127.0.0.1:6379", policy).await?;
/// let layer = RateLimitLayer::new(backend);
/// # let _ = layer; Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisBackend {
    conn: ConnectionManager,
    prefix: Arc<str>,
    policy: RateLimitPolicy,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("prefix", &self.prefix)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl RedisBackend {
    /// Connects to `url` with a reconnecting connection manager.
    pub async fn connect(url: &str, policy: RateLimitPolicy) -> Result<Self, redis::RedisError> {
        let conn = redis::Client::open(url)?.get_connection_manager().await?;
        Ok(Self::new(conn, policy))
    }

    /// A backend on an existing connection manager.
    pub fn new(conn: ConnectionManager, policy: RateLimitPolicy) -> Self {
        let prefix = format!("forten:ratelimit:{}:", policy.name()).into();
        RedisBackend {
            conn,
            prefix,
            policy,
        }
    }

    /// Puts every key under `prefix` (default `forten:ratelimit:<policy name>:`).
    pub fn with_prefix(mut self, prefix: impl Into<Arc<str>>) -> Self {
        self.prefix = prefix.into();
        self
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

impl RateLimitBackend for RedisBackend {
    type Future = Pin<Box<dyn Future<Output = Result<Decision, BoxError>> + Send>>;

    fn check(&self, key: &LimitKey) -> Self::Future {
        let key = format!("{}{key}", self.prefix);
        let t = micros(self.policy.emission_interval());
        let cap = t.saturating_mul(u64::from(self.policy.quota()));
        let mut conn = self.conn.clone();
        Box::pin(async move {
            let (allowed, remaining, reset_us, retry_us): (i64, i64, i64, i64) = GCRA
                .key(key)
                .arg(t)
                .arg(cap)
                .invoke_async(&mut conn)
                .await?;
            let us = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
            Ok(Decision {
                allowed: allowed == 1,
                remaining: u32::try_from(remaining).unwrap_or(0),
                reset_after: us(reset_us),
                retry_after: (allowed != 1).then(|| us(retry_us)),
            })
        })
    }

    fn policy(&self) -> &RateLimitPolicy {
        &self.policy
    }
}
