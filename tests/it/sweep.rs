//! Mark and sweep (`sweep = true` on a stream): after a complete full pass, the stored
//! records of the stream's entity that the pass did not see become deleted, and come
//! back when they reappear; a pass resumed over several runs is one pass; a pass that
//! failed or stopped early never sweeps; the guard holds back a sweep of more than the
//! stream's share; the full-pass schedule makes full passes due on their own. On both
//! stores, against the HubSpot simulator (whose contacts listing leaves deleted
//! contacts out), and the configuration checks of sweeping streams.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tributary::config::{Catalog, ConfigDir};
use tributary::model::{ChangeKind, EntityName, ProviderId, RecordRow, RunOutcome, RunRow, TenantId};
use tributary::scheduler::plan_full_pass;
use tributary::store::{Failures, JobCompletion, Store};
use tributary::sync::SyncRequest;
use tributary_simulator::{Faults, Provider, SimConfig, SimHandle, start};

use crate::support::world::{World, request};

/// Contacts the simulator serves: two pages of 100 and 50.
const CONTACTS: u64 = 150;

fn hubspot() -> ProviderId {
    ProviderId::parse("hubspot").unwrap()
}

fn contact() -> EntityName {
    EntityName::parse("contact").unwrap()
}

/// A tenant whose HubSpot contacts sweep, with `extra` lines in its `[providers.hubspot]`
/// table and `stream` settings added to the contacts stream's.
async fn tenant(world: &World, sim: &SimHandle, extra: &str, stream: &str) -> TenantId {
    let body = format!(
        "preset = \"aptem_hubspot\"\n[providers.hubspot]\nbase_url = \"{}\"\n{extra}\n\
         streams = {{ contacts = {{ enabled = true, entity = \"contact\", sweep = true{stream} }} }}\n",
        sim.base_url()
    );
    let tenant = world.create_tenant("acme", "Acme", &body).await;
    world.credentials(&tenant, &hubspot(), None, &sim.credentials()).await;
    tenant
}

async fn run(world: &World, req: &SyncRequest) -> RunRow {
    world.syncer().run(req, &mut |_, _| {}).await.unwrap()
}

/// A full pass (`--full-refresh`) that must succeed.
async fn full_pass(world: &World, tenant: &TenantId) -> RunRow {
    let row = run(world, &SyncRequest { full_refresh: true, ..request(tenant, &hubspot(), "contacts") }).await;
    assert_eq!(row.outcome, RunOutcome::Success, "{:?} {:?}", row.stats.error, row.stats.note);
    row
}

async fn contacts(store: &Store, tenant: &TenantId) -> BTreeMap<String, RecordRow> {
    let rows = store.list_records(tenant, &contact(), 10_000).await.unwrap();
    rows.into_iter().map(|r| (r.external_id.clone(), r)).collect()
}

fn deleted(stored: &BTreeMap<String, RecordRow>) -> Vec<&str> {
    stored.values().filter(|r| r.deleted_at.is_some()).map(|r| r.external_id.as_str()).collect()
}

fn note(row: &RunRow) -> &str {
    row.stats.note.as_deref().unwrap_or("")
}

