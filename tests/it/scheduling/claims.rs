use std::collections::HashSet;

use serde_json::json;
use tributary::model::{ConnectionStatus, EntityName, JobFilter, JobRow, Owner, PauseScope, RunTrigger, TriggerKind};
use tributary::store::{ClaimRequest, Exclusions, Failures, JobCompletion, PageWrite, RecordInput, Store, StoreError};

use super::{at, claim, jobs, names, provider, request, tenant, tenant_id};

pub(super) async fn claims_skip_every_exclusion(store: &Store) {
    let acme = tenant(store, "acme", &["hubspot", "aptem", "bud", "onefile", "jira", "slack", "salesforce"]).await;
    let rows = jobs(
        store,
        &acme,
        &[
            ("hubspot", "contacts", Some(1)),    // claimable
            ("hubspot", "companies", Some(1)),   // job paused
            ("hubspot", "deals", Some(35)),      // not due at minute 30
            ("hubspot", "tickets", None),        // never scheduled
            ("hubspot", "owners", Some(1)),      // leased by another worker
            ("aptem", "learners", Some(1)),      // connection paused
            ("bud", "learners", Some(1)),        // connection needs_reauth
            ("onefile", "learners", Some(1)),    // connection pending
            ("slack", "messages", Some(1)),      // connection disabled
            ("jira", "issues", Some(1)),         // connection error: still runs
            ("salesforce", "accounts", Some(1)), // job disabled (removed below)
        ],
    )
    .await;
    // The salesforce job is dropped from the desired set: reconciliation disables it.
    let desired_without_salesforce: Vec<(&str, &str, Option<i64>)> = rows[..10]
        .iter()
        .zip([Some(1), Some(1), Some(35), None, Some(1), Some(1), Some(1), Some(1), Some(1), Some(1)])
        .map(|(j, due)| (j.provider.as_str(), j.stream.as_str(), due))
        .collect();
    jobs(store, &acme, &desired_without_salesforce).await;
    let globex = tenant(store, "globex", &["hubspot"]).await;
    jobs(store, &globex, &[("hubspot", "contacts", Some(1))]).await;

    store.set_paused(&PauseScope::Job(acme.clone(), rows[1].id), true).await.unwrap();
    store.set_paused(&PauseScope::Connection(acme.clone(), provider("aptem")), true).await.unwrap();
    store.set_paused(&PauseScope::Tenant(globex.clone()), true).await.unwrap();
    for (p, status) in [
        ("bud", ConnectionStatus::NeedsReauth),
        ("onefile", ConnectionStatus::Pending),
        ("slack", ConnectionStatus::Disabled),
        ("jira", ConnectionStatus::Error),
    ] {
        store.set_connection_status(&acme, &provider(p), Owner::Company, status, None).await.unwrap();
    }
    // Another worker holds the owners job until minute 500.
    let other =
        store.claim_due_jobs(&ClaimRequest { lease_until: at(500), ..request("worker-0", 25, 100) }).await.unwrap();
    assert_eq!(names(&other), ["acme/hubspot/contacts", "acme/hubspot/owners", "acme/jira/issues"]);
    for job in other.iter().filter(|c| c.job.stream.as_str() != "owners") {
        assert!(store.release_lease(&acme, job.job.id, "worker-0").await.unwrap());
    }

    let claimed = claim(store, "worker-1", 30, 100).await;
    assert_eq!(names(&claimed), ["acme/hubspot/contacts", "acme/jira/issues"]);
    for c in &claimed {
        assert_eq!(c.job.lease_owner.as_deref(), Some("worker-1"));
        assert_eq!(c.job.lease_expires_at, Some(at(40)));
        assert_eq!(c.job.claimed_at, Some(at(30)));
        assert_eq!(c.trigger, RunTrigger::Scheduled);
        assert!(!c.reclaimed);
        assert_eq!(c.job.attempts, 1, "the release undid worker-0's attempt");
    }
    assert!(claim(store, "worker-1", 30, 100).await.is_empty(), "leased jobs are not claimed twice");

    // Lifting each exclusion makes exactly that job claimable.
    store.set_paused(&PauseScope::Job(acme.clone(), rows[1].id), false).await.unwrap();
    assert_eq!(names(&claim(store, "w", 30, 100).await), ["acme/hubspot/companies"]);
    store.set_paused(&PauseScope::Connection(acme.clone(), provider("aptem")), false).await.unwrap();
    assert_eq!(names(&claim(store, "w", 30, 100).await), ["acme/aptem/learners"]);
    store.set_paused(&PauseScope::Tenant(globex.clone()), false).await.unwrap();
    assert_eq!(names(&claim(store, "w", 30, 100).await), ["globex/hubspot/contacts"]);
    store
        .set_connection_status(&acme, &provider("bud"), Owner::Company, ConnectionStatus::Connected, None)
        .await
        .unwrap();
    assert_eq!(names(&claim(store, "w", 30, 100).await), ["acme/bud/learners"]);
    assert_eq!(names(&claim(store, "w", 35, 100).await), ["acme/hubspot/deals"]);
    // Pending, disabled connections and the disabled job never came up.
    let salesforce = store.get_job(&acme, rows[10].id).await.unwrap().unwrap();
    assert!(!salesforce.enabled);
    assert_eq!(salesforce.lease_owner, None);
    // Once every lease has expired, all but those jobs are claimable again.
    let mut late = names(&claim(store, "w", 1_000, 100).await);
    late.sort();
    assert_eq!(
        late,
        [
            "acme/aptem/learners",
            "acme/bud/learners",
            "acme/hubspot/companies",
            "acme/hubspot/contacts",
            "acme/hubspot/deals",
            "acme/hubspot/owners",
            "acme/jira/issues",
            "globex/hubspot/contacts",
        ]
    );
}

