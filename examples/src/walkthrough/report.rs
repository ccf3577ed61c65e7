//! The walkthrough's steps, its report and its error.

use std::fmt;
use std::time::Duration;

use super::ApiResponse;

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The step ran and its check held.
    Ok,
    /// The step did not run (the system does not offer what it needs).
    Skipped,
    /// The step ran and its check failed.
    Failed,
}

/// One line of the walkthrough.
#[derive(Debug, Clone)]
pub struct Step {
    /// How it ended.
    pub outcome: Outcome,
    /// What was done and what came back.
    pub line: String,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = match self.outcome {
            Outcome::Ok => "[ok]  ",
            Outcome::Skipped => "[skip]",
            Outcome::Failed => "[FAIL]",
        };
        write!(f, "{tag} {}", self.line)
    }
}

/// Every step of a successful walkthrough.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The steps in order.
    pub steps: Vec<Step>,
}

impl Report {
    /// The steps that were skipped.
    pub fn skipped(&self) -> impl Iterator<Item = &Step> {
        self.steps.iter().filter(|s| s.outcome == Outcome::Skipped)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for step in &self.steps {
            writeln!(f, "{step}")?;
        }
        Ok(())
    }
}

/// Why the walkthrough stopped.
#[derive(Debug)]
#[non_exhaustive]
pub enum WalkthroughError {
    /// The gateway URL is not an `http://host:port` URL.
    Url {
        /// The URL given.
        url: String,
    },
    /// A request could not be sent or its response not read: is the system running
    /// at that address?
    Transport {
        /// The request.
        request: String,
        /// What failed.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A request got no response within the wait bound.
    Timeout {
        /// The request.
        request: String,
        /// The bound.
        after: Duration,
    },
    /// A step's check failed: the system did not behave as its contract says.
    Check {
        /// The step.
        step: String,
        /// What was expected and what came back.
        detail: String,
    },
}

impl fmt::Display for WalkthroughError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Url { url } => write!(
                f,
                "gateway URL {url:?} is not http://host:port; pass the gateway's base URL"
            ),
            Self::Transport { request, source } => write!(
                f,
                "{request} failed: {source}; is the system running at that address?"
            ),
            Self::Timeout { request, after } => {
                write!(f, "{request} got no response within {after:?}")
            }
            Self::Check { step, detail } => write!(f, "step {step:?} failed: {detail}"),
        }
    }
}

impl std::error::Error for WalkthroughError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Transport { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }
}

/// Records the steps, printing each as it completes.
pub(super) struct Script {
    pub(super) report: Report,
    pub(super) print: bool,
}

impl Script {
    pub(super) fn push(&mut self, outcome: Outcome, line: String) {
        let step = Step { outcome, line };
        if self.print {
            println!("{step}");
        }
        self.report.steps.push(step);
    }

    pub(super) fn skip(&mut self, line: impl Into<String>) {
        self.push(Outcome::Skipped, line.into());
    }

    /// Records `line` as ok when `holds`, else as failed and returns the error.
    pub(super) fn check(
        &mut self,
        holds: bool,
        line: String,
        expected: &str,
    ) -> Result<(), WalkthroughError> {
        if holds {
            self.push(Outcome::Ok, line);
            return Ok(());
        }
        self.push(Outcome::Failed, format!("{line} (expected {expected})"));
        Err(WalkthroughError::Check {
            step: line,
            detail: format!("expected {expected}"),
        })
    }
}

/// Fails unless `response` has `status`.
pub(super) fn expect_status(
    script: &mut Script,
    line: &str,
    response: &ApiResponse,
    status: u16,
) -> Result<(), WalkthroughError> {
    let line = format!("{line} -> {}", response.summary());
    let expected = format!("{status}; body {}", String::from_utf8_lossy(&response.body));
    script.check(response.status.as_u16() == status, line, &expected)
}
