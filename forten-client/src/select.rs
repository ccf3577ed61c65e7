//! Instance selection: which instance each attempt goes to.
//!
//! Every attempt (the retry layer sits outside) picks an instance, skipping
//! those whose breaker is open, rewrites the request's URI to it and tells
//! the keyed breaker inside which instance it chose ([`instance_key`]).

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use forten_core::BoxError;
use forten_core::circuit::{CircuitState, KeyedCircuitBreakers};
use forten_discovery::{Pick, ServiceHandle};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri};
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
    fn uri_for(&self, path_and_query: Option<PathAndQuery>) -> Result<Uri, BoxError> {
        let pq = path_and_query.unwrap_or_else(|| PathAndQuery::from_static("/"));
        let pq = if self.prefix.is_empty() {
            pq
        } else {
            let pq = pq.as_str();
            let joined = if pq.starts_with('/') {
                format!("{}{pq}", self.prefix)
            } else {
                format!("{}/{pq}", self.prefix)
            };
            PathAndQuery::try_from(joined)?
        };
        Ok(absolute(self.scheme.clone(), self.authority.clone(), pq)?)
    }
}

/// The URI from its parts (without `Uri::builder`'s chain of `Result`s).
fn absolute(
    scheme: Scheme,
    authority: Authority,
    path_and_query: PathAndQuery,
) -> Result<Uri, http::uri::InvalidUriParts> {
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(scheme);
    parts.authority = Some(authority);
    parts.path_and_query = Some(path_and_query);
    Uri::from_parts(parts)
}

/// Where the instances come from.
#[derive(Debug)]
pub(crate) enum Upstream {
    /// Fixed base URLs, round robin.
    Static {
        instances: Box<[Instance]>,
        next: AtomicUsize,
    },
    /// forten-discovery: the client's cached view of the service (a handle,
    /// so a pick does not look the service up) and load balancer.
    Discovery {
        service: ServiceHandle,
        /// Set once the view of the service was loaded (then picks never wait).
        loaded: AtomicBool,
    },
}

/// How many picks the discovery mode draws looking for an instance whose
/// breaker admits calls, before it settles for the first one.
const MAX_PICKS: usize = 8;

/// The instance an attempt goes to.
enum Chosen<'a> {
    Static(&'a Instance),
    Picked {
        id: Arc<str>,
        authority: Authority,
        pick: Pick,
    },
}

thread_local! {
    /// The instance of the attempt being started: set by [`Select`] while
    /// it calls the keyed breaker, which reads it at once ([`instance_key`]).
    /// Not a request extension: one would cost the request an extension map
    /// (and a box per attempt), and the retry layer a copy of it per call.
    static SELECTED: RefCell<Option<Arc<str>>> = const { RefCell::new(None) };
}

/// Makes `id` the selected instance while `f` runs (the previous one after).
fn with_selected<R>(id: Arc<str>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Arc<str>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            SELECTED.with(|s| *s.borrow_mut() = previous);
        }
    }
    let _restore = Restore(SELECTED.with(|s| s.borrow_mut().replace(id)));
    f()
}

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

/// The key the breaker layer reads: the instance [`Select`] chose for the
/// attempt it is starting (called synchronously inside its `call`).
pub(crate) fn instance_key<B>(_req: &Request<B>) -> Arc<str> {
    SELECTED
        .with(|s| s.borrow().clone())
        .unwrap_or_else(|| Arc::from(""))
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
    /// Discovery mode: how long the first load of the view may take.
    pub(crate) load_timeout: Duration,
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
    /// The instance for the next attempt: the next in turn (round robin,
    /// or the discovery client's balancer), skipping instances whose breaker
    /// would reject; when every breaker rejects, the first candidate (its
    /// breaker answers CircuitOpen with the time left).
    fn choose(&self) -> Result<Chosen<'_>, BoxError> {
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
                    return Ok(Chosen::Static(&instances[0]));
                }
                for i in 0..n {
                    let candidate = &instances[(start + i) % n];
                    if admits(&self.breakers, &candidate.id) {
                        return Ok(Chosen::Static(candidate));
                    }
                }
                Ok(Chosen::Static(&instances[start % n]))
            }
            Upstream::Discovery { service, .. } => {
                let mut first = None;
                for _ in 0..MAX_PICKS {
                    let pick = match service.try_pick() {
                        Some(Ok(pick)) => pick,
                        Some(Err(e)) => return Err(Box::new(forten_core::Error::from(e))),
                        None => {
                            return Err(Box::new(forten_core::Error::UpstreamUnavailable {
                                detail: format!(
                                    "the instances of {} are not loaded yet",
                                    self.service
                                ),
                            }));
                        }
                    };
                    let id = Arc::clone(pick.instance_id());
                    // With one instance there is nothing to route around:
                    // its own breaker answers (no lookup here first).
                    if pick.candidates() == 1 || admits(&self.breakers, &id) {
                        return picked(id, pick);
                    }
                    if first.is_none() {
                        first = Some((id, pick));
                    }
                }
                match first {
                    Some((id, pick)) => picked(id, pick),
                    None => Err(Box::new(forten_core::Error::UpstreamUnavailable {
                        detail: format!("no instance of {} is available", self.service),
                    })),
                }
            }
        }
    }

    /// Every instance id known now: the configured ones, or in discovery
    /// mode those called so far (that have a breaker).
    pub(crate) fn instance_ids(&self) -> Vec<Arc<str>> {
        match &self.upstream {
            Upstream::Static { instances, .. } => {
                instances.iter().map(|i| Arc::clone(&i.id)).collect()
            }
            Upstream::Discovery { .. } => {
                let mut ids = self.breakers.keys();
                ids.sort();
                ids
            }
        }
    }
}

