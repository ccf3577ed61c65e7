//! The peers of forten's retry in the `overhead` benchmarks: tower::retry
//! with the policies its docs show.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use tower::retry::budget::{Budget, TpsBudget};

/// tower::retry with the trivial policy the tower docs show: clone the
/// request, retry on error, never on success.
#[derive(Clone)]
pub struct Attempts(pub usize);

impl<E> tower::retry::Policy<Request<()>, Response<()>, E> for Attempts {
    type Future = std::future::Ready<()>;

    fn retry(
        &mut self,
        _req: &mut Request<()>,
        result: &mut Result<Response<()>, E>,
    ) -> Option<Self::Future> {
        if result.is_err() && self.0 > 0 {
            self.0 -= 1;
            Some(std::future::ready(()))
        } else {
            None
        }
    }

    fn clone_request(&mut self, req: &Request<()>) -> Option<Request<()>> {
        Some(copy_request(req))
    }
}

/// tower::retry with tower's own retry budget (`TpsBudget`, the defaults
/// forten's budget also uses: 10 s window, 10/s minimum, 20 %): the
/// like-for-like peer of forten's default config. The policy deposits once per
/// request, as tower's budget docs ask, and withdraws before a retry.
#[derive(Clone)]
pub struct Budgeted {
    attempts: usize,
    budget: Arc<TpsBudget>,
}

impl Budgeted {
    /// Up to `attempts` retries, drawing on a fresh `TpsBudget` with forten's
    /// default figures.
    pub fn new(attempts: usize) -> Self {
        Budgeted {
            attempts,
            budget: Arc::new(TpsBudget::new(Duration::from_secs(10), 10, 0.2)),
        }
    }
}

impl<E> tower::retry::Policy<Request<()>, Response<()>, E> for Budgeted {
    type Future = std::future::Ready<()>;

    fn retry(
        &mut self,
        _req: &mut Request<()>,
        result: &mut Result<Response<()>, E>,
    ) -> Option<Self::Future> {
        if result.is_err() && self.attempts > 0 && self.budget.withdraw() {
            self.attempts -= 1;
            Some(std::future::ready(()))
        } else {
            None
        }
    }

    fn clone_request(&mut self, req: &Request<()>) -> Option<Request<()>> {
        // called once per request before the first attempt
        self.budget.deposit();
        Some(copy_request(req))
    }
}

/// The field-by-field copy the tower docs show: what any retry of an
/// `http::Request` pays before a first attempt (the request is consumed by it).
pub fn copy_request(req: &Request<()>) -> Request<()> {
    let mut copy = Request::new(());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    *copy.extensions_mut() = req.extensions().clone();
    copy
}