async fn unseen_records_are_swept_and_come_back(store: &Store) {
    let sim = start(SimConfig::new(Provider::HubSpot, CONTACTS)).await.unwrap();
    let world = World::builder().on(store.clone());
    let tenant = tenant(&world, &sim, "", "").await;

    // The first run is a full pass: every contact seen, nothing to sweep.
    let first = run(&world, &request(&tenant, &hubspot(), "contacts")).await;
    assert_eq!((first.outcome, first.stats.inserted), (RunOutcome::Success, CONTACTS as i64));
    assert!(note(&first).contains("swept 0 of 150 records"), "{:?}", first.stats.note);
    let before = contacts(store, &tenant).await;
    assert!(deleted(&before).is_empty());
    let last_seq = store.list_changes(&tenant, Some(&contact()), 0, 1_000).await.unwrap().last().unwrap().seq;

    // Two contacts disappear from the listing (ids are indices + 1).
    assert!(sim.delete("contacts", 3));
    assert!(sim.delete("contacts", 120));
    // An incremental run reads what changed: it cannot tell what is gone.
    let inc = run(&world, &request(&tenant, &hubspot(), "contacts")).await;
    assert_eq!(inc.outcome, RunOutcome::Success);
    assert!(!note(&inc).contains("swept"), "{:?}", inc.stats.note);
    assert!(deleted(&contacts(store, &tenant).await).is_empty());

    // A full pass sweeps them: deleted, in the change feed as `deleted` by that run.
    let pass = full_pass(&world, &tenant).await;
    assert_eq!((pass.stats.fetched, pass.stats.inserted, pass.stats.updated), (148, 0, 0));
    assert!(note(&pass).contains("swept 2 of 150 records not seen in the full pass"), "{:?}", pass.stats.note);
    let after = contacts(store, &tenant).await;
    assert_eq!(deleted(&after), ["121", "4"]);
    for (id, row) in &after {
        if id != "4" && id != "121" {
            assert_eq!(row.data, before[id].data, "{id} is untouched");
            assert_eq!(row.deleted_at, None);
        }
    }
    let feed = store.list_changes(&tenant, Some(&contact()), last_seq, 1_000).await.unwrap();
    let got: Vec<_> = feed.iter().map(|c| (c.seq, c.external_id.as_str(), c.kind, c.run_id)).collect();
    assert_eq!(
        got,
        [
            (last_seq + 1, "121", ChangeKind::Deleted, Some(pass.id)),
            (last_seq + 2, "4", ChangeKind::Deleted, Some(pass.id))
        ]
    );

    // Another full pass finds nothing more to sweep.
    let again = full_pass(&world, &tenant).await;
    assert!(note(&again).contains("swept 0 of 148 records"), "{:?}", again.stats.note);

    // A contact that reappears comes back; the other stays deleted.
    assert!(sim.restore("contacts", 3));
    let back = full_pass(&world, &tenant).await;
    assert_eq!(back.stats.updated, 1, "{:?}", back.stats);
    let restored = contacts(store, &tenant).await;
    assert_eq!(deleted(&restored), ["121"]);
    assert_eq!(restored["4"].deleted_at, None);
}

