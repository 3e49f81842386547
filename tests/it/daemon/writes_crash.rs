//! Write-back as a user sees it when the daemon dies mid-write: creates submitted with
//! `tributary writes submit` reach the HubSpot simulator, which applies them but never
//! answers; the daemon is killed with SIGKILL while they are in flight, and a restarted
//! daemon claims them again once their short leases expire. Each create was applied
//! once, so the restarted daemon finds it with the manifest's lookup instead of sending
//! it again: every write ends `succeeded` with the id of the one object it made.

use std::time::{Duration, Instant};

use tributary::store::{WriteDetail, WriteState};
use tributary_simulator::{AmbiguousWrite, Provider, SimConfig, SimHandle, start};

use super::{Fixture, NEVER};

/// Contacts the simulator starts with.
pub const SEEDED: u64 = 3;
/// The path HubSpot creates contacts at.
pub const CREATE_PATH: &str = "/crm/v3/objects/contacts";
/// The path of the contact search the manifest's lookup uses.
pub const SEARCH_PATH: &str = "/crm/v3/objects/contacts/search";
/// Waits for writes that may be retried after a backoff of half a minute or more.
pub const WRITE_PATIENCE: Duration = Duration::from_secs(150);

/// `tributary.toml` with `daemon` as the body of `[daemon]` and `writes` of `[writes]`.
pub fn settings(daemon: &str, writes: &str) -> String {
    format!("{daemon}\n[writes]\n{writes}")
}

/// Connects acme to the HubSpot simulator `sim` (no sync comes due on its own).
pub async fn connected(fx: &Fixture, sim: &SimHandle) {
    let tenant = format!(
        "preset = \"aptem_hubspot\"\n[providers.aptem]\nschedule = \"{NEVER}\"\n\
         [providers.hubspot]\nbase_url = \"{}\"\nschedule = \"{NEVER}\"\n",
        sim.base_url()
    );
    fx.connect("acme", &tenant, &[("hubspot", sim.credentials())]).await;
}

/// Submits a contact create for `email` with `tributary writes submit`; the write's id.
pub async fn submit_contact(fx: &Fixture, email: &str) -> String {
    let record = serde_json::json!({ "email": email, "first_name": "Test" }).to_string();
    let said = fx
        .ok(
            &["writes", "submit", "--tenant", "acme", "--provider", "hubspot", "--entity", "contact", "--op", "create"],
            &record,
        )
        .await;
    let words: Vec<&str> = said.split_whitespace().collect();
    assert!(words.len() == 3 && words[0] == "write" && words[2] == "pending", "{said}");
    words[1].to_owned()
}

/// The simulator's contact ids (`1`-based, as HubSpot answers them) whose email is `email`.
pub fn contacts_with_email(sim: &SimHandle, email: &str) -> Vec<String> {
    (0..sim.record_count("contacts"))
        .filter_map(|i| sim.expected_record("contacts", i))
        .filter(|c| c.pointer("/properties/email").and_then(|e| e.as_str()) == Some(email))
        .filter_map(|c| c["id"].as_str().map(str::to_owned))
        .collect()
}

/// Create requests that reached the simulator (throttled ones never do).
pub fn creates_received(sim: &SimHandle) -> usize {
    sim.writes_received().iter().filter(|w| w.method == "POST" && w.path == CREATE_PATH).count()
}

/// Polls `check` every 100 ms until it returns something, at most `within`.
pub async fn within<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The write once it reached a final state (at most [`WRITE_PATIENCE`]).
pub async fn settled(fx: &Fixture, id: &str) -> WriteDetail {
    within(WRITE_PATIENCE, "the write to settle", || async {
        let detail = fx.store.get_write(id).await.expect("read the write").expect("the write is stored");
        detail.write.state.is_final().then_some(detail)
    })
    .await
}

/// Asserts that the write succeeded with the id of the one contact the simulator holds
/// for `email`.
pub fn succeeded_once(sim: &SimHandle, done: &WriteDetail, email: &str) {
    assert_eq!(done.write.state, WriteState::Succeeded, "{email}: {done:#?}");
    let made = contacts_with_email(sim, email);
    assert_eq!(made.len(), 1, "{email}: exactly one contact: {made:?}");
    assert_eq!(done.write.result_id.as_deref(), Some(made[0].as_str()), "{email}: the write names it");
}

