use tributary::model::{ConnectionStatus, JobFilter, Owner, PauseScope, RunTrigger, StreamName, TriggerKind};
use tributary::store::{Failures, JobCompletion, Store, StoreError};

use super::{at, claim, jobs, names, provider, tenant, tenant_id};

fn completion(next: i64, failures: Failures) -> JobCompletion {
    JobCompletion { next_run_at: Some(at(next)), failures, last_run_id: None }
}

fn one_tenant(tenant: &tributary::model::TenantId) -> JobFilter {
    JobFilter { tenant: Some(tenant.clone()), ..JobFilter::default() }
}

pub(super) async fn completion_clears_the_lease_and_the_served_trigger(store: &Store) {
    let acme = tenant(store, "acme", &["hubspot"]).await;
    let job = jobs(store, &acme, &[("hubspot", "contacts", Some(50))]).await.remove(0);
    store.trigger_jobs(&one_tenant(&acme), TriggerKind::Manual, at(2)).await.unwrap();
    let claimed = claim(store, "w", 3, 10).await;
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].trigger, RunTrigger::Manual);

    // A trigger while the run is under way is kept for another run.
    let during = store.trigger_jobs(&one_tenant(&acme), TriggerKind::Webhook, at(4)).await.unwrap();
    assert_eq!(during[0].trigger_requested_at, Some(at(4)));
    let done = store.complete_job(&acme, job.id, "w", &completion(50, Failures::Reset)).await.unwrap();
    assert_eq!(done.lease_owner, None);
    assert_eq!(done.lease_expires_at, None);
    assert_eq!(done.claimed_at, None);
    assert_eq!(done.trigger_requested_at, Some(at(4)));
    assert_eq!(done.trigger_kind, Some(TriggerKind::Webhook));

    let again = claim(store, "w", 5, 10).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].trigger, RunTrigger::Webhook);
    let done = store.complete_job(&acme, job.id, "w", &completion(50, Failures::Reset)).await.unwrap();
    assert_eq!((done.trigger_requested_at, done.trigger_kind), (None, None));
    assert_eq!(done.next_run_at, Some(at(50)));
    assert!(claim(store, "w", 6, 10).await.is_empty());
    assert_eq!(claim(store, "w", 50, 10).await.len(), 1);
}

pub(super) async fn completion_counts_failures_and_links_the_run(store: &Store) {
    let acme = tenant(store, "acme", &["hubspot"]).await;
    let job = jobs(store, &acme, &[("hubspot", "contacts", Some(1))]).await.remove(0);
    let mut streak = Vec::new();
    for (minute, failures) in [(1, Failures::Increment), (2, Failures::Increment), (3, Failures::Reset)] {
        assert_eq!(claim(store, "w", minute, 1).await.len(), 1);
        let run = store.start_run(&acme, job.id, RunTrigger::Scheduled).await.unwrap();
        let done = store
            .complete_job(
                &acme,
                job.id,
                "w",
                &JobCompletion { next_run_at: Some(at(minute + 1)), failures, last_run_id: Some(run.id) },
            )
            .await
            .unwrap();
        assert_eq!(done.last_run_id, Some(run.id));
        assert_eq!(done.attempts, 0);
        streak.push(done.consecutive_failures);
    }
    assert_eq!(streak, [1, 2, 0]);
}