pub(super) async fn claims_skip_excluded_tenants_and_providers(store: &Store) {
    let acme = tenant(store, "acme", &["hubspot", "aptem"]).await;
    let globex = tenant(store, "globex", &["hubspot"]).await;
    jobs(store, &acme, &[("hubspot", "contacts", Some(1)), ("aptem", "learners", Some(2))]).await;
    jobs(store, &globex, &[("hubspot", "contacts", Some(3))]).await;
    let skip_tenants = [acme.clone()];
    let claimed = store
        .claim_due_jobs(&ClaimRequest {
            exclude: Exclusions { tenants: &skip_tenants, providers: &[] },
            ..request("w", 10, 100)
        })
        .await
        .unwrap();
    assert_eq!(names(&claimed), ["globex/hubspot/contacts"]);
    let skip_providers = [provider("hubspot")];
    let claimed = store
        .claim_due_jobs(&ClaimRequest {
            exclude: Exclusions { tenants: &[], providers: &skip_providers },
            ..request("w", 10, 100)
        })
        .await
        .unwrap();
    assert_eq!(names(&claimed), ["acme/aptem/learners"]);
    assert_eq!(names(&claim(store, "w", 10, 100).await), ["acme/hubspot/contacts"]);
}

pub(super) async fn triggered_jobs_are_claimed_first(store: &Store) {
    let acme = tenant(store, "acme", &["hubspot"]).await;
    let rows = jobs(
        store,
        &acme,
        &[
            ("hubspot", "a", Some(1)),
            ("hubspot", "b", Some(2)),
            ("hubspot", "c", Some(3)),
            ("hubspot", "d", Some(50)), // not due
            ("hubspot", "e", None),     // never scheduled
            ("hubspot", "f", Some(1)),  // paused: not triggered
        ],
    )
    .await;
    store.set_paused(&PauseScope::Job(acme.clone(), rows[5].id), true).await.unwrap();
    let filter = |s: &str| JobFilter {
        tenant: Some(acme.clone()),
        provider: Some(provider("hubspot")),
        stream: Some(tributary::model::StreamName::parse(s).unwrap()),
    };
    let triggered = store.trigger_jobs(&filter("e"), TriggerKind::Webhook, at(5)).await.unwrap();
    assert_eq!(triggered.len(), 1);
    assert_eq!(triggered[0].trigger_kind, Some(TriggerKind::Webhook));
    assert_eq!(triggered[0].trigger_requested_at, Some(at(5)));
    store.trigger_jobs(&filter("d"), TriggerKind::Manual, at(6)).await.unwrap();
    // A second trigger keeps the first (earlier) request.
    let again = store.trigger_jobs(&filter("e"), TriggerKind::Manual, at(7)).await.unwrap();
    assert_eq!(again[0].trigger_requested_at, Some(at(5)));
    assert_eq!(again[0].trigger_kind, Some(TriggerKind::Webhook));
    assert!(store.trigger_jobs(&filter("f"), TriggerKind::Manual, at(7)).await.unwrap().is_empty());

    let first = claim(store, "w", 10, 3).await;
    assert_eq!(names(&first), ["acme/hubspot/e", "acme/hubspot/d", "acme/hubspot/a"]);
    let triggers: Vec<RunTrigger> = first.iter().map(|c| c.trigger).collect();
    assert_eq!(triggers, [RunTrigger::Webhook, RunTrigger::Manual, RunTrigger::Scheduled]);
    assert_eq!(names(&claim(store, "w", 10, 10).await), ["acme/hubspot/b", "acme/hubspot/c"]);
}

