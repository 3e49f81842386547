//! The tenant lifecycle on both store backends: presets pinned by revision, rebase,
//! preset switch, idempotent apply, overrides stored as differences, credentials.

use std::path::Path;

use serde_json::json;
use tributary::config::{Catalog, ConfigDir};
use tributary::model::{AuditEntry, ConnectionStatus, EntityName, Owner, ProviderId, StreamName, TenantId};
use tributary::secrets::{Credentials, MasterKey};
use tributary::store::{PageWrite, RecordInput, Store};
use tributary::tenants::{ApplyOutcome, TenantError, Tenants};

use crate::config_model::config_copy;

crate::support::contract::contract! {
    store: [
        preset_revision_is_pinned_until_rebase,
        apply_is_idempotent_and_stores_only_differences,
        switching_preset_disables_the_dropped_provider_and_keeps_its_records,
        invalid_results_are_refused_and_nothing_is_written,
        a_tenant_can_add_a_provider_outside_its_preset,
        credentials_are_sealed_and_flip_the_connection_to_connected,
        a_preset_grants_roles_that_the_tenant_may_replace,
        the_developer_preset_grants_its_roles_to_a_new_tenant,
        every_change_queues_its_tenant_until_its_jobs_follow,
        a_full_pass_gives_every_tenant_exactly_its_jobs,
    ],
    url: [],
}

fn load(dir: &Path) -> Catalog {
    Catalog::load(&ConfigDir::Dir(dir.to_owned()), None).unwrap_or_else(|d| panic!("{d}"))
}

fn id(s: &str) -> TenantId {
    TenantId::parse(s).unwrap()
}

fn pid(s: &str) -> ProviderId {
    ProviderId::parse(s).unwrap()
}

fn spec(catalog: &Catalog, text: &str) -> tributary::config::TenantSpec {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.toml");
    std::fs::write(&file, text).unwrap();
    catalog.tenant_file(&file).unwrap_or_else(|d| panic!("{d}"))
}

const ACME: &str = include_str!("../../config/tenants/acme.toml");

async fn preset_revision_is_pinned_until_rebase(store: &Store) {
    let dir = config_copy();
    let before = load(dir.path());
    let tenants = Tenants::new(&before, store, "test");
    let first = tenants
        .create(&spec(&before, "id = \"first\"\nname = \"First\"\nsubdomain = \"first\"\npreset = \"aptem\"\n"))
        .await
        .unwrap();
    assert_eq!(first, before.presets.get("aptem").unwrap().revision);

    // The platform default for Aptem changes from hourly to every 2 hours.
    let presets = dir.path().join("presets.toml");
    let text = std::fs::read_to_string(&presets).unwrap();
    std::fs::write(&presets, text.replacen("schedule = \"hourly\"", "schedule = \"2h\"", 1)).unwrap();
    let after = load(dir.path());
    let new_revision = after.presets.get("aptem").unwrap().revision.clone();
    assert_ne!(first, new_revision);
    let tenants = Tenants::new(&after, store, "test");

    // The existing tenant keeps the old defaults; a new tenant gets the new ones.
    let view = tenants.require(&id("first")).await.unwrap();
    assert_eq!(view.tenant.preset_revision, first);
    assert_eq!(view.current_revision.as_deref(), Some(new_revision.as_str()));
    assert_eq!(view.effective.providers[&pid("aptem")].config.schedule.as_deref(), Some("hourly"));
    tenants
        .create(&spec(&after, "id = \"second\"\nname = \"Second\"\nsubdomain = \"second\"\npreset = \"aptem\"\n"))
        .await
        .unwrap();
    let second = tenants.require(&id("second")).await.unwrap();
    assert_eq!(second.effective.providers[&pid("aptem")].config.schedule.as_deref(), Some("2h"));

    // Rebase adopts the new revision and reports exactly what changed.
    let rebased = tenants.rebase(&id("first")).await.unwrap();
    assert_eq!((rebased.from_revision.as_str(), rebased.to_revision.as_str()), (first.as_str(), new_revision.as_str()));
    assert_eq!(rebased.changes.len(), 1, "{:?}", rebased.changes);
    assert_eq!(rebased.changes[0].path, "providers.aptem.schedule");
    assert_eq!(rebased.changes[0].before, Some(json!("hourly")));
    assert_eq!(rebased.changes[0].after, Some(json!("2h")));
    let view = tenants.require(&id("first")).await.unwrap();
    assert_eq!(view.tenant.preset_revision, new_revision);
    let audit = store.list_audit(Some(&id("first")), 10).await.unwrap();
    assert_eq!(audit.iter().map(|a| a.action.as_str()).collect::<Vec<_>>(), ["tenant.rebase", "tenant.create"]);
}

