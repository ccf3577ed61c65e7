//! The outage part: events-service stopped and restarted through the demo controls.

use std::time::Duration;

use http::StatusCode;

use super::report::{Script, WalkthroughError, expect_status};
use super::{ApiClient, User, degraded, poll_until};

/// Stops events-service, shows the dashboard degrading and the circuit
/// opening, restarts it and shows recovery. `Ok(false)` when the gateway has
/// no demo controls (the steps are reported as skipped).
pub(super) async fn outage(
    script: &mut Script,
    api: &ApiClient,
    alice: &User,
    wait: Duration,
) -> Result<bool, WalkthroughError> {
    let stop = api.post("/demo/services/events/stop").send().await?;
    if stop.status == StatusCode::NOT_FOUND {
        script
            .skip("POST /demo/services/events/stop -> 404: no demo controls, outage steps skipped");
        return Ok(false);
    }
    expect_status(
        script,
        "stop events-service: POST /demo/services/events/stop",
        &stop,
        204,
    )?;

    let dashboard = poll_until(wait, || async {
        let d = api
            .get("/api/v1/dashboard")
            .bearer(&alice.token)
            .send()
            .await?;
        Ok((d.status == StatusCode::OK && degraded(&d).iter().any(|p| p == "events")).then_some(d))
    })
    .await;
    script.check(
        dashboard
            .as_ref()
            .is_some_and(|d| d.data()["events"].is_null()),
        format!(
            "dashboard while events-service is down -> 200, degraded {:?}",
            dashboard.as_ref().map(degraded).unwrap_or_default()
        ),
        &format!("\"events\" in meta.degraded and data.events null within {wait:?}"),
    )?;

    // Each failure counts towards the breaker; once open it answers at once.
    let mut seen: Vec<String> = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    let open = loop {
        let r = api
            .get("/api/v1/events")
            .bearer(&alice.token)
            .send()
            .await?;
        if r.status == StatusCode::INTERNAL_SERVER_ERROR || r.status.is_success() {
            seen.push(format!("unexpected {}", r.summary()));
        } else {
            seen.push(r.summary());
        }
        if r.error_code().as_deref() == Some("CIRCUIT_OPEN") {
            break Some(r);
        }
        if tokio::time::Instant::now() >= deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let retry_after = open
        .as_ref()
        .and_then(|r| r.header("retry-after"))
        .unwrap_or("-")
        .to_owned();
    script.check(
        open.is_some() && !seen.iter().any(|s| s.starts_with("unexpected")),
        if open.is_some() {
            format!(
                "GET /api/v1/events while down: {} -> circuit open (Retry-After: {retry_after})",
                compress(&seen)
            )
        } else {
            format!(
                "GET /api/v1/events while down: {}, the circuit never opened",
                compress(&seen)
            )
        },
        &format!("only 502/503/504, then 503 CIRCUIT_OPEN within {wait:?}"),
    )?;

    let start = api.post("/demo/services/events/start").send().await?;
    expect_status(
        script,
        "restart events-service: POST /demo/services/events/start",
        &start,
        204,
    )?;
    let began = tokio::time::Instant::now();
    let recovered = poll_until(wait * 2, || async {
        let r = api
            .get("/api/v1/events")
            .bearer(&alice.token)
            .send()
            .await?;
        Ok((r.status == StatusCode::OK).then_some(r))
    })
    .await;
    script.check(
        recovered.is_some(),
        format!(
            "GET /api/v1/events after the restart -> 200 after {:.1?}",
            began.elapsed()
        ),
        &format!("200 within {:?}", wait * 2),
    )?;
    let dashboard = poll_until(wait, || async {
        let d = api
            .get("/api/v1/dashboard")
            .bearer(&alice.token)
            .send()
            .await?;
        Ok((d.status == StatusCode::OK && degraded(&d).is_empty()).then_some(d))
    })
    .await;
    script.check(
        dashboard.is_some(),
        "dashboard after the restart -> 200, degraded []".to_owned(),
        &format!("nothing degraded within {wait:?}"),
    )?;
    Ok(true)
}

/// `["503 X", "503 X", "503 Y"]` -> `"503 X x2, 503 Y"`.
fn compress(seen: &[String]) -> String {
    let mut out: Vec<(String, usize)> = Vec::new();
    for s in seen {
        match out.last_mut() {
            Some((last, n)) if last == s => *n += 1,
            _ => out.push((s.clone(), 1)),
        }
    }
    out.iter()
        .map(|(s, n)| {
            if *n > 1 {
                format!("{s} x{n}")
            } else {
                s.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compress_counts_runs() {
        let seen = ["a", "a", "b", "a"].map(String::from);
        assert_eq!(compress(&seen), "a x2, b, a");
        assert_eq!(compress(&[]), "");
    }
}