pub(super) async fn renewal_and_release(store: &Store) {
    let acme = tenant(store, "acme", &["hubspot"]).await;
    let rows = jobs(store, &acme, &[("hubspot", "contacts", Some(1)), ("hubspot", "companies", Some(2))]).await;
    let (contacts, companies) = (rows[0].id, rows[1].id);
    store.trigger_jobs(&one_tenant(&acme), TriggerKind::Manual, at(3)).await.unwrap();
    assert_eq!(claim(store, "w1", 5, 10).await.len(), 2); // leases until minute 15

    store.renew_lease(&acme, contacts, "w1", at(40)).await.unwrap();
    let renewed = store.get_job(&acme, contacts).await.unwrap().unwrap();
    assert_eq!(renewed.lease_expires_at, Some(at(40)));
    // At minute 20 only the unrenewed lease has expired.
    let taken = claim(store, "w2", 20, 10).await;
    assert_eq!(names(&taken), ["acme/hubspot/companies"]);
    let err = store.renew_lease(&acme, contacts, "w2", at(60)).await.unwrap_err();
    assert!(matches!(err, StoreError::LeaseLost { .. }), "{err:?}");

    // Release hands the job back as it was: due at once, trigger pending.
    assert!(!store.release_lease(&acme, contacts, "w2").await.unwrap());
    assert!(store.release_lease(&acme, contacts, "w1").await.unwrap());
    let released = store.get_job(&acme, contacts).await.unwrap().unwrap();
    assert_eq!((released.lease_owner.clone(), released.lease_expires_at, released.claimed_at), (None, None, None));
    assert_eq!(released.next_run_at, Some(at(1)));
    assert_eq!(released.attempts, 0);
    assert_eq!(released.trigger_kind, Some(TriggerKind::Manual));
    let back = claim(store, "w2", 21, 10).await;
    assert_eq!(names(&back), ["acme/hubspot/contacts"]);
    assert_eq!(back[0].trigger, RunTrigger::Manual);

    assert_eq!(store.release_all("w2").await.unwrap(), 2);
    assert_eq!(store.release_all("w2").await.unwrap(), 0);
    let job = store.get_job(&acme, companies).await.unwrap().unwrap();
    assert_eq!(job.lease_owner, None);
    assert_eq!(job.attempts, 1, "the expired claim of w1 still counts");
}

pub(super) async fn pauses_and_triggers_address_scopes(store: &Store) {
    let acme = tenant(store, "acme", &["hubspot", "aptem"]).await;
    let globex = tenant(store, "globex", &["hubspot"]).await;
    let rows = jobs(
        store,
        &acme,
        &[("hubspot", "contacts", Some(1)), ("hubspot", "companies", Some(1)), ("aptem", "learners", Some(1))],
    )
    .await;
    jobs(store, &globex, &[("hubspot", "contacts", Some(1))]).await;

    for scope in [
        PauseScope::Tenant(tenant_id("nobody")),
        PauseScope::Connection(acme.clone(), provider("salesforce")),
        PauseScope::Job(globex.clone(), rows[0].id),
    ] {
        let err = store.set_paused(&scope, true).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound { .. }), "{scope:?}: {err:?}");
    }
    store.set_paused(&PauseScope::Tenant(globex.clone()), true).await.unwrap();
    assert!(store.get_tenant(&globex).await.unwrap().unwrap().paused);
    store.set_paused(&PauseScope::Connection(acme.clone(), provider("aptem")), true).await.unwrap();
    assert!(store.get_connection(&acme, &provider("aptem"), Owner::Company).await.unwrap().unwrap().paused);
    assert!(!store.get_connection(&acme, &provider("hubspot"), Owner::Company).await.unwrap().unwrap().paused);

    // Triggering everything (SIGUSR1) reaches only runnable jobs.
    let all = store.trigger_jobs(&JobFilter::default(), TriggerKind::Manual, at(2)).await.unwrap();
    let triggered: Vec<String> = all.iter().map(|j| format!("{}/{}/{}", j.tenant_id, j.provider, j.stream)).collect();
    assert_eq!(triggered, ["acme/hubspot/companies", "acme/hubspot/contacts"]);
    store
        .set_connection_status(&acme, &provider("hubspot"), Owner::Company, ConnectionStatus::NeedsReauth, None)
        .await
        .unwrap();
    assert!(store.trigger_jobs(&one_tenant(&acme), TriggerKind::Manual, at(3)).await.unwrap().is_empty());

    // Operators list jobs by filter.
    let listed = |filter: JobFilter, limit| async move { store.list_jobs_filtered(&filter, limit).await.unwrap() };
    assert_eq!(listed(JobFilter::default(), 100).await.len(), 4);
    assert_eq!(listed(JobFilter::default(), 2).await.len(), 2);
    assert_eq!(listed(one_tenant(&acme), 100).await.len(), 3);
    let by_provider = JobFilter { provider: Some(provider("hubspot")), ..JobFilter::default() };
    assert_eq!(listed(by_provider, 100).await.len(), 3);
    let by_stream = JobFilter {
        tenant: Some(acme.clone()),
        provider: Some(provider("hubspot")),
        stream: Some(StreamName::parse("contacts").unwrap()),
    };
    let one = listed(by_stream, 100).await;
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].id, rows[0].id);
}
