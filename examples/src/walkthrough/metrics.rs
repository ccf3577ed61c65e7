//! The breaker and retry counters of the gateway's `/metrics` (Prometheus
//! text), read before and after the outage so the walkthrough can show how
//! they moved.

use std::collections::BTreeMap;

use http::StatusCode;

use super::ApiClient;
use super::report::{Outcome, Script, WalkthroughError};

/// A counter the walkthrough prints: what it counts, the metric, and the one
/// label its series must carry (all series of the metric when `None`).
type Watched = (
    &'static str,
    &'static str,
    Option<(&'static str, &'static str)>,
);

const WATCHED: [Watched; 4] = [
    (
        "circuits opened",
        forten_core::metrics::CIRCUIT_TRANSITIONS,
        Some(("to", "open")),
    ),
    (
        "closed again",
        forten_core::metrics::CIRCUIT_TRANSITIONS,
        Some(("to", "closed")),
    ),
    (
        "calls rejected while open",
        forten_core::metrics::CIRCUIT_REJECTED,
        None,
    ),
    (
        "attempts retried",
        forten_core::metrics::RETRY_ATTEMPTS,
        Some(("outcome", "retried")),
    ),
];

/// The sums of the [`WATCHED`] series at one scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Counters {
    sums: BTreeMap<&'static str, f64>,
}

impl Counters {
    /// Scrapes `GET /metrics`; `None` when the gateway serves none (404).
    pub(super) async fn scrape(api: &ApiClient) -> Result<Option<Counters>, WalkthroughError> {
        let response = api.get("/metrics").send().await?;
        if response.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let text = std::str::from_utf8(&response.body).unwrap_or_default();
        if response.status != StatusCode::OK {
            return Err(WalkthroughError::Check {
                step: format!("GET /metrics -> {}", response.summary()),
                detail: "expected 200 with Prometheus text".into(),
            });
        }
        Counters::parse(text)
            .map(Some)
            .map_err(|line| WalkthroughError::Check {
                step: "GET /metrics -> 200".into(),
                detail: format!("a line is not in Prometheus text format: {line:?}"),
            })
    }

    /// Sums the watched series of a Prometheus text exposition; `Err` with
    /// the first sample line that does not parse.
    fn parse(text: &str) -> Result<Counters, String> {
        let mut sums: BTreeMap<&'static str, f64> =
            WATCHED.iter().map(|(what, _, _)| (*what, 0.0)).collect();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let sample = Sample::parse(line).ok_or_else(|| line.to_owned())?;
            for (what, metric, label) in WATCHED {
                let wanted = sample.name == metric
                    && label.is_none_or(|(k, v)| {
                        sample.labels.iter().any(|(lk, lv)| *lk == k && lv == v)
                    });
                if wanted && let Some(sum) = sums.get_mut(what) {
                    *sum += sample.value;
                }
            }
        }
        Ok(Counters { sums })
    }

    fn get(&self, what: &str) -> f64 {
        self.sums.get(what).copied().unwrap_or(0.0)
    }
}

/// One sample line: `name{label="value",...} value [timestamp]`.
#[derive(Debug, PartialEq)]
struct Sample<'a> {
    name: &'a str,
    labels: Vec<(&'a str, String)>,
    value: f64,
}

impl<'a> Sample<'a> {
    fn parse(line: &'a str) -> Option<Sample<'a>> {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let (name, mut rest) = line.split_at(name_end);
        let valid_name = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
        if name.is_empty() || !name.chars().all(valid_name) {
            return None;
        }
        let mut labels = Vec::new();
        if let Some(body) = rest.strip_prefix('{') {
            rest = body;
            loop {
                rest = rest.trim_start_matches(',');
                if let Some(after) = rest.strip_prefix('}') {
                    rest = after;
                    break;
                }
                let (key, after) = rest.split_once("=\"")?;
                let (value, after) = unescape_until_quote(after)?;
                labels.push((key, value));
                rest = after;
            }
        }
        let value = rest.split_whitespace().next()?.parse().ok()?;
        Some(Sample {
            name,
            labels,
            value,
        })
    }
}

/// A label value up to its closing quote (`\\`, `\"` and `\n` escaped), and
/// what follows the quote.
fn unescape_until_quote(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &s[i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => out.push('\n'),
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

/// Prints how the watched counters moved between `before` and now; when the
/// outage ran, checks that it opened a breaker that then rejected calls.
pub(super) async fn report(
    script: &mut Script,
    api: &ApiClient,
    before: Option<&Counters>,
    outage_ran: bool,
) -> Result<(), WalkthroughError> {
    let (Some(before), Some(after)) = (before, Counters::scrape(api).await?) else {
        script.skip("GET /metrics -> 404: the gateway serves no metrics");
        return Ok(());
    };
    let moved = |what: &str| after.get(what) - before.get(what);
    let line = format!(
        "gateway /metrics during the outage: {}",
        WATCHED
            .iter()
            .map(|(what, _, _)| format!("{what} +{}", moved(what)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if !outage_ran {
        script.push(Outcome::Ok, line);
        return Ok(());
    }
    script.check(
        moved("circuits opened") >= 1.0 && moved("calls rejected while open") >= 1.0,
        line,
        "the outage to open a breaker that rejects calls",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_parse_with_labels_escapes_and_timestamps() {
        let s = Sample::parse(
            r#"forten_circuit_transitions_total{breaker="a\"b",to="open"} 2 1700000000"#,
        )
        .expect("parses");
        assert_eq!(s.name, "forten_circuit_transitions_total");
        assert_eq!(
            s.labels,
            vec![("breaker", "a\"b".to_owned()), ("to", "open".to_owned())]
        );
        assert!((s.value - 2.0).abs() < f64::EPSILON);
        assert!(Sample::parse("up 1").is_some());
        assert!(Sample::parse("le_bucket{le=\"+Inf\"} +Inf").is_some());
    }

    #[test]
    fn malformed_lines_are_refused() {
        for line in [
            "",
            "{x=\"1\"} 1",
            "m{x=\"1} 1",
            "m{x=\"1\"}",
            "m 1x",
            "m-n 1",
        ] {
            assert_eq!(Sample::parse(line), None, "{line:?}");
        }
        assert!(Counters::parse("# HELP m x\nm{a=\"b\"} 1\nbroken{\n").is_err());
    }

    #[test]
    fn watched_series_are_summed_by_label() {
        let text = "\
# TYPE forten_circuit_transitions_total counter
forten_circuit_transitions_total{breaker=\"a\",from=\"closed\",to=\"open\"} 1
forten_circuit_transitions_total{breaker=\"b\",from=\"half_open\",to=\"open\"} 2
forten_circuit_transitions_total{breaker=\"b\",from=\"half_open\",to=\"closed\"} 1
forten_circuit_rejected_total{breaker=\"b\"} 7
forten_retry_attempts_total{service=\"events-service\",outcome=\"retried\"} 3
forten_retry_attempts_total{service=\"events-service\",outcome=\"deadline\"} 5
";
        let c = Counters::parse(text).expect("parses");
        assert!((c.get("circuits opened") - 3.0).abs() < f64::EPSILON);
        assert!((c.get("closed again") - 1.0).abs() < f64::EPSILON);
        assert!((c.get("calls rejected while open") - 7.0).abs() < f64::EPSILON);
        assert!((c.get("attempts retried") - 3.0).abs() < f64::EPSILON);
    }
}
