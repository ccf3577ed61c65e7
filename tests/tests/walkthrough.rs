//! The walkthrough (`forten-demo walkthrough`) against the in-process system:
//! every one of its steps is a check, so a passing run is the whole scripted
//! flow holding over real HTTP.
#![allow(missing_docs, clippy::unwrap_used)]

use forten_examples::system::SystemConfig;
use forten_examples::walkthrough::{self, Outcome, WalkthroughOptions};
use forten_system_tests::{WAIT, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_walkthrough_passes_against_the_in_process_system() {
    let (system, _api) = start(SystemConfig::ephemeral()).await;
    let options = WalkthroughOptions {
        wait: WAIT,
        print: true,
        outage: true,
    };
    let report = walkthrough::run(&system.gateway_url(), &options)
        .await
        .unwrap_or_else(|e| panic!("walkthrough failed: {e}"));
    assert!(report.steps.iter().all(|s| s.outcome != Outcome::Failed));
    let ok = report
        .steps
        .iter()
        .filter(|s| s.outcome == Outcome::Ok)
        .count();
    assert!(ok >= 14, "every step up to the outage ran:\n{report}");
    // Without forten-demo's controls the outage steps are skipped, and say so;
    // tests/tests/outage.rs covers them through RunningSystem.
    for skipped in report.skipped() {
        assert!(
            skipped.line.contains("demo controls") || skipped.line.contains("correlation id"),
            "unexpected skip: {skipped}"
        );
    }
    // Running it again against the same system works: it names its users per run.
    let again = WalkthroughOptions {
        print: false,
        outage: false,
        ..options
    };
    walkthrough::run(&system.gateway_url(), &again)
        .await
        .unwrap_or_else(|e| panic!("second walkthrough failed: {e}"));
    system
        .shutdown()
        .await
        .unwrap_or_else(|e| panic!("shutdown: {e}"));
}
