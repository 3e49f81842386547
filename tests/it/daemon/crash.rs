//! Crash safety: `tributary run` killed with SIGKILL at random moments during large
//! incremental syncs of two streams (HubSpot contacts and companies; an Aptem tenant
//! connection is configured but idle), restarted each time. Nothing is lost or doubled,
//! and every restarted run resumes from the cursor its dead predecessor committed last,
//! which the simulators' request counts confirm.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use tributary::control::protocol::Command as Ctl;
use tributary::model::{EntityName, JobRow, RunOutcome, TenantId};
use tributary_simulator::{Faults, Provider, SimConfig, SimHandle, start};

use super::{Fixture, NEVER, eventually, started_runs, target};

/// SIGKILLs of the daemon, at least.
const KILLS: usize = 10;
/// The seed of the simulators and of the kill moments (logged, to replay a failure).
const SEED: u64 = 0x5eed_c0de;
/// Records added after the first sync (read incrementally, sorted by the cursor).
const HUBSPOT_ADDED: u64 = 9_000; // 45 pages of 200
/// The longest pause between a restarted daemon resuming its runs and the next kill.
const MAX_PAUSE: Duration = Duration::from_millis(3_000);

/// A small deterministic generator (SplitMix64): the same seed, the same kill moments.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A duration in `[0, max)`.
    fn below(&mut self, max: Duration) -> Duration {
        Duration::from_millis(self.next() % max.as_millis() as u64)
    }
}

/// One synced stream: its simulator, the job's stream name and stored entity, and the
/// path prefix of its incremental data requests.
struct Stream {
    sim: SimHandle,
    provider: &'static str,
    stream: &'static str,
    entity: &'static str,
    path: &'static str,
    page: u64,
    added: u64,
}

impl Stream {
    async fn job(&self, fx: &Fixture) -> JobRow {
        let tenant = TenantId::parse("acme").unwrap();
        let jobs = fx.store.list_jobs(&tenant).await.unwrap();
        jobs.into_iter()
            .find(|j| j.provider.as_str() == self.provider && j.stream.as_str() == self.stream)
            .expect("the stream's job")
    }

    /// The stream's job still has its trigger: its catch-up has not completed.
    async fn pending(&self, fx: &Fixture) -> bool {
        self.job(fx).await.trigger_requested_at.is_some()
    }

    async fn stored(&self, fx: &Fixture) -> u64 {
        let tenant = TenantId::parse("acme").unwrap();
        let entity = EntityName::parse(self.entity).unwrap();
        fx.store.count_records(&tenant, Some(&entity)).await.unwrap() as u64
    }

