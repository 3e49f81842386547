use std::time::Duration;

use tributary::model::{ConnectionStatus, JobCounts, JobFilter, Owner, PauseScope, TriggerKind};
use tributary::store::{ClaimRequest, Exclusions, Store};

use super::{at, claim, jobs, provider, request, tenant};

async fn next_due(store: &Store, now: i64) -> Option<chrono::DateTime<chrono::Utc>> {
    store.next_due_at(at(now), &Exclusions::default()).await.unwrap()
}

pub(super) async fn next_due_at_is_the_earliest_claimable_time(store: &Store) {
    assert_eq!(next_due(store, 30).await, None, "no jobs");
    let acme = tenant(store, "acme", &["hubspot", "aptem"]).await;
    let rows =
        jobs(store, &acme, &[("hubspot", "a", Some(40)), ("aptem", "b", Some(50)), ("hubspot", "c", None)]).await;
    assert_eq!(next_due(store, 30).await, Some(at(40)));
    // Past due means now.
    assert_eq!(next_due(store, 45).await, Some(at(45)));

    store.set_paused(&PauseScope::Job(acme.clone(), rows[0].id), true).await.unwrap();
    assert_eq!(next_due(store, 30).await, Some(at(50)));
    store
        .set_connection_status(&acme, &provider("aptem"), Owner::Company, ConnectionStatus::NeedsReauth, None)
        .await
        .unwrap();
    assert_eq!(next_due(store, 30).await, None, "paused, unconnected and unscheduled jobs never come due");

    let c = JobFilter {
        tenant: Some(acme.clone()),
        stream: Some(tributary::model::StreamName::parse("c").unwrap()),
        ..JobFilter::default()
    };
    assert_eq!(store.trigger_jobs(&c, TriggerKind::Manual, at(31)).await.unwrap().len(), 1);
    assert_eq!(next_due(store, 32).await, Some(at(32)), "a trigger is due at once");
    let acme_excluded = [acme.clone()];
    let excluded = Exclusions { tenants: &acme_excluded, providers: &[] };
    assert_eq!(store.next_due_at(at(32), &excluded).await.unwrap(), None);

    store.set_paused(&PauseScope::Job(acme.clone(), rows[0].id), false).await.unwrap();
    let hubspot_excluded = [provider("hubspot")];
    let excluded = Exclusions { tenants: &[], providers: &hubspot_excluded };
    assert_eq!(store.next_due_at(at(32), &excluded).await.unwrap(), None);
    store.set_paused(&PauseScope::Tenant(acme.clone()), true).await.unwrap();
    assert_eq!(next_due(store, 32).await, None);
}

pub(super) async fn next_due_at_waits_for_leases_to_expire(store: &Store) {
    let acme = tenant(store, "acme", &["hubspot"]).await;
    let rows = jobs(store, &acme, &[("hubspot", "a", Some(1)), ("hubspot", "b", Some(50))]).await;
    assert_eq!(claim(store, "w", 5, 1).await.len(), 1); // a, leased until minute 15
    assert_eq!(next_due(store, 6).await, Some(at(15)));
    store.renew_lease(&acme, rows[0].id, "w", at(60)).await.unwrap();
    assert_eq!(next_due(store, 6).await, Some(at(50)));
    store.set_paused(&PauseScope::Job(acme.clone(), rows[1].id), true).await.unwrap();
    assert_eq!(next_due(store, 6).await, Some(at(60)));
    // An expired lease is claimable now.
    assert_eq!(next_due(store, 61).await, Some(at(61)));
}

pub(super) async fn job_counts_count_each_state(store: &Store) {
    let grace = Duration::from_secs(5 * 60);
    assert_eq!(store.job_counts(at(10), grace).await.unwrap(), JobCounts::default());
    let acme = tenant(store, "acme", &["hubspot", "aptem", "jira"]).await;
    let globex = tenant(store, "globex", &["hubspot"]).await;
    let all = [
        ("hubspot", "a", Some(1)),
        ("hubspot", "b", Some(0)),
        ("hubspot", "c", Some(50)),
        ("hubspot", "d", Some(1)),
        ("aptem", "e", Some(1)),
        ("jira", "f", Some(1)),
        ("hubspot", "h", Some(1)),
    ];
    let rows = jobs(store, &acme, &all).await;
    jobs(store, &acme, &all[..6]).await; // h is disabled
    jobs(store, &globex, &[("hubspot", "g", Some(1))]).await;
    store.set_paused(&PauseScope::Job(acme.clone(), rows[3].id), true).await.unwrap();
    store
        .set_connection_status(&acme, &provider("aptem"), Owner::Company, ConnectionStatus::NeedsReauth, None)
        .await
        .unwrap();
    store.set_paused(&PauseScope::Connection(acme.clone(), provider("jira")), true).await.unwrap();
    store.set_paused(&PauseScope::Tenant(globex.clone()), true).await.unwrap();
    let running = store.claim_due_jobs(&ClaimRequest { lease_until: at(12), ..request("w", 2, 1) }).await.unwrap();
    assert_eq!(running[0].job.id, rows[1].id);
    let c = JobFilter {
        tenant: Some(acme.clone()),
        stream: Some(tributary::model::StreamName::parse("c").unwrap()),
        ..JobFilter::default()
    };
    store.trigger_jobs(&c, TriggerKind::Webhook, at(9)).await.unwrap();

    assert_eq!(
        store.job_counts(at(10), grace).await.unwrap(),
        JobCounts { total: 8, enabled: 7, paused: 3, blocked: 1, due: 2, overdue: 1, running: 1 }
    );
    // b's lease has expired by minute 20: due again, and overdue like the others.
    assert_eq!(
        store.job_counts(at(20), grace).await.unwrap(),
        JobCounts { total: 8, enabled: 7, paused: 3, blocked: 1, due: 3, overdue: 3, running: 0 }
    );
}
