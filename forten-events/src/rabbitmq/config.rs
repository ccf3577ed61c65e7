//! [`RabbitMqConfig`]: where the broker is and how hard to hold on to it.

use std::time::Duration;

use lapin::uri::AMQPUri;

use crate::error::Error;

/// Settings of a [`RabbitMqBus`](super::RabbitMqBus).
///
/// ```
/// use std::time::Duration;
/// use forten_events::RabbitMqConfig;
///
/// let config = RabbitMqConfig::new("amqp://guest:guest@127.0.0.1:5672/%2f")
///     .exchange("forten.events")
///     .app_id("auth-service")
///     .heartbeat(Duration::from_secs(10))
///     .reconnect(30, Duration::from_millis(100), Duration::from_secs(2));
/// assert!(config.validate().is_ok());
/// assert!(RabbitMqConfig::new("not a uri").validate().is_err());
/// ```
#[derive(Clone, Debug)]
pub struct RabbitMqConfig {
    pub(crate) uri: String,
    pub(crate) exchange: String,
    pub(crate) app_id: String,
    pub(crate) heartbeat: Duration,
    pub(crate) reconnect_attempts: usize,
    pub(crate) reconnect_min: Duration,
    pub(crate) reconnect_max: Duration,
    pub(crate) recovery_timeout: Duration,
}

impl RabbitMqConfig {
    /// Settings for the broker at `uri` (`amqp://user:pass@host:5672/%2f`),
    /// with the defaults: exchange `forten.events`, app id `forten`,
    /// heartbeat 10 s, 30 reconnect attempts from 100 ms up to 2 s apart,
    /// publishes waiting up to 60 s for a lost connection to come back.
    pub fn new(uri: impl Into<String>) -> Self {
        RabbitMqConfig {
            uri: uri.into(),
            exchange: "forten.events".to_owned(),
            app_id: "forten".to_owned(),
            heartbeat: Duration::from_secs(10),
            reconnect_attempts: 30,
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(2),
            recovery_timeout: Duration::from_secs(60),
        }
    }

    /// The durable topic exchange events are published to; its dead-letter
    /// exchange is `<exchange>.dlx`.
    pub fn exchange(mut self, name: impl Into<String>) -> Self {
        self.exchange = name.into();
        self
    }

    /// The publishing service's name (AMQP `app_id`, `metadata.publishedBy`).
    pub fn app_id(mut self, name: impl Into<String>) -> Self {
        self.app_id = name.into();
        self
    }

    /// The heartbeat interval asked of the broker (detects a dead peer in
    /// about twice this); the URI's `heartbeat` query wins when present.
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = every;
        self
    }

    /// Connection attempts (the first connect and every recovery) and the
    /// exponential backoff between them.
    pub fn reconnect(mut self, attempts: usize, min_delay: Duration, max_delay: Duration) -> Self {
        self.reconnect_attempts = attempts;
        self.reconnect_min = min_delay;
        self.reconnect_max = max_delay;
        self
    }

    /// How long a publish (or a handler's ack) waits for a lost connection to
    /// recover before it fails.
    pub fn recovery_timeout(mut self, timeout: Duration) -> Self {
        self.recovery_timeout = timeout;
        self
    }

    /// Checks the settings, returning what to fix.
    pub fn validate(&self) -> Result<(), Error> {
        self.parsed_uri().map(|_| ())
    }

    pub(crate) fn parsed_uri(&self) -> Result<AMQPUri, Error> {
        let mut uri: AMQPUri = self.uri.parse().map_err(|e| {
            Error::Config(format!(
                "{:?} is not an AMQP URI ({e}); expected amqp://user:pass@host:5672/%2f",
                self.redacted_uri()
            ))
        })?;
        if self.exchange.is_empty() || self.exchange.len() > 200 {
            return Err(Error::Config(
                "the exchange name must be 1 to 200 bytes".to_owned(),
            ));
        }
        if self.app_id.len() > 255 {
            return Err(Error::Config(
                "the app id must be at most 255 bytes".to_owned(),
            ));
        }
        if self.heartbeat < Duration::from_secs(1) || self.heartbeat.as_secs() > 3600 {
            return Err(Error::Config(
                "the heartbeat must be between 1 s and 1 h".to_owned(),
            ));
        }
        if self.reconnect_attempts == 0 {
            return Err(Error::Config(
                "reconnect attempts must be at least 1".to_owned(),
            ));
        }
        if self.reconnect_min > self.reconnect_max {
            return Err(Error::Config(
                "the minimum reconnect delay exceeds the maximum".to_owned(),
            ));
        }
        if uri.query.heartbeat.is_none() {
            uri.query.heartbeat = Some(self.heartbeat.as_secs() as u16);
        }
        Ok(uri)
    }

    /// The URI without its password, for errors and logs.
    pub(crate) fn redacted_uri(&self) -> String {
        match (self.uri.find("://"), self.uri.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                let creds = &self.uri[scheme + 3..at];
                let user = creds.split(':').next().unwrap_or_default();
                format!("{}{user}:***{}", &self.uri[..scheme + 3], &self.uri[at..])
            }
            _ => self.uri.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_the_password() {
        let c = RabbitMqConfig::new("amqp://guest:secret@host:5672/%2f");
        assert_eq!(c.redacted_uri(), "amqp://guest:***@host:5672/%2f");
        assert_eq!(
            RabbitMqConfig::new("amqp://host").redacted_uri(),
            "amqp://host"
        );
    }

    #[test]
    fn rejects_bad_settings() {
        let ok = RabbitMqConfig::new("amqp://127.0.0.1:5672/%2f");
        assert_eq!(ok.parsed_uri().unwrap().query.heartbeat, Some(10));
        assert!(ok.clone().exchange("").validate().is_err());
        assert!(ok.clone().heartbeat(Duration::ZERO).validate().is_err());
        assert!(
            ok.clone()
                .reconnect(0, Duration::ZERO, Duration::ZERO)
                .validate()
                .is_err()
        );
        assert!(
            ok.reconnect(3, Duration::from_secs(2), Duration::from_secs(1))
                .validate()
                .is_err()
        );
    }
}
