//! [`ResponseFuture`]: one request's attempts, backoffs and retries.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use super::{Action, Policy, Shared};
use crate::BoxError;
use crate::backoff::Delays;
use crate::deadline::Deadline;
use crate::metrics::emit;

pin_project! {
    /// The future of [`Retry`](super::Retry). While the first attempt is in
    /// flight it is the inner future plus a copy of the request: nothing is
    /// allocated or boxed.
    pub struct ResponseFuture<S, P, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S::Future>,
        // `None` when the request cannot be replayed: one attempt only
        retry: Option<Retrying<S, P, Req>>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        // an attempt is in flight
        Attempt { #[pin] future: F },
        // waiting out the backoff before the next attempt (the timer is boxed
        // in `Retrying::waiting`: a first success must not pay for moving it around)
        Backoff,
        // waiting for the service to be ready for the next attempt
        Ready,
    }
}

/// What a request needs to be sent again.
struct Retrying<S, P, Req> {
    shared: Arc<Shared<S, P>>,
    // the copy to send next; `None` once it had to be sent itself
    request: Option<Req>,
    attempts: u32,
    // created at the first retry, so a first success pays nothing for it
    waiting: Option<Pin<Box<Waiting<S>>>>,
}

pin_project! {
    /// A request being retried: its delays, its timer and the service its
    /// retries go through (a clone of the layer's).
    struct Waiting<S> {
        delays: Delays,
        #[pin]
        sleep: Sleep,
        service: S,
    }
}

impl<S, P, Req> ResponseFuture<S, P, Req>
where
    S: Service<Req>,
{
    pub(super) fn once(future: S::Future) -> Self {
        ResponseFuture {
            state: State::Attempt { future },
            retry: None,
        }
    }

    pub(super) fn retrying(future: S::Future, shared: Arc<Shared<S, P>>, request: Req) -> Self {
        ResponseFuture {
            state: State::Attempt { future },
            retry: Some(Retrying {
                shared,
                request: Some(request),
                attempts: 1,
                waiting: None,
            }),
        }
    }
}

/// Why no further attempt is made.
#[derive(Debug, Clone, Copy)]
enum GiveUp {
    Attempts,
    Deadline,
    Budget,
}

impl GiveUp {
    /// Counts the last retryable attempt by why it was the last.
    #[cold]
    fn emit(self, service: Option<&std::sync::Arc<str>>) {
        let outcome = match self {
            GiveUp::Attempts => "attempts_exhausted",
            GiveUp::Deadline => "deadline",
            GiveUp::Budget => {
                emit::retry_budget_exhausted(service);
                "budget_exhausted"
            }
        };
        emit::retry_attempt(service, outcome);
    }
}