async fn apply_is_idempotent_and_stores_only_differences(store: &Store) {
    let catalog = load(&std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config"));
    let tenants = Tenants::new(&catalog, store, "test");
    let acme = spec(&catalog, ACME);
    assert!(matches!(tenants.apply(&acme).await.unwrap(), ApplyOutcome::Created { .. }));
    assert_eq!(tenants.apply(&acme).await.unwrap(), ApplyOutcome::Unchanged);
    let overrides = store.get_overrides(&id("acme")).await.unwrap();
    assert_eq!(
        overrides,
        vec![
            (
                pid("aptem"),
                json!({ "schedule": "every 15 minutes", "mappings": { "learner": { "division": "custom_field_123" } } })
            ),
            (
                pid("hubspot"),
                json!({ "mappings": { "employer": { "account_manager": "properties.account_manager" } } })
            ),
        ]
    );
    // Changing the file updates only what changed.
    let edited = spec(&catalog, &ACME.replace("every 15 minutes", "every 30 minutes"));
    let ApplyOutcome::Updated { changes } = tenants.apply(&edited).await.unwrap() else { panic!("expected an update") };
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].path, "providers.aptem.schedule");
    // HubSpot switched off while Aptem stays.
    let off = format!("{ACME}\n[providers.hubspot]\nenabled = false\n");
    let off = spec(&catalog, &off);
    tenants.apply(&off).await.unwrap();
    let conns = store.list_connections(&id("acme")).await.unwrap();
    let status = |p: &str| conns.iter().find(|c| c.provider.as_str() == p).map(|c| c.status);
    assert_eq!(status("aptem"), Some(ConnectionStatus::Pending));
    assert_eq!(status("hubspot"), Some(ConnectionStatus::Disabled));
    let audit = store.list_audit(Some(&id("acme")), 10).await.unwrap();
    assert_eq!(
        audit.iter().map(|a| a.action.as_str()).collect::<Vec<_>>(),
        // The example's `[roles]` are stored with the tenant.
        ["tenant.apply", "tenant.apply", "roles.set", "tenant.create"]
    );
}

