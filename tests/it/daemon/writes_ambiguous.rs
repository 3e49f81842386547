//! Write-back through a running daemon when the provider's answer cannot be trusted: a
//! create the HubSpot simulator applied but whose answer was lost (the connection
//! dropped, or no answer before the request timeout) is looked up by email at its next
//! try instead of being sent again, and ends `succeeded` with the one object it made;
//! a storm of 429s makes several writes at once wait within their attempt, never fail
//! or double.

use tributary_simulator::{AmbiguousWrite, Faults, Provider, SimConfig, start};

use super::Fixture;
use super::writes_crash::{
    SEARCH_PATH, SEEDED, WRITE_PATIENCE, connected, creates_received, settled, submit_contact, succeeded_once, within,
};

async fn lost_answer(fx: Fixture, fault: AmbiguousWrite) {
    let sim = start(SimConfig::new(Provider::HubSpot, SEEDED)).await.unwrap();
    sim.set_write_fault(Some(fault));
    connected(&fx, &sim).await;
    let daemon = fx.start("d", 1).await;

    let email = "lost.answer@acme.example.com";
    let id = submit_contact(&fx, email).await;
    within(WRITE_PATIENCE, "the create to reach the simulator", || async {
        (creates_received(&sim) >= 1).then_some(())
    })
    .await;
    // Only that answer is lost.
    sim.set_write_fault(None);
    let done = settled(&fx, &id).await;
    succeeded_once(&sim, &done, email);
    assert_eq!(sim.record_count("contacts"), SEEDED + 1);
    assert_eq!(creates_received(&sim), 1, "looked up, not sent again: {:#?}", sim.writes_received());
    assert!(sim.requests_for(SEARCH_PATH) >= 1, "the manifest's lookup ran");
    drop(daemon);
    fx.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_whose_connection_dropped_is_looked_up_and_applied_once() {
    lost_answer(Fixture::sqlite("").await, AmbiguousWrite::Drop).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_that_timed_out_is_looked_up_and_applied_once_on_postgres() {
    // One second without an answer is a timeout.
    lost_answer(Fixture::postgres("request_timeout_secs = 1").await, AmbiguousWrite::Hang).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_makes_concurrent_writes_wait_within_their_attempt() {
    const WRITES: usize = 4;
    // Every other request is throttled (Retry-After: 1 s), and it never lets up.
    let faults = Faults::none().rate_limit_every(2).retry_after_secs(1);
    let sim = start(SimConfig::new(Provider::HubSpot, SEEDED).faults(faults)).await.unwrap();
    let fx = Fixture::sqlite("").await;
    connected(&fx, &sim).await;
    // Submitted first, so that the worker claims them together.
    let emails: Vec<String> = (1..=WRITES).map(|i| format!("storm{i}@acme.example.com")).collect();
    let mut ids = Vec::new();
    for email in &emails {
        ids.push(submit_contact(&fx, email).await);
    }
    let daemon = fx.start("d", 1).await;

    for (id, email) in ids.iter().zip(&emails) {
        let done = settled(&fx, id).await;
        succeeded_once(&sim, &done, email);
        // Waited out within the one attempt: never put back, never failed.
        assert_eq!(done.attempts.len(), 1, "{email}: {done:#?}");
        assert_eq!(done.attempts[0].status, Some(201), "{email}: {done:#?}");
    }
    assert_eq!(creates_received(&sim), WRITES, "each create reached the API once");
    assert!(
        sim.requests_for(super::writes_crash::CREATE_PATH) > WRITES as u64,
        "the storm throttled some creates: {:?}",
        sim.request_log()
    );
    assert_eq!(sim.record_count("contacts"), SEEDED + WRITES as u64);
    drop(daemon);
    fx.finish().await;
}