/// The earliest of the request's own deadline and the task's. Kept in one
/// place so the retry loop depends on the deadline module through it alone.
fn effective_deadline<P: Policy<Req, Res>, Req, Res>(policy: &P, req: &Req) -> Option<Deadline> {
    match (policy.deadline(req), Deadline::current()) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl<S, P, Req> Retrying<S, P, Req>
where
    S: Service<Req> + Clone,
    P: Policy<Req, S::Response>,
{
    /// The delay before the next attempt, or why there is none.
    fn next_delay(&mut self, action: Action) -> Result<Duration, GiveUp> {
        let shared = &*self.shared;
        let config = &shared.config;
        let waiting = self.waiting.get_or_insert_with(|| {
            Box::pin(Waiting {
                delays: match config.seed {
                    Some(seed) => config.backoff.delays_seeded(seed),
                    None => config.backoff.delays(),
                },
                // set to the delay's end before it is first polled
                sleep: tokio::time::sleep_until(Instant::now()),
                service: shared.service.clone(),
            })
        });
        let mut delay = waiting
            .as_mut()
            .project()
            .delays
            .next()
            .ok_or(GiveUp::Attempts)?;
        if let Action::RetryAfter(asked) = action {
            delay = asked.min(config.max_retry_after());
        }
        let deadline = self
            .request
            .as_ref()
            .and_then(|req| effective_deadline(&self.shared.policy, req));
        if let Some(deadline) = deadline {
            // an attempt starting at or after the deadline would fail anyway
            if Instant::now() + delay >= deadline.instant() {
                return Err(GiveUp::Deadline);
            }
        }
        // drawn last, so a retry that would not happen costs no budget
        if let Some(budget) = &config.budget {
            if !budget.try_withdraw() {
                return Err(GiveUp::Budget);
            }
        }
        Ok(delay)
    }

    /// The service retries go through, made with the first delay.
    fn service(&mut self) -> &mut S {
        match self.waiting.as_mut() {
            Some(waiting) => waiting.as_mut().project().service,
            None => unreachable!("a request backs off after its first delay"),
        }
    }

    fn exhausted(&self, err: BoxError) -> BoxError {
        Box::new(crate::Error::RetriesExhausted {
            attempts: self.attempts,
            source: err,
        })
    }
}

impl<S, P, Req> Future for ResponseFuture<S, P, Req>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    P: Policy<Req, S::Response>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Attempt { future } => {
                    let result = ready!(future.poll(cx)).map_err(Into::into);
                    let Some(retry) = this.retry.as_mut() else {
                        return Poll::Ready(result);
                    };
                    let Some(request) = retry.request.as_ref() else {
                        return Poll::Ready(result);
                    };
                    let action = retry.shared.policy.classify(request, &result);
                    if action == Action::Return {
                        return Poll::Ready(result);
                    }
                    match retry.next_delay(action) {
                        Ok(delay) => {
                            emit::retry_attempt(retry.shared.config.name.as_ref(), "retried");
                            tracing::debug!(
                                attempt = retry.attempts,
                                delay_ms = delay.as_millis() as u64,
                                "retrying after a retryable outcome"
                            );
                            let until = Instant::now() + delay;
                            if let Some(waiting) = retry.waiting.as_mut() {
                                waiting.as_mut().project().sleep.reset(until);
                            }
                            this.state.set(State::Backoff);
                        }
                        Err(why) => {
                            why.emit(retry.shared.config.name.as_ref());
                            tracing::debug!(
                                attempts = retry.attempts,
                                reason = ?why,
                                "not retrying: returning the last outcome"
                            );
                            return Poll::Ready(result.map_err(|e| retry.exhausted(e)));
                        }
                    }
                }
                StateProj::Backoff => {
                    if let Some(waiting) = this.retry.as_mut().and_then(|r| r.waiting.as_mut()) {
                        ready!(waiting.as_mut().project().sleep.poll(cx));
                    }
                    this.state.set(State::Ready);
                }
                StateProj::Ready => {
                    let Some(retry) = this.retry.as_mut() else {
                        unreachable!("only a replayable request backs off")
                    };
                    if let Err(e) = ready!(retry.service().poll_ready(cx)) {
                        return Poll::Ready(Err(retry.exhausted(e.into())));
                    }
                    if retry
                        .request
                        .as_ref()
                        .and_then(|req| effective_deadline(&retry.shared.policy, req))
                        .is_some_and(Deadline::is_expired)
                    {
                        tracing::debug!(attempts = retry.attempts, "deadline passed: not retrying");
                        GiveUp::Deadline.emit(retry.shared.config.name.as_ref());
                        let timeout = crate::Error::Timeout { after: None };
                        return Poll::Ready(Err(retry.exhausted(Box::new(timeout))));
                    }
                    let Some(stored) = retry.request.take() else {
                        unreachable!("only a request with a stored copy backs off")
                    };
                    let (request, copy) = retry.shared.policy.split(stored);
                    if copy.is_none() {
                        tracing::debug!("request could not be copied again: last attempt");
                    }
                    retry.request = copy;
                    retry.attempts += 1;
                    let future = retry.service().call(request);
                    this.state.set(State::Attempt { future });
                }
            }
        }
    }
}
