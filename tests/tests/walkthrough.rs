//! The walkthrough (`forten-demo walkthrough`) against the in-process system:
//! every one of its steps is a check, so a passing run is the whole scripted
//! flow holding over real HTTP.
#![allow(missing_docs, clippy::unwrap_used)]

use forten_examples::system::SystemConfig;
use forten_examples::walkthrough::{self, Outcome, WalkthroughOptions};
use forten_system_tests::{WAIT, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_walkthrough_passes_against_the_in_process_system() {
    // With the demo controls forten-demo has, so the outage steps run too.
    let mut config = SystemConfig::ephemeral();
    config.demo_controls = true;
    let (system, _api) = start(config).await;
    let options = WalkthroughOptions {
        wait: WAIT,
        print: true,
        outage: true,
    };
    let report = walkthrough::run_with(&system.gateway_url(), &options)
        .await
        .unwrap_or_else(|e| panic!("walkthrough failed: {e}"));
    assert!(report.steps.iter().all(|s| s.outcome != Outcome::Failed));
    let ok = report
        .steps
        .iter()
        .filter(|s| s.outcome == Outcome::Ok)
        .count();
    assert!(ok >= 20, "every step ran, the outage too:\n{report}");
    // The only step the contract allows to skip: notifications need not show
    // their event's correlation id.
    for skipped in report.skipped() {
        assert!(
            skipped.line.contains("correlation id"),
            "unexpected skip: {skipped}"
        );
    }
    // Running it again against the same system works: it names its users per run.
    let again = WalkthroughOptions {
        print: false,
        outage: false,
        ..options
    };
    walkthrough::run_with(&system.gateway_url(), &again)
        .await
        .unwrap_or_else(|e| panic!("second walkthrough failed: {e}"));
    system
        .shutdown()
        .await
        .unwrap_or_else(|e| panic!("shutdown: {e}"));
}
