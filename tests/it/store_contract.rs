//! The store contract: every test runs unchanged on SQLite and on PostgreSQL.
//!
//! Tests live in the child modules as `async fn name(store: &Store)` (or with the
//! database URL as well); `contract!` generates `sqlite::name` and `postgres::name`.

mod changes;
mod inbox;
mod intelligence;
mod isolation;
mod keys;
mod prune;
mod records;
mod runs;
mod tenants;
mod usage;
mod users;
mod writes;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value, json};
use tributary::model::{
    AuditEntry, ConnectionStatus, EntityName, JobRow, Owner, PageOutcome, PresetName, ProviderId, RunOutcome, RunStats,
    RunTrigger, SealedBlob, StreamName, TenantId,
};
use tributary::store::{PageWrite, RecordInput, Store, StoreError, TenantState};

crate::support::contract::contract! {
    store: [
        tenants::tenant_create_conflicts_on_same_id,
        tenants::tenant_update_requires_an_existing_tenant,
        tenants::overrides_are_replaced_wholesale,
        tenants::enabled_providers_drive_connections_and_jobs,
        tenants::credentials_bump_version_connect_and_audit,
        tenants::connection_status_is_set_per_tenant,
        tenants::jobs_are_ensured_idempotently,
        records::write_page_counts_inserted_updated_unchanged,
        records::dead_letters_are_written_with_their_page,
        records::write_page_moves_the_cursor_in_the_same_transaction,
        records::write_page_collapses_duplicate_ids,
        records::write_page_handles_pages_beyond_the_bind_limit,
        changes::changes_number_every_write_per_tenant,
        changes::dead_letter_pages_and_deletions_take_sequences,
        inbox::deliveries_are_kept_once_per_id_within_their_window,
        runs::runs_round_trip_newest_first,
        runs::audit_is_listed_newest_first_per_scope,
        runs::gauge_figures_aggregate_each_stream_over_tenants,
        isolation::tenants_are_isolated,
        users::users_are_added_idempotently,
        users::memberships_give_users_a_role_per_tenant,
        users::user_connections_need_a_membership_and_follow_it,
        users::role_grants_are_replaced_wholesale_per_tenant,
        users::each_owner_has_its_own_token_lease_and_status,
        users::claimed_jobs_name_their_connection_owner,
        intelligence::responsibilities_default_from_the_responsibility_and_are_replaced,
        intelligence::responsibilities_and_contributions_need_a_membership,
        intelligence::contributions_supersede_their_predecessor_and_fold_once,
        intelligence::contributions_are_listed_newest_first_by_filter,
        intelligence::reviews_decide_active_contributions_only,
        intelligence::intelligence_is_replaced_on_demand_and_qualities_are_read,
        intelligence::each_fold_replaces_its_users_pairs,
        intelligence::intelligence_is_isolated_between_tenants,
        intelligence::out_of_range_numbers_are_rejected,
        prune::pruning_removes_old_history_and_keeps_what_is_live,
        writes::writes_are_stored_once_per_idempotency_key,
        writes::writes_to_one_object_are_claimed_one_at_a_time_in_order,
        writes::settles_are_fenced_and_recorded_with_their_attempts,
        writes::only_pending_writes_are_cancelled,
        keys::rotation_rewraps_every_sealed_value_and_resumes,
        keys::a_registered_key_file_that_changed_is_an_error,
        keys::forgetting_a_lost_key_removes_what_it_sealed,
        usage::usage_equals_the_sums_of_the_finished_runs,
    ],
    url: [
        tenants::migrations_rerun_idempotently,
        records::fenced_writes_need_the_lease,
        records::positions_and_run_counts_commit_with_their_page,
        changes::fenced_writes_that_lost_the_lease_take_no_sequence,
        changes::concurrent_writers_never_share_a_sequence,
        isolation::corrupt_rows_are_errors_not_panics,
        intelligence::concurrent_contributions_lose_no_update,
        intelligence::corrupt_contribution_rows_are_errors_not_panics,
        writes::concurrent_submissions_with_one_key_make_one_write,
        writes::two_claimers_apply_each_objects_writes_in_order,
        usage::weeks_run_monday_to_sunday_and_since_counts_from_its_day,
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

fn entity(name: &str) -> EntityName {
    EntityName::parse(name).unwrap()
}

/// A fixed instant (whole microseconds, as both backends store them).
fn at(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 21, 9, minute, 0).unwrap()
}

fn audit(tenant: Option<&str>, action: &str, at: DateTime<Utc>) -> AuditEntry {
    AuditEntry {
        at,
        actor: "cli:alice".into(),
        scope: None,
        outcome: tributary::model::AuditOutcome::Ok,
        message: None,
        action: action.into(),
        tenant_id: tenant.map(tenant_id),
        subject: Some("subject".into()),
        details: json!({ "action": action }),
    }
}

fn state(id: &str, providers: &[&str]) -> TenantState {
    TenantState {
        id: tenant_id(id),
        name: format!("{id} Ltd"),
        subdomain: id.into(),
        timezone: "Europe/London".into(),
        preset: PresetName::parse("aptem_hubspot").unwrap(),
        preset_revision: "r1".into(),
        preset_snapshot: json!({
            "aptem": { "schedule": "15m" },
            "hubspot": { "streams": ["contacts"] },
        }),
        overrides: vec![],
        enabled_providers: providers.iter().map(|p| provider(p)).collect(),
    }
}

async fn create(store: &Store, id: &str, providers: &[&str]) -> TenantState {
    let state = state(id, providers);
    store.create_tenant(&state, &audit(Some(id), "tenant.create", at(0))).await.unwrap();
    state
}

async fn job(store: &Store, tenant: &str, provider_id: &str, stream_name: &str) -> JobRow {
    let tenant = tenant_id(tenant);
    let connection = store
        .get_connection(&tenant, &provider(provider_id), Owner::Company)
        .await
        .unwrap()
        .expect("the provider's connection exists");
    store.ensure_job(&tenant, connection.id, &stream(stream_name), "15m").await.unwrap()
}

fn records(items: &[(&str, Value)]) -> Vec<RecordInput> {
    items.iter().map(|(id, data)| RecordInput { external_id: (*id).into(), data: data.clone() }).collect()
}

fn sealed(bytes: &[u8]) -> SealedBlob {
    SealedBlob { key_id: "k1".into(), bytes: bytes.to_vec() }
}

struct Page {
    entity: EntityName,
    provider: ProviderId,
    records: Vec<RecordInput>,
}

impl Page {
    fn new(entity_name: &str, provider_id: &str, records: Vec<RecordInput>) -> Self {
        Self { entity: entity(entity_name), provider: provider(provider_id), records }
    }

    fn write<'a>(&'a self, job_id: i64, cursor: Option<&'a str>) -> PageWrite<'a> {
        PageWrite {
            entity: &self.entity,
            provider: &self.provider,
            records: &self.records,
            job_id,
            cursor,
            lease_owner: None,
            dead_letters: &[],
            position: tributary::store::PositionWrite::Keep,
            run: None,
            mark_seen: false,
        }
    }
}

fn outcome(inserted: u64, updated: u64, unchanged: u64) -> PageOutcome {
    PageOutcome { inserted, updated, unchanged }
}
