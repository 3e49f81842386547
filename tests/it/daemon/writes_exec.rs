//! The write executor in a running daemon against the HubSpot simulator: a write
//! submitted with `tributary writes submit` is claimed, sent through the connection's
//! session and settled — succeeded with the provider's id, failed with the provider's
//! message (no retry), or, when rate limited, waited out until it succeeds.

use tributary::store::{WriteDetail, WriteState};
use tributary_simulator::{Faults, Provider, SimConfig, SimHandle, start};

use super::{Fixture, NEVER, eventually};

/// Contacts the simulator starts with.
const SEEDED: u64 = 3;

async fn connected(fx: &Fixture, sim: &SimHandle) {
    let tenant = format!(
        "preset = \"aptem_hubspot\"\n[providers.aptem]\nschedule = \"{NEVER}\"\n\
         [providers.hubspot]\nbase_url = \"{}\"\nschedule = \"{NEVER}\"\n",
        sim.base_url()
    );
    fx.connect("acme", &tenant, &[("hubspot", sim.credentials())]).await;
}

/// Submits a contact create from the command line; the write's id.
async fn submit(fx: &Fixture, record: &str) -> String {
    let said = fx
        .ok(
            &["writes", "submit", "--tenant", "acme", "--provider", "hubspot", "--entity", "contact", "--op", "create"],
            record,
        )
        .await;
    let mut words = said.split_whitespace();
    assert_eq!((words.next(), words.nth(1)), (Some("write"), Some("pending")), "{said}");
    said.split_whitespace().nth(1).expect("the write's id").to_owned()
}

/// The write once it reached a final state.
async fn settled(fx: &Fixture, id: &str) -> WriteDetail {
    eventually("the write to settle", || async {
        let detail = fx.store.get_write(id).await.unwrap().expect("the write is stored");
        detail.write.state.is_final().then_some(detail)
    })
    .await
}

async fn create_succeeds_and_a_bad_email_fails(fx: Fixture) {
    let sim = start(SimConfig::new(Provider::HubSpot, SEEDED)).await.unwrap();
    connected(&fx, &sim).await;
    let daemon = fx.start("d", 1).await;

    let id = submit(&fx, r#"{"email": "ada@acme.example.com"}"#).await;
    let done = settled(&fx, &id).await;
    assert_eq!(done.write.state, WriteState::Succeeded, "{done:?}");
    assert_eq!(sim.record_count("contacts"), SEEDED + 1);
    // The simulator numbers contacts from 1: the new one is the last.
    assert_eq!(done.write.result_id.as_deref(), Some((SEEDED + 1).to_string().as_str()));
    assert!(done.write.result_version.is_some(), "{done:?}");
    assert_eq!(done.attempts.len(), 1, "{done:?}");
    assert_eq!(done.attempts[0].status, Some(201));
    let received = sim.writes_received();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!((received[0].method.as_str(), received[0].path.as_str()), ("POST", "/crm/v3/objects/contacts"));
    assert_eq!(received[0].body["properties"]["email"], "ada@acme.example.com");

    // HubSpot refuses an address without a dot in its domain (a shape tributary accepts): the write fails with its message, once.
    let bad = submit(&fx, r#"{"email": "ada@nodot"}"#).await;
    let done = settled(&fx, &bad).await;
    assert_eq!(done.write.state, WriteState::Failed, "{done:?}");
    let error = done.write.error.clone().unwrap_or_default();
    assert!(error.contains("Email address ada@nodot is invalid"), "{error}");
    assert_eq!(done.attempts.len(), 1, "a validation error is not retried: {done:?}");
    assert_eq!(done.attempts[0].status, Some(400));
    assert_eq!(sim.writes_received().len(), 2);
    assert_eq!(sim.record_count("contacts"), SEEDED + 1);
    drop(daemon);
    fx.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_succeeds_with_the_providers_id_and_a_bad_email_fails_with_its_message() {
    create_succeeds_and_a_bad_email_fails(Fixture::sqlite("").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_succeeds_and_a_bad_email_fails_on_postgres() {
    create_succeeds_and_a_bad_email_fails(Fixture::postgres("").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_write_waits_and_succeeds() {
    // Every request is throttled (Retry-After: 1 s) until the test lifts it.
    let faults = Faults::none().rate_limit_every(1).retry_after_secs(1);
    let sim = start(SimConfig::new(Provider::HubSpot, SEEDED).faults(faults)).await.unwrap();
    let fx = Fixture::sqlite("").await;
    connected(&fx, &sim).await;
    let daemon = fx.start("d", 1).await;

    let id = submit(&fx, r#"{"email": "grace@acme.example.com"}"#).await;
    eventually("two throttled attempts to send the write", || async {
        (sim.requests_for("/crm/v3/objects/contacts") >= 2).then_some(())
    })
    .await;
    // Waiting on the rate limit, not failed.
    let waiting = fx.store.get_write(&id).await.unwrap().unwrap();
    assert!(!waiting.write.state.is_final(), "{waiting:?}");
    assert!(sim.writes_received().is_empty());

    sim.set_faults(Faults::none());
    let done = settled(&fx, &id).await;
    assert_eq!(done.write.state, WriteState::Succeeded, "{done:?}");
    assert_eq!(done.write.result_id.as_deref(), Some((SEEDED + 1).to_string().as_str()));
    assert!(done.attempts.iter().all(|a| a.status != Some(400)), "{done:?}");
    assert_eq!(done.attempts.last().and_then(|a| a.status), Some(201), "{done:?}");
    assert_eq!(sim.writes_received().len(), 1, "one write reached the API");
    assert!(sim.requests_for("/crm/v3/objects/contacts") >= 3);
    drop(daemon);
    fx.finish().await;
}