pub(super) async fn expired_leases_are_reclaimed_and_the_old_holder_is_fenced(store: &Store) {
    let acme = tenant(store, "acme", &["hubspot"]).await;
    let job = jobs(store, &acme, &[("hubspot", "contacts", Some(1))]).await.remove(0);
    let mine = claim(store, "worker-1", 5, 1).await; // lease until minute 15
    assert_eq!(mine.len(), 1);
    assert!(claim(store, "worker-2", 14, 10).await.is_empty(), "the lease has not expired");

    let theirs = claim(store, "worker-2", 16, 10).await;
    assert_eq!(theirs.len(), 1);
    let taken = &theirs[0];
    assert!(taken.reclaimed);
    assert_eq!(taken.job.reclaimed_from.as_deref(), Some("worker-1"));
    assert_eq!(taken.job.attempts, 2);
    assert_eq!(taken.job.lease_owner.as_deref(), Some("worker-2"));

    // worker-1 comes back: none of its writes land.
    let completion = JobCompletion { next_run_at: Some(at(100)), failures: Failures::Reset, last_run_id: None };
    let lost = |err: StoreError| matches!(err, StoreError::LeaseLost { job_id } if job_id == job.id);
    assert!(lost(store.complete_job(&acme, job.id, "worker-1", &completion).await.unwrap_err()));
    assert!(lost(store.renew_lease(&acme, job.id, "worker-1", at(60)).await.unwrap_err()));
    let entity = EntityName::parse("contact").unwrap();
    let hubspot = provider("hubspot");
    let records = [RecordInput { external_id: "c1".into(), data: json!({ "n": 1 }) }];
    let page = PageWrite {
        entity: &entity,
        provider: &hubspot,
        records: &records,
        job_id: job.id,
        cursor: Some("c1"),
        lease_owner: Some("worker-1"),
        dead_letters: &[],
        position: tributary::store::PositionWrite::Keep,
        run: None,
        mark_seen: false,
    };
    assert!(lost(store.write_page(&acme, &page).await.unwrap_err()));
    assert!(!store.release_lease(&acme, job.id, "worker-1").await.unwrap());
    assert_eq!(store.count_records(&acme, None).await.unwrap(), 0);
    let row: JobRow = store.get_job(&acme, job.id).await.unwrap().unwrap();
    assert_eq!(row.cursor, None);
    assert_eq!(row.lease_owner.as_deref(), Some("worker-2"));
    assert_eq!(row.next_run_at, Some(at(1)));

    // The new holder writes and completes.
    let page = PageWrite { lease_owner: Some("worker-2"), ..page };
    store.write_page(&acme, &page).await.unwrap();
    let done = store.complete_job(&acme, job.id, "worker-2", &completion).await.unwrap();
    assert_eq!((done.lease_owner, done.reclaimed_from, done.attempts), (None, None, 0));
    assert_eq!(done.cursor.as_deref(), Some("c1"));
    assert_eq!(done.next_run_at, Some(at(100)));
    // A missing job is not a lost lease.
    let err = store.renew_lease(&acme, job.id + 1_000, "worker-2", at(60)).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    let err = store.complete_job(&tenant_id("globex"), job.id, "worker-2", &completion).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
}