async fn switching_preset_disables_the_dropped_provider_and_keeps_its_records(store: &Store) {
    let catalog = load(&std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config"));
    let tenants = Tenants::new(&catalog, store, "test");
    let globex = spec(&catalog, "id = \"globex\"\nname = \"Globex\"\nsubdomain = \"globex\"\npreset = \"bud\"\n");
    tenants.create(&globex).await.unwrap();
    let bud = store.get_connection(&id("globex"), &pid("bud"), Owner::Company).await.unwrap().unwrap();
    let job = store.ensure_job(&id("globex"), bud.id, &StreamName::parse("learners").unwrap(), "1h").await.unwrap();
    let records: Vec<RecordInput> = (0..3)
        .map(|i| RecordInput { external_id: format!("b{i}"), data: json!({ "external_id": format!("b{i}") }) })
        .collect();
    let learner = EntityName::parse("learner").unwrap();
    let page = PageWrite {
        entity: &learner,
        provider: &pid("bud"),
        records: &records,
        job_id: job.id,
        cursor: Some("c1"),
        lease_owner: None,
        dead_letters: &[],
        position: tributary::store::PositionWrite::Keep,
        run: None,
        mark_seen: false,
    };
    store.write_page(&id("globex"), &page).await.unwrap();

    let switched = tenants.set_preset(&id("globex"), "aptem").await.unwrap();
    assert_eq!(switched.disabled, [pid("bud")]);
    assert_eq!(switched.enabled, [pid("aptem")]);
    let conns = store.list_connections(&id("globex")).await.unwrap();
    let status = |p: &str| conns.iter().find(|c| c.provider.as_str() == p).map(|c| c.status);
    assert_eq!(status("bud"), Some(ConnectionStatus::Disabled));
    assert_eq!(status("aptem"), Some(ConnectionStatus::Pending));
    assert_eq!(store.count_records(&id("globex"), Some(&learner)).await.unwrap(), 3);
    let job = store.get_job(&id("globex"), job.id).await.unwrap().unwrap();
    assert!(!job.enabled);
    assert_eq!(job.cursor.as_deref(), Some("c1"));
    assert_eq!(tenants.require(&id("globex")).await.unwrap().tenant.preset.as_str(), "aptem");
    assert!(matches!(tenants.set_preset(&id("globex"), "nope").await, Err(TenantError::UnknownPreset { .. })));
}

async fn invalid_results_are_refused_and_nothing_is_written(store: &Store) {
    let catalog = load(&std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config"));
    let tenants = Tenants::new(&catalog, store, "test");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.toml");
    std::fs::write(&file, "id = \"bad\"\nname = \"Bad\"\nsubdomain = \"bad\"\npreset = \"aptem\"\n[providers.aptem.mappings.learner]\nexternal_id = false\n").unwrap();
    let err = catalog.tenant_file(&file).unwrap_err();
    assert!(
        err.iter().any(|d| d.path == "providers.aptem.mappings.learner" && d.message.contains("learner.external_id")),
        "{err}"
    );
    assert!(store.get_tenant(&id("bad")).await.unwrap().is_none());
    let ok = spec(&catalog, "id = \"dup\"\nname = \"Dup\"\nsubdomain = \"dup\"\npreset = \"aptem\"\n");
    tenants.create(&ok).await.unwrap();
    assert!(matches!(tenants.create(&ok).await, Err(TenantError::Exists(_))));
}

async fn a_tenant_can_add_a_provider_outside_its_preset(store: &Store) {
    let catalog = load(&std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config"));
    let tenants = Tenants::new(&catalog, store, "test");
    let initech = spec(
        &catalog,
        "id = \"initech\"\nname = \"Initech\"\nsubdomain = \"initech\"\npreset = \"onefile\"\n[providers.slack]\nenabled = true\n[providers.jira]\nenabled = true\nvariables = { site = \"initech\" }\n",
    );
    tenants.create(&initech).await.unwrap();
    let view = tenants.require(&id("initech")).await.unwrap();
    let enabled: Vec<_> = view.effective.enabled().map(|p| p.provider.to_string()).collect();
    assert_eq!(enabled, ["jira", "onefile", "slack"]);
    assert!(!view.effective.providers[&pid("slack")].in_preset);
    let conns = store.list_connections(&id("initech")).await.unwrap();
    assert_eq!(conns.len(), 3);
    // Jira without its `site` variable is refused.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.toml");
    std::fs::write(
        &file,
        "id = \"x\"\nname = \"X\"\nsubdomain = \"x\"\npreset = \"onefile\"\n[providers.jira]\nenabled = true\n",
    )
    .unwrap();
    let err = catalog.tenant_file(&file).unwrap_err();
    assert!(err.iter().any(|d| d.path == "providers.jira.variables.site"), "{err}");
}

async fn credentials_are_sealed_and_flip_the_connection_to_connected(store: &Store) {
    let catalog = load(&std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config"));
    Tenants::new(&catalog, store, "test").create(&spec(&catalog, ACME)).await.unwrap();
    let key = MasterKey::generate();
    let creds = Credentials::from_json(br#"{"api_token":"tok-123-secret"}"#).unwrap();
    let sealed = key.seal(&id("acme"), &pid("aptem"), &creds.to_json());
    assert!(!sealed.bytes.windows(14).any(|w| w == b"tok-123-secret"));
    let audit = AuditEntry {
        at: chrono::Utc::now(),
        actor: "test".into(),
        scope: None,
        outcome: tributary::model::AuditOutcome::Ok,
        message: None,
        action: "credentials.set".into(),
        tenant_id: Some(id("acme")),
        subject: Some("aptem".into()),
        details: json!({}),
    };
    let conn = store.set_credentials(&id("acme"), &pid("aptem"), Owner::Company, &sealed, &audit).await.unwrap();
    assert_eq!(conn.status, ConnectionStatus::Connected);
    assert_eq!(conn.credentials_version, 1);
    let (blob, version) = store.get_credentials(&id("acme"), &pid("aptem"), Owner::Company).await.unwrap().unwrap();
    assert_eq!(version, 1);
    let opened = Credentials::from_json(&key.open(&id("acme"), &pid("aptem"), &blob).unwrap()).unwrap();
    assert_eq!(opened.names().collect::<Vec<_>>(), ["api_token"]);
    // The blob cannot be opened as another tenant's.
    assert!(key.open(&id("globex"), &pid("aptem"), &blob).is_err());
}

async fn a_preset_grants_roles_that_the_tenant_may_replace(store: &Store) {
    let dir = config_copy();
    let presets = dir.path().join("presets.toml");
    let mut text = std::fs::read_to_string(&presets).unwrap();
    text.push_str(
        "\n[presets.aptem_hubspot.roles.sales]\nstreams = [\"hubspot.*\"]\n\
         [presets.aptem_hubspot.roles.developer]\nstreams = [\"hubspot.contacts\", \"aptem.learners\"]\n",
    );
    std::fs::write(&presets, &text).unwrap();
    let catalog = load(dir.path());
    let tenants = Tenants::new(&catalog, store, "test");
    let head = "id = \"grants\"\nname = \"Grants\"\nsubdomain = \"grants\"\npreset = \"aptem_hubspot\"\n";
    tenants.create(&spec(&catalog, head)).await.unwrap();
    let roles = |v: &tributary::tenants::TenantView| {
        v.roles.iter().map(|(r, s)| (r.as_str().to_owned(), s.clone())).collect::<Vec<_>>()
    };
    let view = tenants.require(&id("grants")).await.unwrap();
    assert_eq!(
        roles(&view),
        [
            ("developer".to_owned(), vec!["hubspot.contacts".to_owned(), "aptem.learners".to_owned()]),
            ("sales".to_owned(), vec!["hubspot.*".to_owned()]),
        ]
    );
    // The tenant's own grant replaces the preset's for that role only; an empty list
    // takes the grant away.
    let own = format!("{head}[roles.developer]\nstreams = []\n");
    tenants.apply(&spec(&catalog, &own)).await.unwrap();
    let view = tenants.require(&id("grants")).await.unwrap();
    assert_eq!(roles(&view), [("developer".to_owned(), vec![]), ("sales".to_owned(), vec!["hubspot.*".to_owned()])]);

    // A preset granting a provider it does not hold is refused, naming file and key.
    std::fs::write(&presets, format!("{text}\n[presets.aptem.roles.sales]\nstreams = [\"hubspot.*\"]\n")).unwrap();
    let err = Catalog::load(&ConfigDir::Dir(dir.path().to_owned()), None).unwrap_err().to_string();
    assert!(
        err.contains("presets.toml")
            && err.contains("presets.aptem.roles.sales.streams[0]")
            && err.contains("`hubspot`"),
        "{err}"
    );
}

/// The repository's `aptem_microsoft_github` preset: a tenant created on it starts with
/// the preset's `developer` and `sales` grants as `presets.toml` states them.
async fn the_developer_preset_grants_its_roles_to_a_new_tenant(store: &Store) {
    let dir = config_copy();
    let catalog = load(dir.path());
    let tenants = Tenants::new(&catalog, store, "test");
    let head = "id = \"devs\"\nname = \"Devs\"\nsubdomain = \"devs\"\npreset = \"aptem_microsoft_github\"\n";
    tenants.create(&spec(&catalog, head)).await.unwrap();
    let view = tenants.require(&id("devs")).await.unwrap();
    let roles: Vec<(String, Vec<String>)> =
        view.roles.iter().map(|(r, s)| (r.as_str().to_owned(), s.clone())).collect();
    let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        roles,
        [
            ("developer".to_owned(), owned(&["github.*", "microsoft.channels", "microsoft.channel_messages"])),
            ("sales".to_owned(), owned(&["microsoft.users", "microsoft.groups"])),
        ]
    );
}

/// The jobs of `tenant`'s enabled jobs as `provider.stream`, sorted.
async fn enabled_jobs(store: &Store, tenant: &str) -> Vec<String> {
    let mut jobs: Vec<String> = store
        .list_jobs(&id(tenant))
        .await
        .unwrap()
        .into_iter()
        .filter(|j| j.enabled)
        .map(|j| format!("{}.{}", j.provider, j.stream))
        .collect();
    jobs.sort();
    jobs
}

async fn every_change_queues_its_tenant_until_its_jobs_follow(store: &Store) {
    use tributary::app::{FIXED_JITTER, reconcile_queued, reconcile_tenant};
    let catalog = load(&std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config"));
    let tenants = Tenants::new(&catalog, store, "test");
    let queue = || async { store.queued_reconciles(100).await.unwrap() };

    // A change made by a process that died before reconciling: the tenant stays queued,
    // its jobs lag behind.
    tenants.create(&spec(&catalog, "id = \"q\"\nname = \"Q\"\nsubdomain = \"q\"\npreset = \"bud\"\n")).await.unwrap();
    let queued = queue().await;
    assert_eq!(
        queued.iter().map(|q| (q.tenant_id.as_str(), q.reason.as_str())).collect::<Vec<_>>(),
        [("q", "tenant.create")]
    );
    assert_eq!(enabled_jobs(store, "q").await, Vec::<String>::new());
    tenants.set_preset(&id("q"), "aptem").await.unwrap();
    let again = queue().await;
    assert_eq!(again.len(), 1);
    assert!(again[0].generation > queued[0].generation, "queued again: {again:?}");
    assert_eq!(again[0].reason, "tenant.set_preset");

    // Whoever takes the queue next (a daemon's tick) makes the jobs follow and empties it.
    let done = reconcile_queued(&catalog, store, FIXED_JITTER, 100).await.unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].result.as_ref().unwrap().created, 2, "{done:?}");
    assert_eq!(enabled_jobs(store, "q").await, ["aptem.learners", "aptem.organizations"]);
    assert_eq!(queue().await, []);

    // A queued entry read before a newer change is not removed by the older reconcile.
    tenants.set_preset(&id("q"), "bud").await.unwrap();
    let stale = queue().await.remove(0);
    tenants.set_preset(&id("q"), "aptem").await.unwrap();
    assert!(!store.finish_reconcile(&stale).await.unwrap());
    assert_eq!(queue().await.len(), 1);

    // Credentials, role grants and tenant changes queue too; the command's own reconcile
    // takes its tenant off the queue.
    reconcile_tenant(&catalog, store, &id("q"), FIXED_JITTER).await.unwrap();
    assert_eq!(queue().await, []);
    let key = MasterKey::generate();
    let aptem = pid("aptem");
    let creds = Credentials::from_json(br#"{"api_token":"t0ken"}"#).unwrap();
    let sealed = key.seal(&id("q"), &aptem, &creds.to_json());
    store
        .set_credentials(&id("q"), &aptem, Owner::Company, &sealed, &AuditEntry::new("test", "credentials.set"))
        .await
        .unwrap();
    assert_eq!(queue().await.iter().map(|q| q.reason.as_str()).collect::<Vec<_>>(), ["credentials.set"]);
    reconcile_tenant(&catalog, store, &id("q"), FIXED_JITTER).await.unwrap();
    assert_eq!(queue().await, []);
}

/// Enabled jobs of the tenant as `provider.stream schedule`, and whether each has a next
/// run time.
async fn scheduled_jobs(store: &Store, tenant: &str) -> Vec<(String, bool)> {
    let mut jobs: Vec<(String, bool)> = store
        .list_jobs(&id(tenant))
        .await
        .unwrap()
        .into_iter()
        .filter(|j| j.enabled)
        .map(|j| (format!("{}.{} {}", j.provider, j.stream, j.schedule), j.next_run_at.is_some()))
        .collect();
    jobs.sort();
    jobs
}

/// The daemon's full pass (start-up, reload) reads and writes tenants in batches and
/// computes each distinct configuration once: every tenant still gets exactly the jobs
/// its own reconciliation gives it, across batch boundaries, and a pass over tenants
/// that did not change writes nothing.
async fn a_full_pass_gives_every_tenant_exactly_its_jobs(store: &Store) {
    use tributary::app::{FIXED_JITTER, reconcile_in_batches, reconcile_tenant};
    use tributary::model::ReconcileCounts;
    use tributary::telemetry::Metrics;
    let catalog = load(&std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config"));
    let tenants = Tenants::new(&catalog, store, "test");
    let metrics = Metrics::new();
    let text = |t: &str, preset: &str, extra: &str| {
        format!("id = \"{t}\"\nname = \"{t}\"\nsubdomain = \"{t}\"\npreset = \"{preset}\"\n{extra}")
    };
    let all = ["pa", "pb", "pc", "pd", "pe"];
    for (t, preset) in
        [("pa", "aptem"), ("pb", "aptem_hubspot"), ("pc", "bud"), ("pd", "aptem_hubspot"), ("pe", "aptem")]
    {
        tenants.create(&spec(&catalog, &text(t, preset, ""))).await.unwrap();
    }
    let every_15 = "[providers.aptem]\nschedule = \"every 15 minutes\"\n";
    tenants.apply(&spec(&catalog, &text("pd", "aptem_hubspot", every_15))).await.unwrap();
    // The tenant's own reconciliation (configuration read alone) changes nothing after
    // the pass: the pass left exactly its jobs.
    let own_changes = || async {
        let mut changed = Vec::new();
        for t in all {
            let c = reconcile_tenant(&catalog, store, &id(t), FIXED_JITTER).await.unwrap();
            if c != (ReconcileCounts { unchanged: c.unchanged, ..Default::default() }) {
                changed.push((t, c));
            }
        }
        changed
    };

    // Five tenants in batches of two: three batches.
    let first = reconcile_in_batches(&catalog, store, false, FIXED_JITTER, &metrics, 2).await.unwrap();
    assert!(first.errors.is_empty(), "{:?}", first.errors);
    assert_eq!(first.tenants, 5);
    assert_eq!(store.queued_reconciles(100).await.unwrap(), [], "the pass takes the tenants off the queue");
    assert_eq!(own_changes().await, []);
    let aptem = vec![("aptem.learners hourly".to_owned(), true), ("aptem.organizations hourly".to_owned(), true)];
    assert_eq!(scheduled_jobs(store, "pa").await, aptem);
    assert_eq!(scheduled_jobs(store, "pe").await, aptem);
    let pd = scheduled_jobs(store, "pd").await;
    let pb = scheduled_jobs(store, "pb").await;
    assert_eq!(pd.len(), pb.len());
    assert!(pd.iter().all(|(j, due)| *due && (j.starts_with("hubspot.") || j.ends_with("every 15 minutes"))), "{pd:?}");
    assert!(pb.iter().all(|(j, due)| *due && !j.ends_with("every 15 minutes")), "{pb:?}");
    let bud = scheduled_jobs(store, "pc").await;
    assert!(!bud.is_empty() && bud.iter().all(|(j, _)| j.starts_with("bud.")), "{bud:?}");
    let total = [2, pb.len(), bud.len(), pd.len(), 2].iter().sum::<usize>() as u64;
    assert_eq!(first.jobs, ReconcileCounts { created: total, ..Default::default() });

    // Nothing changed: the next pass writes nothing.
    let again = reconcile_in_batches(&catalog, store, false, FIXED_JITTER, &metrics, 2).await.unwrap();
    assert_eq!(again.jobs, ReconcileCounts { unchanged: total, ..Default::default() });

    // Changes reach exactly their tenants: pb switches to Bud (its save disables the
    // dropped providers' jobs; the pass creates Bud's), pe drops a stream and moves to
    // every 15 minutes.
    tenants.set_preset(&id("pb"), "bud").await.unwrap();
    let drop_orgs = format!("{every_15}\n[providers.aptem.streams.organizations]\nenabled = false\n");
    tenants.apply(&spec(&catalog, &text("pe", "aptem", &drop_orgs))).await.unwrap();
    let third = reconcile_in_batches(&catalog, store, false, FIXED_JITTER, &metrics, 2).await.unwrap();
    assert!(third.errors.is_empty(), "{:?}", third.errors);
    let unchanged = total - pb.len() as u64 - 2;
    assert_eq!(
        third.jobs,
        ReconcileCounts { created: bud.len() as u64, updated: 1, disabled: 1, unchanged, ..Default::default() }
    );
    assert_eq!(store.queued_reconciles(100).await.unwrap(), []);
    assert_eq!(own_changes().await, []);
    assert_eq!(scheduled_jobs(store, "pb").await, bud);
    assert_eq!(scheduled_jobs(store, "pe").await, [("aptem.learners every 15 minutes".to_owned(), true)]);
    assert_eq!(scheduled_jobs(store, "pa").await, aptem);

    // The stream back: its job is enabled again (and takes the tenant's schedule).
    tenants.apply(&spec(&catalog, &text("pe", "aptem", every_15))).await.unwrap();
    let fourth = reconcile_in_batches(&catalog, store, false, FIXED_JITTER, &metrics, 3).await.unwrap();
    assert_eq!((fourth.jobs.created, fourth.jobs.updated, fourth.jobs.reenabled, fourth.jobs.disabled), (0, 0, 1, 0));
    assert_eq!(own_changes().await, []);
    assert_eq!(
        scheduled_jobs(store, "pe").await,
        [
            ("aptem.learners every 15 minutes".to_owned(), true),
            ("aptem.organizations every 15 minutes".to_owned(), true)
        ]
    );
}

/// On PostgreSQL a change that queues a tenant tells every replica when it commits: a
/// listener on the wake channel receives `reconcile`, so daemons do not wait for their tick.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_queued_change_notifies_every_replica_when_it_commits() {
    let pg = crate::support::postgres_store().await;
    let store = &pg.store;
    let mut listener = store.wake_listener().await.unwrap().expect("a listener on PostgreSQL");
    let catalog = load(&std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config"));
    let tenants = Tenants::new(&catalog, store, "test");
    tenants.create(&spec(&catalog, "id = \"n\"\nname = \"N\"\nsubdomain = \"n\"\npreset = \"bud\"\n")).await.unwrap();
    let note = tokio::time::timeout(std::time::Duration::from_secs(20), listener.recv()).await.unwrap().unwrap();
    assert_eq!(note.payload(), tributary::store::RECONCILE_PAYLOAD);
    // A refused change (an unknown preset) queues and notifies nothing.
    assert!(tenants.set_preset(&id("n"), "nope").await.is_err());
    tenants.set_preset(&id("n"), "aptem").await.unwrap();
    let note = tokio::time::timeout(std::time::Duration::from_secs(20), listener.recv()).await.unwrap().unwrap();
    assert_eq!(note.payload(), tributary::store::RECONCILE_PAYLOAD);
    assert_eq!(store.queued_reconciles(10).await.unwrap()[0].reason, "tenant.set_preset");
    drop(listener);
    pg.drop_db().await;
}
