//! The scheduling contract of the store (claims, leases, triggers, pauses, the next due
//! time, counts, reconciliation): every test runs unchanged on SQLite and PostgreSQL.
//!
//! Tests live in the child modules as `async fn name(store: &Store)` (or with the
//! database URL as well); `contract!` generates `sqlite::name` and `postgres::name`.

mod claims;
mod due;
mod leases;
mod reconcile;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use serde_json::json;
use tributary::model::{
    AuditEntry, ClaimedJob, ConnectionStatus, JobRow, Owner, PresetName, ProviderId, StreamName, TenantId,
};
use tributary::store::{ClaimRequest, DesiredJob, Exclusions, Store, TenantState};

crate::support::contract::contract! {
    store: [
        claims::claims_skip_every_exclusion,
        claims::claims_skip_excluded_tenants_and_providers,
        claims::triggered_jobs_are_claimed_first,
        claims::expired_leases_are_reclaimed_and_the_old_holder_is_fenced,
        claims::claims_report_the_tenant_time_zone,
        claims::capped_claims_count_every_holders_leases,
        claims::the_fleet_wide_cap_counts_every_holders_leases,
        claims::a_tenant_whose_quota_share_another_replica_holds_stays_with_it,
        leases::completion_clears_the_lease_and_the_served_trigger,
        leases::completion_counts_failures_and_links_the_run,
        leases::renewal_and_release,
        leases::pauses_and_triggers_address_scopes,
        due::next_due_at_is_the_earliest_claimable_time,
        due::next_due_at_waits_for_leases_to_expire,
        due::job_counts_count_each_state,
        reconcile::reconcile_creates_updates_disables_and_reenables,
        reconcile::reconcile_rejects_foreign_connections_and_duplicates,
    ],
    url: [
        claims::concurrent_claimers_never_share_a_job,
        claims::concurrent_capped_claimers_never_exceed_the_cap,
    ],
}

// --- fixtures -------------------------------------------------------------------------

fn tenant_id(id: &str) -> TenantId {
    TenantId::parse(id).unwrap()
}

fn provider(id: &str) -> ProviderId {
    ProviderId::parse(id).unwrap()
}

fn stream(name: &str) -> StreamName {
    StreamName::parse(name).unwrap()
}

/// `minute` minutes after a fixed instant (whole microseconds, as both backends store).
fn at(minute: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 21, 9, 0, 0).unwrap() + TimeDelta::minutes(minute)
}

/// Creates tenant `id` (time zone Europe/London) with a connection to each provider,
/// every one of them `connected`.
async fn tenant(store: &Store, id: &str, providers: &[&str]) -> TenantId {
    let state = TenantState {
        id: tenant_id(id),
        name: format!("{id} Ltd"),
        subdomain: id.into(),
        timezone: "Europe/London".into(),
        preset: PresetName::parse("aptem_hubspot").unwrap(),
        preset_revision: "r1".into(),
        preset_snapshot: json!({}),
        overrides: vec![],
        enabled_providers: providers.iter().map(|p| provider(p)).collect(),
    };
    let audit = AuditEntry {
        at: at(0),
        actor: "test".into(),
        scope: None,
        outcome: tributary::model::AuditOutcome::Ok,
        message: None,
        action: "tenant.create".into(),
        tenant_id: Some(state.id.clone()),
        subject: None,
        details: json!({}),
    };
    store.create_tenant(&state, &audit).await.unwrap();
    for p in providers {
        store
            .set_connection_status(&state.id, &provider(p), Owner::Company, ConnectionStatus::Connected, None)
            .await
            .unwrap();
    }
    state.id
}

/// The schedule text the fixtures use: `due N` puts `next_run_at` at `at(N)` (through
/// the `next_due` function of reconciliation); `never` leaves it empty.
fn due_schedule(due: Option<i64>) -> String {
    due.map_or_else(|| "never".to_owned(), |m| format!("due {m}"))
}

/// The `next_due` function matching [`due_schedule`].
fn due_from_schedule(schedule: &str, _job_id: i64) -> Option<DateTime<Utc>> {
    schedule.strip_prefix("due ").map(|m| at(m.parse().unwrap()))
}

/// Reconciles the tenant's jobs to exactly `jobs` (provider, stream, due minute) and
/// returns them in that order.
async fn jobs(store: &Store, tenant: &TenantId, jobs: &[(&str, &str, Option<i64>)]) -> Vec<JobRow> {
    let connections = store.list_connections(tenant).await.unwrap();
    let desired: Vec<DesiredJob> = jobs
        .iter()
        .map(|(p, s, due)| DesiredJob {
            connection_id: connections
                .iter()
                .find(|c| c.provider.as_str() == *p)
                .expect("the provider's connection exists")
                .id,
            stream: stream(s),
            schedule: due_schedule(*due),
        })
        .collect();
    store.reconcile_jobs(tenant, &desired, &due_from_schedule).await.unwrap();
    let all = store.list_jobs(tenant).await.unwrap();
    jobs.iter()
        .map(|(p, s, _)| {
            all.iter().find(|j| j.provider.as_str() == *p && j.stream.as_str() == *s).expect("the job exists").clone()
        })
        .collect()
}

/// A claim by `owner` at `at(now)` with a 10-minute lease.
fn request(owner: &str, now: i64, limit: u32) -> ClaimRequest<'_> {
    ClaimRequest { owner, now: at(now), lease_until: at(now + 10), limit, exclude: Exclusions::default() }
}

async fn claim(store: &Store, owner: &str, now: i64, limit: u32) -> Vec<ClaimedJob> {
    store.claim_due_jobs(&request(owner, now, limit)).await.unwrap()
}

/// `tenant/provider/stream` of each claimed job, in claim order.
fn names(claimed: &[ClaimedJob]) -> Vec<String> {
    claimed.iter().map(|c| format!("{}/{}/{}", c.job.tenant_id, c.job.provider, c.job.stream)).collect()
}