    /// Pages of a read of the added records from the start (the last one may be empty).
    fn full_read_pages(&self) -> u64 {
        self.added / self.page + 1
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_nothing_and_restarts_resume_from_the_committed_cursor() {
    let began = Instant::now();
    let mut rng = Rng(SEED);
    eprintln!("crash test: seed {SEED:#x}");
    let aptem = start(SimConfig::new(Provider::Aptem, 1).seed(SEED)).await.unwrap();
    let hubspot = start(SimConfig::new(Provider::HubSpot, 1).seed(SEED)).await.unwrap();
    let streams = [
        Stream {
            sim: hubspot.clone(),
            provider: "hubspot",
            stream: "companies",
            entity: "company",
            path: "/crm/v3/objects/companies/search",
            page: 200,
            added: HUBSPOT_ADDED,
        },
        Stream {
            sim: hubspot.clone(),
            provider: "hubspot",
            stream: "contacts",
            entity: "employer",
            path: "/crm/v3/objects/contacts/search",
            page: 200,
            added: HUBSPOT_ADDED,
        },
    ];
    // A dead daemon's leases expire within two seconds.
    let fx = Fixture::sqlite("lease_secs = 2\nheartbeat_secs = 1").await;
    let tenant = format!(
        "preset = \"aptem_hubspot\"\n\
         [providers.aptem]\nbase_url = \"{}\"\nschedule = \"{NEVER}\"\n\
         [providers.hubspot]\nbase_url = \"{}\"\nschedule = \"{NEVER}\"\n",
        aptem.api_base(),
        hubspot.base_url()
    );
    fx.connect("acme", &tenant, &[("aptem", aptem.credentials()), ("hubspot", hubspot.credentials())]).await;

    // The first sync of each stream reads everything (one record) and sets the cursor.
    let mut daemon = fx.start("d00", 4).await;
    for s in &streams {
        let run = started_runs(&daemon.ok(Ctl::Trigger(target("acme", Some(s.provider), Some(s.stream)))).await)[0];
        let run = fx.finished_run("acme", run).await;
        assert_eq!(run.outcome, RunOutcome::Success, "{}: {:?}", s.stream, run.stats.error);
        assert!(s.job(&fx).await.cursor.is_some(), "{}: the first run commits a cursor", s.stream);
    }

    // Many records arrive; each page is slow, so the catch-up spans many kills.
    let mut before = BTreeMap::new();
    for s in &streams {
        s.sim.add(s.stream, s.added).unwrap();
        before.insert(s.stream, s.sim.requests_for(s.path));
    }
    hubspot.set_faults(Faults::none().delay(Duration::from_millis(400)));
    let catch_up_began = Utc::now();
    for s in &streams {
        daemon.ok(Ctl::Trigger(target("acme", Some(s.provider), Some(s.stream)))).await;
    }

    // Kill, restart, repeat: each time once every unfinished stream has a run going
    // (the new daemon first waits for the dead one's leases to expire), after a random
    // pause. After each kill the stored cursor is the last one committed: the next run
    // of that stream must start from exactly it.
    let mut kills = 0;
    let mut resumed_checks = 0;
    let mut moved = BTreeMap::<&str, usize>::new();
    let mut last_kill = catch_up_began;
    let mut committed: BTreeMap<&str, String> = BTreeMap::new();
    for s in &streams {
        committed.insert(s.stream, s.job(&fx).await.cursor.unwrap());
    }
    while kills < KILLS {
        let mut pending = Vec::new();
        for s in &streams {
            if s.pending(&fx).await {
                pending.push(s);
            }
        }
        assert!(!pending.is_empty(), "both catch-ups finished after only {kills} kills: make the syncs larger");
        // Wait for this daemon's runs of the unfinished streams; check where they start.
        for s in &pending {
            let run = eventually("the restarted daemon to resume the stream", || async {
                let runs = fx.runs("acme").await;
                runs.into_iter().find(|r| r.stream.as_str() == s.stream && r.started_at > last_kill)
            })
            .await;
            assert_eq!(
                run.cursor_before.as_deref(),
                Some(committed[s.stream].as_str()),
                "kill {kills}: {} resumed from its last committed cursor",
                s.stream
            );
            resumed_checks += 1;
        }
        let pause = Duration::from_millis(200) + rng.below(MAX_PAUSE);
        tokio::time::sleep(pause).await;
        daemon.signal("KILL").await;
        let status = daemon.exit_within(Duration::from_secs(5)).await;
        assert!(!status.success(), "killed: {status}");
        kills += 1;
        last_kill = Utc::now();
        let mut line = format!("kill {kills}: after {pause:?};");
        for s in &streams {
            let job = s.job(&fx).await;
            let cursor = job.cursor.expect("a committed cursor");
            if cursor != committed[s.stream] {
                *moved.entry(s.stream).or_default() += 1;
            }
            line += &format!(
                " {} {} stored, cursor {cursor}, {} requests;",
                s.stream,
                s.stored(&fx).await,
                s.sim.requests_for(s.path)
            );
            committed.insert(s.stream, cursor);
        }
        eprintln!("{line}");
        drop(daemon);
        daemon = fx.start(&format!("d{kills:02}"), 4).await;
    }

    // The last daemon finishes both catch-ups on its own.
    let deadline = Instant::now() + Duration::from_secs(40);
    for s in &streams {
        while s.pending(&fx).await {
            assert!(Instant::now() < deadline, "{}: the catch-up did not complete:\n{}", s.stream, daemon.log_text());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let runs = fx.runs("acme").await;
    assert!(runs.iter().all(|r| r.finished_at.is_some()), "no run stays running: {runs:#?}");
    for s in &streams {
        let expected = s.sim.record_count(s.stream);
        assert_eq!(expected, s.added + 1);
        assert_eq!(s.stored(&fx).await, expected, "{}: exactly the simulator's records", s.stream);
        let mine: Vec<_> =
            runs.iter().filter(|r| r.stream.as_str() == s.stream && r.started_at > catch_up_began).collect();
        let last = mine.first().expect("runs of the catch-up");
        assert_eq!(last.outcome, RunOutcome::Success, "{}: {:?}", s.stream, last.stats.error);
        // Every earlier run was killed (closed as abandoned by the next daemon), or had
        // finished just before a kill that came before its job was completed.
        for r in &mine[1..] {
            let abandoned =
                r.outcome == RunOutcome::Abandoned && r.stats.error.as_deref().is_some_and(|e| e.contains("abandoned"));
            assert!(abandoned || r.outcome == RunOutcome::Success, "{}: {r:#?}", s.stream);
        }
        assert_eq!(last.cursor_before.as_deref(), Some(committed[s.stream].as_str()));
        // Requests: one full read of the added records, plus per run what was in flight
        // at its kill (requested, not yet committed) and a last (empty) page.
        let requests = s.sim.requests_for(s.path) - before[s.stream];
        let full = s.full_read_pages();
        let runs_n = mine.len() as u64;
        eprintln!(
            "{}: {expected} records stored; {runs_n} runs, cursor moved across {} of {kills} kills; \
             {requests} data requests vs {full} for one full read and {} if each run restarted from zero",
            s.stream,
            moved.get(s.stream).copied().unwrap_or(0),
            runs_n * full
        );
        assert!(requests >= full, "{}: every page was read at least once", s.stream);
        assert!(
            requests <= full + 4 * runs_n,
            "{}: {requests} data requests for {full} pages over {runs_n} runs: some run re-read from the start",
            s.stream
        );
        assert!(moved.get(s.stream).copied().unwrap_or(0) >= 3, "{}: the cursor advanced between kills", s.stream);
    }
    assert!(resumed_checks >= KILLS, "each restart's runs were checked");
    eprintln!("crash test: {kills} kills, {:?}", began.elapsed());
    drop(daemon);
    fx.finish().await;
}