async fn the_guard_holds_back_a_sweep_of_more_than_the_share(store: &Store) {
    let sim = start(SimConfig::new(Provider::HubSpot, CONTACTS)).await.unwrap();
    let world = World::builder().on(store.clone());
    let tenant = tenant(&world, &sim, "", "").await;
    full_pass(&world, &tenant).await;

    // 31 of 150 (more than 20 %) disappear: nothing is deleted, the run ends partial
    // and says why, and the metric counts the held-back sweep.
    for i in 0..31 {
        assert!(sim.delete("contacts", i));
    }
    let syncer = world.syncer();
    let req = SyncRequest { full_refresh: true, ..request(&tenant, &hubspot(), "contacts") };
    let held = syncer.run(&req, &mut |_, _| {}).await.unwrap();
    assert_eq!(held.outcome, RunOutcome::Partial, "{:?}", held.stats);
    assert!(tributary::sync::sweep_held_back(&held));
    assert!(
        note(&held).contains("31 of 150 stored records were not seen") && note(&held).contains("sweep_max_share = 0.2"),
        "{:?}",
        held.stats.note
    );
    assert!(deleted(&contacts(store, &tenant).await).is_empty());
    let metrics = syncer.metrics.encode();
    assert!(
        metrics.contains(r#"tributary_sweeps_total{provider="hubspot",stream="contacts",outcome="guarded"} 1"#),
        "{metrics}"
    );
    // The stored run row says so too.
    let stored = store.get_run(held.id, Some(&tenant)).await.unwrap().unwrap();
    assert_eq!(stored.outcome, RunOutcome::Partial);
    assert!(stored.stats.note.as_deref().unwrap_or("").contains("sweep held back by its guard"));

    // An empty listing (every contact gone, e.g. an outage answered with nothing)
    // never wipes the tenant.
    for i in 31..CONTACTS {
        assert!(sim.delete("contacts", i));
    }
    let empty = run(&world, &req).await;
    assert_eq!((empty.outcome, empty.stats.fetched), (RunOutcome::Partial, 0));
    assert!(note(&empty).contains("150 of 150 stored records were not seen"), "{:?}", empty.stats.note);
    assert!(deleted(&contacts(store, &tenant).await).is_empty());
}

async fn the_share_is_set_per_stream_and_per_provider(store: &Store) {
    let sim = start(SimConfig::new(Provider::HubSpot, CONTACTS)).await.unwrap();
    let world = World::builder().on(store.clone());
    // The provider allows half; the stream's own setting (0.3) wins.
    let tenant = tenant(&world, &sim, "sweep_max_share = 0.5", ", sweep_max_share = 0.3").await;
    full_pass(&world, &tenant).await;
    for i in 0..40 {
        assert!(sim.delete("contacts", i));
    }
    let pass = full_pass(&world, &tenant).await;
    assert!(note(&pass).contains("swept 40 of 150 records"), "{:?}", pass.stats.note);
    assert_eq!(deleted(&contacts(store, &tenant).await).len(), 40);
    let metrics = world.syncer().metrics.encode();
    assert!(!metrics.contains("outcome=\"guarded\""), "a fresh syncer has counted nothing: {metrics}");
}

async fn a_resumed_pass_is_one_pass(store: &Store) {
    let sim = start(SimConfig::new(Provider::HubSpot, CONTACTS)).await.unwrap();
    let world = World::builder().on(store.clone());
    // One page per run: the full pass takes two runs.
    let tenant = tenant(&world, &sim, "", ", max_pages_per_run = 1").await;
    let first = run(&world, &request(&tenant, &hubspot(), "contacts")).await;
    assert_eq!(first.outcome, RunOutcome::Partial);
    let second = run(&world, &request(&tenant, &hubspot(), "contacts")).await;
    assert_eq!(second.outcome, RunOutcome::Success, "{:?}", second.stats);
    assert_eq!(contacts(store, &tenant).await.len() as u64, CONTACTS);

    // A new full pass reads the first page, then stops at its bounds: no sweep.
    let req = SyncRequest { full_refresh: true, ..request(&tenant, &hubspot(), "contacts") };
    let part = run(&world, &req).await;
    assert_eq!((part.outcome, part.stats.fetched), (RunOutcome::Partial, 100));
    assert!(!note(&part).contains("swept"), "{:?}", part.stats.note);
    // Meanwhile a contact of the page already read and one of the page to come go.
    assert!(sim.delete("contacts", 10));
    assert!(sim.delete("contacts", 130));
    // The next run (not a full refresh: it continues the saved full pass) completes
    // the pass and sweeps only the contact neither run saw.
    let rest = run(&world, &request(&tenant, &hubspot(), "contacts")).await;
    assert_eq!(rest.outcome, RunOutcome::Success, "{:?}", rest.stats);
    assert!(note(&rest).contains("resumed pass"), "{:?}", rest.stats.note);
    assert_eq!(rest.stats.fetched, 49);
    assert!(note(&rest).contains("swept 1 of 150 records"), "{:?}", rest.stats.note);
    assert_eq!(deleted(&contacts(store, &tenant).await), ["131"]);
}

async fn a_failed_pass_never_sweeps(store: &Store) {
    // Three pages: 100, 100 and 50.
    let sim = start(SimConfig::new(Provider::HubSpot, 250)).await.unwrap();
    let world = World::builder().on(store.clone());
    // Any share may go: only the pass's failure keeps the records.
    let tenant = tenant(&world, &sim, "sweep_max_share = 1.0", "").await;
    full_pass(&world, &tenant).await;
    assert!(sim.delete("contacts", 230));

    // The second page of the next pass fails (5xx, no retries).
    let next = sim.data_request_count() + 2;
    sim.set_faults(Faults { server_error_every: Some(next), ..Faults::none() });
    let mut syncer = world.syncer();
    syncer.retry.max_attempts = 1;
    let req = SyncRequest { full_refresh: true, ..request(&tenant, &hubspot(), "contacts") };
    let failed = syncer.run(&req, &mut |_, _| {}).await.unwrap();
    assert_eq!((failed.outcome, failed.stats.fetched), (RunOutcome::Failed, 100), "{:?}", failed.stats);
    // Had it swept, the 149 contacts of the unread pages would be gone.
    assert!(deleted(&contacts(store, &tenant).await).is_empty());

    // A cancelled run of the pass (a drain) reads the second page and stops: no sweep
    // either.
    sim.set_faults(Faults::none());
    let cancel = tokio_util::sync::CancellationToken::new();
    cancel.cancel();
    let cut = run(&world, &SyncRequest { cancel: Some(cancel), ..request(&tenant, &hubspot(), "contacts") }).await;
    assert_eq!((cut.outcome, cut.stats.fetched), (RunOutcome::Cancelled, 100));
    assert!(deleted(&contacts(store, &tenant).await).is_empty());

    // The pass the failure interrupted goes on in the next run, and sweeps when it is
    // complete.
    let done = run(&world, &request(&tenant, &hubspot(), "contacts")).await;
    assert_eq!(done.outcome, RunOutcome::Success, "{:?}", done.stats);
    assert_eq!(done.stats.fetched, 49);
    assert!(note(&done).contains("swept 1 of 250 records"), "{:?}", done.stats.note);
    assert_eq!(deleted(&contacts(store, &tenant).await), ["231"]);
}

async fn full_passes_run_on_their_own_schedule(store: &Store) {
    let sim = start(SimConfig::new(Provider::HubSpot, CONTACTS)).await.unwrap();
    let world = World::builder().on(store.clone());
    let tenant = tenant(&world, &sim, "", ", schedule = \"15m\", full_schedule = \"daily at 03:00\"").await;
    let first = run(&world, &request(&tenant, &hubspot(), "contacts")).await;
    assert_eq!(first.outcome, RunOutcome::Success);
    let jobs = store.list_jobs(&tenant).await.unwrap();
    let job = jobs.iter().find(|j| j.stream.as_str() == "contacts").unwrap().clone();
    // The run recorded the full schedule; after it the scheduler plans the first full
    // pass: the next 03:00 (tenant time, UTC here), give or take the job's jitter.
    assert_eq!(store.full_pass_plan(&tenant, job.id).await.unwrap(), (Some("daily at 03:00".to_owned()), None));
    // At the store's precision (microseconds).
    let now = chrono::SubsecRound::trunc_subsecs(chrono::Utc::now(), 6);
    let jitter = Duration::from_secs(60);
    let planned = plan_full_pass(store, &tenant, job.id, chrono_tz::UTC, now, jitter).await.unwrap();
    let planned = planned.expect("a full pass is planned");
    assert!(planned > now && planned - now <= chrono::Duration::hours(24) + chrono::Duration::minutes(2));
    assert_eq!(planned.format("%H:%M").to_string(), "03:00", "{planned}");
    assert_eq!(store.full_pass_at(&tenant, job.id).await.unwrap(), Some(planned));

    // The job runs every 15 minutes; when its next run would come after the full pass,
    // the full pass's time is its next run.
    let complete = |next: chrono::DateTime<chrono::Utc>| {
        let tenant = tenant.clone();
        async move {
            let at = chrono::Utc::now();
            store.claim_job(&tenant, job.id, "w1", at, at + chrono::Duration::minutes(5), None).await.unwrap();
            let completion = JobCompletion { next_run_at: Some(next), failures: Failures::Reset, last_run_id: None };
            store.complete_job(&tenant, job.id, "w1", &completion).await.unwrap().next_run_at
        }
    };
    let soon = now + chrono::Duration::minutes(15);
    assert_eq!(complete(soon).await, Some(soon));
    assert_eq!(complete(planned + chrono::Duration::minutes(10)).await, Some(planned));

    // Not due: the next run reads incrementally and sweeps nothing.
    assert!(sim.delete("contacts", 7));
    let inc = run(&world, &request(&tenant, &hubspot(), "contacts")).await;
    assert!(!note(&inc).contains("swept"), "{:?}", inc.stats.note);
    assert!(deleted(&contacts(store, &tenant).await).is_empty());

    // Due: an ordinary run (no --full-refresh) reads in full and sweeps; the pass is
    // done, and the scheduler plans the next one a day on.
    store.set_full_pass_at(&tenant, job.id, Some(now - chrono::Duration::minutes(1))).await.unwrap();
    let due = run(&world, &request(&tenant, &hubspot(), "contacts")).await;
    assert_eq!(due.outcome, RunOutcome::Success, "{:?}", due.stats);
    assert_eq!(due.stats.fetched, 149);
    assert!(note(&due).contains("swept 1 of 150 records"), "{:?}", due.stats.note);
    assert_eq!(deleted(&contacts(store, &tenant).await), ["8"]);
    assert_eq!(store.full_pass_at(&tenant, job.id).await.unwrap(), None);
    let next = plan_full_pass(store, &tenant, job.id, chrono_tz::UTC, chrono::Utc::now(), jitter).await.unwrap();
    assert_eq!(next, Some(planned));
}

crate::support::contract::contract! {
    store: [
        unseen_records_are_swept_and_come_back,
        the_guard_holds_back_a_sweep_of_more_than_the_share,
        the_share_is_set_per_stream_and_per_provider,
        a_resumed_pass_is_one_pass,
        a_failed_pass_never_sweeps,
        full_passes_run_on_their_own_schedule,
    ],
    url: [],
}

fn repo_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
}