fn picked(id: Arc<str>, pick: Pick) -> Result<Chosen<'static>, BoxError> {
    let Some(authority) = pick.authority().cloned() else {
        return Err(Box::new(forten_core::Error::UpstreamUnavailable {
            detail: format!(
                "instance {id} has an unusable address {:?}: not a valid host:port",
                pick.base_url()
            ),
        }));
    };
    Ok(Chosen::Picked {
        id,
        authority,
        pick,
    })
}

type Loading = Pin<Box<dyn Future<Output = Result<(), forten_core::Error>> + Send>>;

/// The selection service (see the module docs).
pub(crate) struct Select<S> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<SelectShared>,
    /// Discovery mode: the first load of the service's view, driven by
    /// `poll_ready` (behind a lock only so the service stays `Sync`).
    pub(crate) loading: Mutex<Option<Loading>>,
}

impl<S: Clone> Clone for Select<S> {
    fn clone(&self) -> Self {
        Select {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
            loading: Mutex::new(None),
        }
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for Select<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Select")
            .field("inner", &self.inner)
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

impl<S> Select<S> {
    /// Discovery mode: loads the service's view once (every later pick
    /// reads the cache without waiting).
    fn poll_loaded(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        let Upstream::Discovery { service, loaded } = &self.shared.upstream else {
            return Poll::Ready(Ok(()));
        };
        if loaded.load(Ordering::Acquire) {
            return Poll::Ready(Ok(()));
        }
        let slot = self
            .loading
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        let future = slot.get_or_insert_with(|| {
            let service = service.clone();
            // readiness runs before the call's own deadline starts: bound it here
            let limit = self.shared.load_timeout;
            Box::pin(async move {
                match tokio::time::timeout(limit, service.instances()).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(forten_core::Error::from(e)),
                    Err(_) => Err(forten_core::Error::Timeout { after: Some(limit) }),
                }
            })
        });
        let result = std::task::ready!(future.as_mut().poll(cx));
        *slot = None;
        match result {
            Ok(()) => {
                loaded.store(true, Ordering::Release);
                Poll::Ready(Ok(()))
            }
            Err(e) => Poll::Ready(Err(Box::new(e))),
        }
    }
}

impl<S, B, ResB> Service<Request<B>> for Select<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = SelectFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        std::task::ready!(self.poll_loaded(cx))?;
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let chosen = match self.shared.choose() {
            Ok(chosen) => chosen,
            Err(error) => return SelectFuture::failed(error),
        };
        // the path and query move into the new URI (no copy)
        let path_and_query = std::mem::take(req.uri_mut()).into_parts().path_and_query;
        let (uri, id, pick) = match chosen {
            Chosen::Static(instance) => (
                instance.uri_for(path_and_query),
                Arc::clone(&instance.id),
                None,
            ),
            Chosen::Picked {
                id,
                authority,
                pick,
            } => {
                let pq = path_and_query.unwrap_or_else(|| PathAndQuery::from_static("/"));
                let uri = absolute(Scheme::HTTP, authority, pq).map_err(Into::into);
                (uri, id, Some(pick))
            }
        };
        let uri = match uri {
            Ok(uri) => uri,
            Err(e) => {
                return SelectFuture::failed(Box::new(forten_core::Error::BadRequest {
                    detail: format!("cannot address {id}: {e}"),
                    pointer: None,
                }));
            }
        };
        *req.uri_mut() = uri;
        let attempt = match req.extensions().get::<Arc<CallInfo>>() {
            Some(info) => {
                *info.instance.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some(Arc::clone(&id));
                info.attempts.fetch_add(1, Ordering::Relaxed) + 1
            }
            None => 0,
        };
        tracing::debug!(
            service = %self.shared.service,
            instance = %id,
            attempt,
            "sending attempt"
        );
        let inner = &mut self.inner;
        let future = with_selected(id, || inner.call(req));
        SelectFuture {
            inner: Some(future),
            error: None,
            pick,
        }
    }
}