async fn sigkill_mid_write(fx: Fixture) {
    const WRITES: usize = 3;
    let sim = start(SimConfig::new(Provider::HubSpot, SEEDED)).await.unwrap();
    // Every create is applied and never answered.
    sim.set_write_fault(Some(AmbiguousWrite::Hang));
    connected(&fx, &sim).await;
    // Submitted before the daemon starts, so that its worker claims them together.
    let emails: Vec<String> = (1..=WRITES).map(|i| format!("person{i}@acme.example.com")).collect();
    let mut ids = Vec::new();
    for email in &emails {
        ids.push(submit_contact(&fx, email).await);
    }
    let mut daemon = fx.start("first", 1).await;
    within(WRITE_PATIENCE, "the simulator to receive every create", || async {
        (creates_received(&sim) == WRITES).then_some(())
    })
    .await;
    for id in &ids {
        let w = fx.store.get_write(id).await.unwrap().unwrap();
        assert_eq!(w.write.state, WriteState::InFlight, "killed mid-write: {w:#?}");
    }
    daemon.signal("KILL").await;
    let status = daemon.exit_within(Duration::from_secs(5)).await;
    assert!(!status.success(), "killed: {status}");
    drop(daemon);

    // The provider is fine again; a new daemon takes the writes once their leases expire.
    sim.set_write_fault(None);
    let daemon = fx.start("second", 1).await;
    for (id, email) in ids.iter().zip(&emails) {
        let done = settled(&fx, id).await;
        succeeded_once(&sim, &done, email);
    }
    assert_eq!(sim.record_count("contacts"), SEEDED + WRITES as u64);
    assert_eq!(creates_received(&sim), WRITES, "no create was sent again: {:#?}", sim.writes_received());
    assert!(sim.requests_for(SEARCH_PATH) >= WRITES as u64, "each write was looked up");
    drop(daemon);
    fx.finish().await;
}

/// Leases of two seconds: a dead daemon's writes are claimed again soon after.
fn short_leases() -> String {
    settings("", "lease_secs = 2")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_write_then_restart_applies_each_create_once() {
    sigkill_mid_write(Fixture::sqlite(&short_leases()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_write_then_restart_applies_each_create_once_on_postgres() {
    sigkill_mid_write(Fixture::postgres(&short_leases()).await).await;
}

/// SIGTERM with creates in flight (applied by the simulator, never answered): the
/// stopping daemon gives them back, so with the default five-minute lease a new daemon
/// still takes them at once, finds each with the lookup and sends none again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_write_gives_the_writes_back_for_the_next_daemon() {
    let fx = Fixture::sqlite("").await;
    let sim = start(SimConfig::new(Provider::HubSpot, SEEDED)).await.unwrap();
    sim.set_write_fault(Some(AmbiguousWrite::Hang));
    connected(&fx, &sim).await;
    let email = "stopping@acme.example.com";
    let id = submit_contact(&fx, email).await;
    let mut daemon = fx.start("first", 1).await;
    within(WRITE_PATIENCE, "the simulator to receive the create", || async {
        (creates_received(&sim) == 1).then_some(())
    })
    .await;
    daemon.signal("TERM").await;
    let status = daemon.exit_within(Duration::from_secs(30)).await;
    assert!(status.success(), "a drained daemon exits 0: {status}");
    drop(daemon);
    let given_back = fx.store.get_write(&id).await.unwrap().unwrap();
    assert_eq!(given_back.write.state, WriteState::Pending, "{given_back:#?}");
    assert_eq!(given_back.write.lease_owner, None, "{given_back:#?}");

    sim.set_write_fault(None);
    let daemon = fx.start("second", 1).await;
    // Well within the five-minute lease the write would otherwise have waited for.
    let done = within(Duration::from_secs(60), "the write to settle", || async {
        let d = fx.store.get_write(&id).await.unwrap().unwrap();
        d.write.state.is_final().then_some(d)
    })
    .await;
    succeeded_once(&sim, &done, email);
    assert_eq!(creates_received(&sim), 1, "not sent again: {:#?}", sim.writes_received());
    drop(daemon);
    fx.finish().await;
}