#[test]
fn sweeping_streams_are_checked() {
    let catalog = Catalog::load(&ConfigDir::Dir(repo_config()), None).unwrap_or_else(|d| panic!("{d}"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("acme.toml");
    let check = |providers: &str| {
        let body = format!(
            "id = \"acme\"\nname = \"Acme\"\nsubdomain = \"acme\"\npreset = \"aptem_hubspot\"\n[providers.hubspot]\n{providers}\n"
        );
        std::fs::write(&file, body).unwrap();
        catalog.tenant_file(&file).err().map(|e| e.to_string()).unwrap_or_default()
    };
    // Two streams feed `contact`: the one that sweeps would delete the other's records.
    let err = check(
        "streams = { contacts = { enabled = true, entity = \"contact\", sweep = true }, \
         companies = { enabled = true, entity = \"contact\" } }",
    );
    assert!(
        err.contains("streams.contacts.sweep")
            && err.contains("stream `contacts` sweeps `contact`, which stream `companies` of `hubspot` also feeds"),
        "{err}"
    );
    // A deletion stream of the same entity is no conflict; it cannot sweep itself.
    let err = check(
        "streams = { contacts = { enabled = true, entity = \"contact\", sweep = true }, \
         contacts_archived = { enabled = true, sweep = true } }",
    );
    assert!(err.contains("streams.contacts_archived.sweep") && err.contains("is a deletion stream"), "{err}");
    assert!(!err.contains("streams.contacts.sweep"), "{err}");
    // Shares and schedules are checked.
    let err = check(
        "sweep_max_share = 0\nstreams = { contacts = { enabled = true, entity = \"contact\", sweep = true, \
         sweep_max_share = 1.5, full_schedule = \"now and then\" } }",
    );
    for path in ["sweep_max_share", "streams.contacts.sweep_max_share", "streams.contacts.full_schedule"] {
        assert!(err.contains(path), "{path}: {err}");
    }
    assert!(err.contains("`1.5` is not a share"), "{err}");
    // A good one passes.
    let ok = check(
        "sweep_max_share = 0.1\nstreams = { contacts = { enabled = true, entity = \"contact\", sweep = true, \
         full_schedule = \"daily at 03:00\" } }",
    );
    assert_eq!(ok, "");
}

/// As an operator sees it: `tributary sync --full-refresh` of a sweeping stream says what
/// it swept, and what the guard held back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_reports_sweeps_and_held_back_ones() {
    use crate::resume::{Backend, Env};
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let sim = start(SimConfig::new(Provider::HubSpot, CONTACTS)).await.unwrap();
        let env = Env::new(backend).await;
        let body = format!(
            "preset = \"aptem_hubspot\"\n[providers.hubspot]\nbase_url = \"{}\"\n\
             streams = {{ contacts = {{ enabled = true, entity = \"contact\", sweep = true }} }}\n",
            sim.base_url()
        );
        env.tenant(&body, "hubspot", &sim.credentials()).await;
        let sync = ["sync", "--tenant", "acme", "--provider", "hubspot", "--stream", "contacts"];
        env.ok(&sync, "").await;
        assert!(sim.delete("contacts", 3) && sim.delete("contacts", 120));
        let full: Vec<&str> = sync.iter().copied().chain(["--full-refresh"]).collect();
        let out = env.ok(&full, "").await;
        assert!(out.contains("swept 2 of 150 records not seen in the full pass"), "{out}");
        let gone = env.store.list_records(&env.tenant, &contact(), 1_000).await.unwrap();
        assert_eq!(gone.iter().filter(|r| r.deleted_at.is_some()).count(), 2);

        // Most contacts vanish (an outage answering with nothing would look the same).
        for i in 10..100 {
            assert!(sim.delete("contacts", i));
        }
        let out = env.run(&full, "").await;
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(text.contains("sweep held back by its guard") && text.contains("90 of 148"), "{text}");
        let run = env.last_run().await.unwrap();
        assert_eq!(run.outcome, RunOutcome::Partial);
        let kept = env.store.list_records(&env.tenant, &contact(), 1_000).await.unwrap();
        assert_eq!(kept.iter().filter(|r| r.deleted_at.is_some()).count(), 2, "nothing more deleted");
        env.finish().await;
    }
}