pin_project! {
    /// The future of [`Select`]: the inner call, or the selection's error.
    pub(crate) struct SelectFuture<F> {
        #[pin]
        inner: Option<F>,
        error: Option<BoxError>,
        // discovery mode: the balancer's pick, finished with the outcome
        pick: Option<Pick>,
    }

    impl<F> PinnedDrop for SelectFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            // cancelled in flight (the call's deadline passed): a failure
            if let Some(pick) = this.project().pick.take() {
                pick.done(false);
            }
        }
    }
}

impl<F> SelectFuture<F> {
    fn failed(error: BoxError) -> Self {
        SelectFuture {
            inner: None,
            error: Some(error),
            pick: None,
        }
    }
}

impl<F, B, E> Future for SelectFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<B>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.inner.as_pin_mut() {
            Some(inner) => {
                let result = std::task::ready!(inner.poll(cx)).map_err(Into::into);
                if let Some(pick) = this.pick.take() {
                    let success = result.as_ref().is_ok_and(|r| !r.status().is_server_error());
                    pick.done(success);
                }
                Poll::Ready(result)
            }
            None => Poll::Ready(Err(this.error.take().unwrap_or_else(|| {
                Box::new(forten_core::Error::UpstreamUnavailable {
                    detail: "instance selection polled after completion".to_owned(),
                })
            }))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use forten_core::circuit::CircuitBreaker;
    use tower::{ServiceExt, service_fn};

    use super::*;

    #[allow(clippy::type_complexity)]
    fn select(
        urls: &[&str],
    ) -> (
        Select<impl Service<Request<()>, Response = Response<String>, Error = Infallible> + Clone>,
        KeyedCircuitBreakers<Arc<str>>,
    ) {
        let breakers = KeyedCircuitBreakers::new(CircuitBreaker::builder("svc").config().unwrap());
        let shared = Arc::new(SelectShared {
            service: "svc".into(),
            upstream: Upstream::Static {
                instances: urls
                    .iter()
                    .map(|u| Instance::from_base_url(u).unwrap())
                    .collect(),
                next: AtomicUsize::new(0),
            },
            breakers: breakers.clone(),
            load_timeout: Duration::from_secs(1),
        });
        // the key is read in `call`, as the keyed breaker does
        let inner = service_fn(|req: Request<()>| {
            let key = instance_key(&req);
            async move { Ok::<_, Infallible>(Response::new(format!("{key} {}", req.uri()))) }
        });
        (
            Select {
                inner,
                shared,
                loading: Mutex::new(None),
            },
            breakers,
        )
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_go_round_robin_with_the_base_paths_prefix() {
        let (svc, _) = select(&["http://a:1/api/", "http://b:2"]);
        let mut seen = Vec::new();
        for _ in 0..3 {
            let req = Request::get("/events?x=1").body(()).unwrap();
            seen.push(svc.clone().oneshot(req).await.unwrap().into_body());
        }
        assert_eq!(
            seen,
            [
                "http://a:1/api http://a:1/api/events?x=1",
                "http://b:2 http://b:2/events?x=1",
                "http://a:1/api http://a:1/api/events?x=1",
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_instance_whose_breaker_rejects_is_skipped_unless_all_do() {
        let (svc, breakers) = select(&["http://a:1", "http://b:2"]);
        breakers
            .get_or_create(&Arc::from("http://a:1"))
            .force_open();
        for _ in 0..4 {
            let body = svc
                .clone()
                .oneshot(Request::new(()))
                .await
                .unwrap()
                .into_body();
            assert!(body.starts_with("http://b:2 "), "{body}");
        }
        breakers
            .get_or_create(&Arc::from("http://b:2"))
            .force_open();
        let body = svc
            .clone()
            .oneshot(Request::new(()))
            .await
            .unwrap()
            .into_body();
        assert!(body.starts_with("http://"), "one is still chosen: {body}");
    }

    #[tokio::test(start_paused = true)]
    async fn every_attempt_is_counted_in_the_call_info() {
        let (svc, _) = select(&["http://a:1"]);
        let info = Arc::new(CallInfo::default());
        for _ in 0..2 {
            let mut req = Request::new(());
            req.extensions_mut().insert(Arc::clone(&info));
            svc.clone().oneshot(req).await.unwrap();
        }
        assert_eq!(info.attempts.load(Ordering::Relaxed), 2);
        assert_eq!(info.last_instance().as_deref(), Some("http://a:1"));
    }
}