pub(super) async fn claims_report_the_tenant_time_zone(store: &Store) {
    let acme = tenant(store, "acme", &["hubspot"]).await;
    jobs(store, &acme, &[("hubspot", "contacts", Some(1))]).await;
    let claimed = claim(store, "w", 5, 1).await;
    assert_eq!(claimed[0].timezone, chrono_tz::Europe::London);
}

/// Two stores on one database, 16 tasks claiming in small batches over 200 due jobs:
/// every job is claimed exactly once.
pub(super) async fn concurrent_claimers_never_share_a_job(store: &Store, url: &str) {
    let acme = tenant(store, "acme", &["hubspot"]).await;
    let streams: Vec<String> = (0..200).map(|i| format!("s{i:03}")).collect();
    let wanted: Vec<(&str, &str, Option<i64>)> = streams.iter().map(|s| ("hubspot", s.as_str(), Some(1))).collect();
    jobs(store, &acme, &wanted).await;
    let second = Store::connect(url).await.unwrap();
    let stores = [store.clone(), second.clone()];
    let mut tasks = Vec::new();
    for worker in 0..16 {
        let store = stores[worker % 2].clone();
        tasks.push(tokio::spawn(async move {
            let owner = format!("worker-{worker}");
            let mut got = Vec::new();
            loop {
                let batch = store.claim_due_jobs(&request(&owner, 5, 7)).await.unwrap();
                if batch.is_empty() {
                    break;
                }
                got.extend(batch.into_iter().map(|c| {
                    assert_eq!(c.job.lease_owner.as_deref(), Some(owner.as_str()));
                    c.job.id
                }));
                tokio::task::yield_now().await;
            }
            got
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let unique: HashSet<i64> = all.iter().copied().collect();
    assert_eq!(unique.len(), all.len(), "a job was claimed twice");
    assert_eq!(all.len(), 200);
    assert!(claim(store, "late", 5, 1000).await.is_empty());
    second.close().await;
}

/// `per_tenant` / `per_provider` hold across claimers: leases anyone holds count, and a
/// batch never takes more than the room left.
pub(super) async fn capped_claims_count_every_holders_leases(store: &Store) {
    use tributary::store::FleetCaps;
    let acme = tenant(store, "acme", &["hubspot", "jira"]).await;
    let globex = tenant(store, "globex", &["hubspot"]).await;
    jobs(
        store,
        &acme,
        &[("hubspot", "contacts", Some(1)), ("hubspot", "companies", Some(1)), ("jira", "issues", Some(1))],
    )
    .await;
    jobs(store, &globex, &[("hubspot", "contacts", Some(1)), ("hubspot", "companies", Some(1))]).await;
    let caps = FleetCaps { per_tenant: 2, per_provider: 3, global: usize::MAX };
    let first = store.claim_due_jobs_capped(&request("a", 5, 1), caps).await.unwrap();
    assert_eq!(names(&first), ["acme/hubspot/contacts"]);
    // Another holder: acme has one lease (a's), so one more of its jobs; then HubSpot
    // has its third (globex's contacts): acme's Jira job and globex's companies wait.
    let second = store.claim_due_jobs_capped(&request("b", 5, 10), caps).await.unwrap();
    let got = names(&second);
    assert_eq!(got, ["acme/hubspot/companies", "globex/hubspot/contacts"]);
    let all: Vec<String> = names(&first).into_iter().chain(got.iter().cloned()).collect();
    assert_eq!(all.iter().filter(|n| n.starts_with("acme/")).count(), 2, "{all:?}");
    assert_eq!(all.iter().filter(|n| n.contains("/hubspot/")).count(), 3, "{all:?}");
    assert!(store.claim_due_jobs_capped(&request("c", 5, 10), caps).await.unwrap().is_empty());
    // An expired lease does not count; a released one frees its place.
    let job = &first[0].job;
    assert!(store.release_lease(&acme, job.id, "a").await.unwrap());
    let third = store.claim_due_jobs_capped(&request("c", 5, 10), caps).await.unwrap();
    assert_eq!(third.len(), 1, "{:?}", names(&third));
    // Uncapped claims are unchanged: what is left is taken.
    let rest = store.claim_due_jobs(&request("d", 5, 10)).await.unwrap();
    assert_eq!(first.len() + second.len() + third.len() - 1 + rest.len(), 5);
}

/// `global` holds across claimers: every holder's unexpired leases count against it, and a
/// batch takes only the room left.
pub(super) async fn the_fleet_wide_cap_counts_every_holders_leases(store: &Store) {
    use tributary::store::FleetCaps;
    let acme = tenant(store, "acme", &["hubspot", "jira"]).await;
    let globex = tenant(store, "globex", &["hubspot"]).await;
    jobs(
        store,
        &acme,
        &[("hubspot", "contacts", Some(1)), ("hubspot", "companies", Some(1)), ("jira", "issues", Some(1))],
    )
    .await;
    jobs(store, &globex, &[("hubspot", "contacts", Some(1)), ("hubspot", "companies", Some(1))]).await;
    let caps = FleetCaps { per_tenant: usize::MAX, per_provider: usize::MAX, global: 3 };
    let first = store.claim_due_jobs_capped(&request("a", 5, 2), caps).await.unwrap();
    assert_eq!(first.len(), 2, "{:?}", names(&first));
    // One place left in the fleet, whatever the other claimer asks for.
    let second = store.claim_due_jobs_capped(&request("b", 5, 10), caps).await.unwrap();
    assert_eq!(second.len(), 1, "{:?}", names(&second));
    assert!(store.claim_due_jobs_capped(&request("c", 5, 10), caps).await.unwrap().is_empty());
    // A released lease frees its place.
    let job = &first[0].job;
    assert!(store.release_lease(&job.tenant_id, job.id, "a").await.unwrap());
    let third = store.claim_due_jobs_capped(&request("c", 5, 10), caps).await.unwrap();
    assert_eq!(third.len(), 1, "{:?}", names(&third));
}

/// Sixteen claimers on two pools, per-tenant cap 1: at no moment do two of them hold a
/// lease on one tenant's jobs.
pub(super) async fn concurrent_capped_claimers_never_exceed_the_cap(store: &Store, url: &str) {
    use tributary::store::FleetCaps;
    let mut tenants = Vec::new();
    for t in 0..4 {
        let id = tenant(store, &format!("t{t}"), &["hubspot"]).await;
        let streams: Vec<String> = (0..10).map(|i| format!("s{i:02}")).collect();
        let wanted: Vec<(&str, &str, Option<i64>)> = streams.iter().map(|s| ("hubspot", s.as_str(), Some(1))).collect();
        jobs(store, &id, &wanted).await;
        tenants.push(id);
    }
    let caps = FleetCaps { per_tenant: 1, per_provider: usize::MAX, global: usize::MAX };
    let second = Store::connect(url).await.unwrap();
    let stores = [store.clone(), second.clone()];
    let mut tasks = Vec::new();
    for worker in 0..16 {
        let store = stores[worker % 2].clone();
        tasks.push(tokio::spawn(async move {
            let owner = format!("worker-{worker}");
            let mut done = 0;
            for _ in 0..200 {
                let batch = store.claim_due_jobs_capped(&request(&owner, 5, 3), caps).await.unwrap();
                // While this claimer holds them, nobody else holds another of the tenant's.
                for c in &batch {
                    let held = store
                        .list_jobs(&c.job.tenant_id)
                        .await
                        .unwrap()
                        .into_iter()
                        .filter(|j| j.lease_owner.is_some() && j.lease_expires_at.is_some_and(|e| e > at(5)))
                        .count();
                    assert_eq!(held, 1, "{} holds {held} leases", c.job.tenant_id);
                }
                for c in &batch {
                    let completion = JobCompletion { next_run_at: None, failures: Failures::Reset, last_run_id: None };
                    store.complete_job(&c.job.tenant_id, c.job.id, &owner, &completion).await.unwrap();
                    done += 1;
                }
                if batch.is_empty() {
                    tokio::task::yield_now().await;
                }
                if done > 0 && batch.is_empty() {
                    break;
                }
            }
            done
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    assert_eq!(total, 40, "every job ran once");
    second.close().await;
}

/// A tenant one of whose connections' rate-limit shares another replica holds (PostgreSQL
/// replicas) is left to that replica by capped claims; once the share is given back, any
/// replica claims it. SQLite has one daemon and no shares: nothing is left.
pub(super) async fn a_tenant_whose_quota_share_another_replica_holds_stays_with_it(store: &Store) {
    use tributary::store::{FleetCaps, ShareRequest};
    let acme = tenant(store, "acme", &["hubspot"]).await;
    let globex = tenant(store, "globex", &["hubspot"]).await;
    jobs(store, &acme, &[("hubspot", "contacts", Some(1))]).await;
    jobs(store, &globex, &[("hubspot", "contacts", Some(1))]).await;
    let ask = |quota: &str| ShareRequest {
        quota: quota.into(),
        limit: 110,
        per_secs: 10,
        wants: 110,
        sent: Default::default(),
    };
    let lease = std::time::Duration::from_secs(60);
    // b holds a share of acme's HubSpot quota, and of a provider-wide one (no tenant).
    let asks = [ask("hubspot/110/acme"), ask("salesforce/100")];
    store.renew_budget_shares("b", lease, &asks, false, |_| {}).await.unwrap();
    let caps = FleetCaps { per_tenant: 2, per_provider: 10, global: usize::MAX };
    let got = names(&store.claim_due_jobs_capped(&request("a", 5, 10), caps).await.unwrap());
    if store.backend() == "postgres" {
        assert_eq!(got, ["globex/hubspot/contacts"], "acme stays with b");
        assert_eq!(
            names(&store.claim_due_jobs_capped(&request("b", 5, 10), caps).await.unwrap()),
            ["acme/hubspot/contacts"],
            "b itself claims it"
        );
    } else {
        assert_eq!(got, ["acme/hubspot/contacts", "globex/hubspot/contacts"]);
    }
    // Given back: nothing is left to anyone.
    store.release_budget_shares("b").await.unwrap();
    jobs(store, &acme, &[("hubspot", "companies", Some(1))]).await;
    let got = names(&store.claim_due_jobs_capped(&request("a", 5, 10), caps).await.unwrap());
    assert_eq!(got, ["acme/hubspot/companies"]);

    // b holds the share again. A triggered job is taken by the replica the trigger was
    // sent to all the same (its requests wait for the share); a due one stays with b.
    store.renew_budget_shares("b", lease, &asks, false, |_| {}).await.unwrap();
    jobs(store, &acme, &[("hubspot", "deals", Some(50)), ("hubspot", "owners", Some(1))]).await;
    let deals = JobFilter {
        tenant: Some(acme.clone()),
        provider: Some(provider("hubspot")),
        stream: Some(tributary::model::StreamName::parse("deals").unwrap()),
    };
    assert_eq!(store.trigger_jobs(&deals, TriggerKind::Manual, at(5)).await.unwrap().len(), 1);
    let roomy = FleetCaps { per_tenant: 10, ..caps };
    let got = names(&store.claim_due_jobs_capped(&request("a", 5, 10), roomy).await.unwrap());
    if store.backend() == "postgres" {
        assert_eq!(got, ["acme/hubspot/deals"], "the trigger, not the due job");
    } else {
        assert_eq!(got, ["acme/hubspot/deals", "acme/hubspot/owners"]);
    }
}
