//! What counts as a failure.

/// Decides whether a call's result counts as a failure for the breaker.
///
/// Implemented by [`HttpClassifier`] (the default), [`ErrorClassifier`], and
/// any `Fn(&Result<T, E>) -> bool` (true = failure):
///
/// ```
/// use forten_core::circuit::Classify;
/// let only_timeouts = |r: &Result<u32, std::io::Error>| {
///     matches!(r, Err(e) if e.kind() == std::io::ErrorKind::TimedOut)
/// };
/// assert!(!only_timeouts.is_failure(&Err(std::io::Error::other("refused"))));
/// ```
pub trait Classify<T, E> {
    /// True when `result` counts as a failure.
    fn is_failure(&self, result: &Result<T, E>) -> bool;
}

/// The default for HTTP services (DESIGN 4.6): every error (transport
/// errors, timeouts) and every 5xx response is a failure; 4xx and everything
/// else are successes, since the upstream answered.
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpClassifier;

impl<B, E> Classify<http::Response<B>, E> for HttpClassifier {
    #[inline]
    fn is_failure(&self, result: &Result<http::Response<B>, E>) -> bool {
        match result {
            Ok(response) => response.status().is_server_error(),
            Err(_) => true,
        }
    }
}

/// For services that are not HTTP: every `Err` is a failure, every `Ok` a success.
#[derive(Debug, Clone, Copy, Default)]
pub struct ErrorClassifier;

impl<T, E> Classify<T, E> for ErrorClassifier {
    #[inline]
    fn is_failure(&self, result: &Result<T, E>) -> bool {
        result.is_err()
    }
}

impl<T, E, F> Classify<T, E> for F
where
    F: Fn(&Result<T, E>) -> bool,
{
    #[inline]
    fn is_failure(&self, result: &Result<T, E>) -> bool {
        self(result)
    }
}
