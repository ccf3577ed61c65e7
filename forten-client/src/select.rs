//! Instance selection: which instance each attempt goes to.
//!
//! Every attempt (the retry layer sits outside) picks an instance, skipping
//! those whose breaker is open, rewrites the request's URI to it and records
//! the choice in the request's extensions ([`SelectedInstance`]) for the
//! keyed breaker inside.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use forten_core::BoxError;
use forten_core::circuit::{CircuitState, KeyedCircuitBreakers};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Uri};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::error::ClientBuildError;

/// One upstream instance known by its base URL.
#[derive(Debug, Clone)]
pub(crate) struct Instance {
    pub(crate) id: Arc<str>,
    scheme: Scheme,
    authority: Authority,
    /// Path prefix without a trailing slash ("" for none).
    prefix: Arc<str>,
}

impl Instance {
    /// Parses `http://host:port[/prefix]`; the instance id is the URL as given
    /// without a trailing slash.
    pub(crate) fn from_base_url(url: &str) -> Result<Self, ClientBuildError> {
        let invalid = |reason: &str| ClientBuildError::InvalidBaseUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let uri: Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| invalid(&e.to_string()))?;
        let scheme = uri.scheme().cloned().ok_or_else(|| invalid("no scheme"))?;
        if scheme != Scheme::HTTP {
            return Err(invalid("only http:// is supported"));
        }
        let authority = uri.authority().cloned().ok_or_else(|| invalid("no host"))?;
        if uri.query().is_some() {
            return Err(invalid("a base URL cannot have a query"));
        }
        let prefix = uri.path().trim_end_matches('/');
        Ok(Instance {
            id: url.trim_end_matches('/').into(),
            scheme,
            authority,
            prefix: prefix.into(),
        })
    }

    /// The absolute URI of `path_and_query` on this instance.
    fn uri_for(&self, path_and_query: Option<&PathAndQuery>) -> Result<Uri, http::Error> {
        let pq = path_and_query.map_or("/", PathAndQuery::as_str);
        let builder = Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone());
        if self.prefix.is_empty() {
            builder.path_and_query(pq).build()
        } else {
            let joined = if pq.starts_with('/') {
                format!("{}{pq}", self.prefix)
            } else {
                format!("{}/{pq}", self.prefix)
            };
            builder.path_and_query(joined).build()
        }
    }
}

/// Where the instances come from.
#[derive(Debug)]
pub(crate) enum Upstream {
    /// Fixed base URLs, round robin.
    Static {
        instances: Box<[Instance]>,
        next: AtomicUsize,
    },
}

/// The instance an attempt was sent to (request extension).
#[derive(Debug, Clone)]
pub(crate) struct SelectedInstance(pub(crate) Arc<str>);

/// What one call went through, filled in by every attempt (request
/// extension, shared by the retry layer's copies).
#[derive(Debug, Default)]
pub(crate) struct CallInfo {
    pub(crate) attempts: AtomicU32,
    pub(crate) instance: Mutex<Option<Arc<str>>>,
}

impl CallInfo {
    pub(crate) fn last_instance(&self) -> Option<Arc<str>> {
        self.instance
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The key the breaker layer reads: the selected instance.
pub(crate) fn instance_key<B>(req: &Request<B>) -> Arc<str> {
    req.extensions()
        .get::<SelectedInstance>()
        .map_or_else(|| Arc::from(""), |s| Arc::clone(&s.0))
}

/// The key function's type, nameable in the stack's type.
pub(crate) type KeyFn<B> = fn(&Request<B>) -> Arc<str>;

/// Whether calls to `id` would pass its breaker now (no breaker yet: yes).
fn admits(breakers: &KeyedCircuitBreakers<Arc<str>>, id: &Arc<str>) -> bool {
    let Some(breaker) = breakers.breaker(id) else {
        return true;
    };
    match breaker.state() {
        CircuitState::Closed | CircuitState::Disabled | CircuitState::HalfOpen => true,
        CircuitState::Open => breaker.metrics().time_left_open == Some(Duration::ZERO),
        _ => false,
    }
}

pub(crate) struct SelectShared {
    pub(crate) service: Arc<str>,
    pub(crate) upstream: Upstream,
    pub(crate) breakers: KeyedCircuitBreakers<Arc<str>>,
}

impl std::fmt::Debug for SelectShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelectShared")
            .field("service", &self.service)
            .field("upstream", &self.upstream)
            .finish_non_exhaustive()
    }
}

impl SelectShared {
    /// The instance for the next attempt: round robin, skipping instances
    /// whose breaker would reject; when every breaker rejects, the next in
    /// turn (its breaker answers CircuitOpen with the time left).
    fn choose(&self) -> Result<&Instance, BoxError> {
        match &self.upstream {
            Upstream::Static { instances, next } => {
                let n = instances.len();
                if n == 0 {
                    return Err(Box::new(forten_core::Error::UpstreamUnavailable {
                        detail: format!("no instance of {} is configured", self.service),
                    }));
                }
                let start = next.fetch_add(1, Ordering::Relaxed);
                if n == 1 {
                    return Ok(&instances[0]);
                }
                for i in 0..n {
                    let candidate = &instances[(start + i) % n];
                    if admits(&self.breakers, &candidate.id) {
                        return Ok(candidate);
                    }
                }
                Ok(&instances[start % n])
            }
        }
    }

    /// Every instance id known now.
    pub(crate) fn instance_ids(&self) -> Vec<Arc<str>> {
        match &self.upstream {
            Upstream::Static { instances, .. } => {
                instances.iter().map(|i| Arc::clone(&i.id)).collect()
            }
        }
    }
}

/// The selection service (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct Select<S> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<SelectShared>,
}

impl<S, B> Service<Request<B>> for Select<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = SelectFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let instance = match self.shared.choose() {
            Ok(instance) => instance,
            Err(error) => return SelectFuture::failed(error),
        };
        let uri = match instance.uri_for(req.uri().path_and_query()) {
            Ok(uri) => uri,
            Err(e) => {
                return SelectFuture::failed(Box::new(forten_core::Error::BadRequest {
                    detail: format!("cannot address {}: {e}", instance.id),
                    pointer: None,
                }));
            }
        };
        *req.uri_mut() = uri;
        let attempt = match req.extensions().get::<Arc<CallInfo>>() {
            Some(info) => {
                *info.instance.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some(Arc::clone(&instance.id));
                info.attempts.fetch_add(1, Ordering::Relaxed) + 1
            }
            None => 0,
        };
        tracing::debug!(
            service = %self.shared.service,
            instance = %instance.id,
            attempt,
            "sending attempt"
        );
        req.extensions_mut()
            .insert(SelectedInstance(Arc::clone(&instance.id)));
        SelectFuture {
            inner: Some(self.inner.call(req)),
            error: None,
        }
    }
}

pin_project! {
    /// The future of [`Select`]: the inner call, or the selection's error.
    pub(crate) struct SelectFuture<F> {
        #[pin]
        inner: Option<F>,
        error: Option<BoxError>,
    }
}

impl<F> SelectFuture<F> {
    fn failed(error: BoxError) -> Self {
        SelectFuture {
            inner: None,
            error: Some(error),
        }
    }
}

impl<F, T, E> Future for SelectFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.inner.as_pin_mut() {
            Some(inner) => inner.poll(cx).map_err(Into::into),
            None => Poll::Ready(Err(this.error.take().unwrap_or_else(|| {
                Box::new(forten_core::Error::UpstreamUnavailable {
                    detail: "instance selection polled after completion".to_owned(),
                })
            }))),
        }
    }
}
