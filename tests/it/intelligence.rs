//! Contributions from real runs and the company intelligence they build, on SQLite and
//! PostgreSQL: three users at one company on HubSpot (owner, user, viewer), one at a
//! second company, and one at both.

use std::collections::BTreeSet;

use serde_json::json;
use tributary::intelligence::aggregate::{Observation, conflicts, recompute};
use tributary::intelligence::{self, Integration, IntelligenceError};
use tributary::model::{ContributionKind as K, ContributionRow, ContributionStatus, Responsibility, RunRow};
use tributary::store::{ContributionFilter, Store};
use tributary::telemetry::Metrics;
use tributary_simulator::Faults;

use crate::support::world::audit;
use crate::users::runs::{World, hubspot, ok, tid, uid};

impl World {
    /// A sync of `user`'s connection followed by what the daemon does after a run.
    async fn sync_and_contribute(&self, tenant: &str, user: &str, full: bool, metrics: &Metrics) -> (RunRow, Vec<K>) {
        let run = self.run(tenant, Some(user), "contacts", full).await.unwrap();
        let made = intelligence::after_run(&self.store, &self.catalog, metrics, &run, Some(&uid(user))).await.unwrap();
        (run, made.iter().map(|c| c.kind).collect())
    }

    async fn assign(&self, tenant: &str, user: &str, duty: Responsibility) {
        self.store.assign_responsibility(&tid(tenant), &hubspot(), &uid(user), duty, None, None, "test").await.unwrap();
    }

    async fn intelligence(&self, tenant: &str) -> Integration {
        let rows = intelligence::integrations(&self.store, &tid(tenant), Some(&hubspot()), false).await.unwrap();
        assert_eq!(rows.len(), 1, "one integration at {tenant}");
        rows.into_iter().next().unwrap()
    }

    /// The stored (incrementally maintained) state and pairs equal ones rebuilt from
    /// scratch.
    async fn assert_incremental_equals_scratch(&self, tenant: &str) -> Integration {
        let stored = self.intelligence(tenant).await;
        let rows = self.store.current_contributions(&tid(tenant), &hubspot()).await.unwrap();
        let (state, pairs) = recompute(rows.iter().map(Observation::from));
        assert_eq!(stored.state, state, "{tenant}: incremental state ≠ from scratch");
        assert_eq!(stored.pairs, pairs, "{tenant}: incremental pairs ≠ from scratch");
        stored
    }

    async fn contributions_of(&self, tenant: &str, user: &str) -> Vec<ContributionRow> {
        let filter = ContributionFilter { user: Some(uid(user)), ..ContributionFilter::default() };
        self.store.contributions(&tid(tenant), &filter).await.unwrap()
    }
}

fn kinds(list: &[K]) -> BTreeSet<K> {
    list.iter().copied().collect()
}

async fn runs_feed_company_intelligence(store: &Store, url: &str) {
    let w = World::new(store.clone(), url.to_owned()).await;
    let sales = "[roles.sales]\nstreams = [\"hubspot.*\"]\n";
    w.apply("acme", sales).await;
    w.apply("globex", sales).await;
    for user in ["ann", "ben", "cat", "dan", "eve"] {
        w.store.add_user(&uid(user), user, None, &audit("user.add", &tid("acme"))).await.unwrap();
    }
    for (tenant, user, duty, schedule) in [
        ("acme", "ann", Responsibility::Owner, "hourly"),
        ("acme", "ben", Responsibility::User, "daily"),
        ("acme", "cat", Responsibility::Viewer, "hourly"),
        ("acme", "eve", Responsibility::User, "every 50 minutes"),
        ("globex", "dan", Responsibility::Owner, "hourly"),
        ("globex", "eve", Responsibility::Owner, "hourly"),
    ] {
        w.member(tenant, user, "sales").await;
        w.connect_on(tenant, user, Some(schedule)).await;
        w.credentials(tenant, Some(user), &w.sim.new_grant().unwrap()).await;
        w.assign(tenant, user, duty).await;
    }
    let metrics = Metrics::new();

    // Contribution kinds follow each user's responsibility; the viewer contributes nothing.
    let owner_kinds = kinds(&[K::DataSource, K::UsagePattern, K::PerformanceMetrics, K::Configuration]);
    let (run, ann) = w.sync_and_contribute("acme", "ann", false, &metrics).await;
    ok(&run);
    assert_eq!(kinds(&ann), owner_kinds);
    let (_, ben) = w.sync_and_contribute("acme", "ben", false, &metrics).await;
    assert_eq!(ben, vec![K::UsagePattern]);
    let (run, cat) = w.sync_and_contribute("acme", "cat", false, &metrics).await;
    ok(&run);
    assert!(cat.is_empty());
    assert!(w.contributions_of("acme", "cat").await.is_empty());
    let (_, dan) = w.sync_and_contribute("globex", "dan", false, &metrics).await;
    assert_eq!(kinds(&dan), owner_kinds);

    // Ann's data-source contribution describes her run.
    let ann_rows = w.contributions_of("acme", "ann").await;
    let source = ann_rows.iter().find(|c| c.kind == K::DataSource).unwrap();
    assert_eq!(source.quality, 100.0, "every record had its required fields");
    assert_eq!(source.data["records"], json!(run.stats.fetched));
    assert_eq!(source.data["connection_method"], "oauth2_refresh_token");
    assert_eq!(source.connection_id, Some(w.connection("acme", Some("ann")).await.id));

    // Eve, at both companies, contributes to each separately: as a user at acme, as an
    // owner at globex, each from that company's connection only.
    let (_, eve_acme) = w.sync_and_contribute("acme", "eve", false, &metrics).await;
    assert_eq!(eve_acme, vec![K::UsagePattern]);
    let (_, eve_globex) = w.sync_and_contribute("globex", "eve", false, &metrics).await;
    assert_eq!(kinds(&eve_globex), owner_kinds);
    for (tenant, other) in [("acme", "globex"), ("globex", "acme")] {
        let own = w.connection(tenant, Some("eve")).await.id;
        let foreign = w.connection(other, Some("eve")).await.id;
        let rows = w.contributions_of(tenant, "eve").await;
        assert!(!rows.is_empty());
        assert!(rows.iter().all(|c| c.connection_id == Some(own) && c.tenant.as_str() == tenant), "{tenant}: {rows:?}");
        assert!(rows.iter().all(|c| c.connection_id != Some(foreign)));
    }
    let acme = w.assert_incremental_equals_scratch("acme").await;
    let globex = w.assert_incremental_equals_scratch("globex").await;
    assert_eq!(acme.state.users.keys().collect::<Vec<_>>(), ["ann", "ben", "eve"]);
    assert_eq!(globex.state.users.keys().collect::<Vec<_>>(), ["dan", "eve"]);
    assert_eq!(acme.state.summary.quality, Some(100.0));
    assert_eq!(acme.state.summary.contributors_total, 3);

    // Ann syncs hourly, Ben daily: a schedule conflict with a resolution. Eve's 50
    // minutes is within 30 % of Ann's hour.
    let schedule: Vec<(String, String)> = conflicts(&acme.pairs)
        .filter(|(_, c)| c.topic == "schedule")
        .map(|(p, _)| (p.a.clone(), p.b.clone()))
        .collect();
    assert_eq!(schedule, [("ann".to_owned(), "ben".to_owned()), ("ben".to_owned(), "eve".to_owned())]);
    let (_, conflict) = conflicts(&acme.pairs).find(|(_, c)| c.topic == "schedule").unwrap();
    assert!(conflict.resolution.starts_with("align on `"), "{}", conflict.resolution);

    // Records missing a required field lower the data quality: a quarter of the contacts
    // come without the company name (employer.name is required).
    w.sim.set_faults(Faults::none().blank_field("properties.company", 4));
    let (run, _) = w.sync_and_contribute("acme", "ann", true, &metrics).await;
    w.sim.set_faults(Faults::none());
    ok(&run);
    let dead = run.stats.dead_lettered;
    assert!(dead > 0 && dead * 4 >= run.stats.fetched - 1, "dead-lettered {dead} of {}", run.stats.fetched);
    let acme = w.assert_incremental_equals_scratch("acme").await;
    let expected = 100.0 * (run.stats.fetched - dead) as f64 / run.stats.fetched as f64;
    let quality = acme.state.summary.quality.unwrap();
    assert!((quality - expected).abs() < 0.01, "quality {quality}, expected {expected}");
    let superseded = w
        .contributions_of("acme", "ann")
        .await
        .into_iter()
        .filter(|c| c.kind == K::DataSource && c.status == ContributionStatus::Superseded)
        .count();
    assert_eq!(superseded, 1, "the newer data-source contribution supersedes the first");

    // A failing run produces an error report whose severity follows the error class:
    // a refused grant is `auth` (critical) …
    let mut refused = w.sim.new_grant().unwrap();
    refused["refresh_token"] = json!("not-a-grant");
    w.credentials("acme", Some("ben"), &refused).await;
    let (run, made) = w.sync_and_contribute("acme", "ben", false, &metrics).await;
    assert_eq!(run.stats.error_class.as_deref(), Some("auth"));
    assert_eq!(kinds(&made), kinds(&[K::UsagePattern, K::ErrorReporting]));
    // … and 503s outlasting the retries are `transient` (medium), with the status and
    // endpoint.
    w.sim.set_faults(Faults::none().server_error_every(1));
    let (run, made) = w.sync_and_contribute("acme", "ann", false, &metrics).await;
    w.sim.set_faults(Faults::none());
    assert_eq!(run.stats.error_class.as_deref(), Some("transient"));
    assert!(made.contains(&K::ErrorReporting) && !made.contains(&K::DataSource), "{made:?}");
    let acme = w.assert_incremental_equals_scratch("acme").await;
    let patterns: Vec<(&str, &str, Option<i64>)> =
        acme.state.summary.error_patterns.iter().map(|e| (e.severity.as_str(), e.class.as_str(), e.status)).collect();
    assert_eq!(patterns, [("critical", "auth", None), ("medium", "transient", Some(503))]);
    let transient = &acme.state.summary.error_patterns[1];
    assert_eq!(transient.users, ["ann"]);
    assert!(transient.endpoint.as_deref().unwrap_or_default().contains("/crm/v3/objects/contacts"), "{transient:?}");

    // Review: a viewer may not; the owner rejects Ben's usage report, which stops
    // counting, and the aggregate still equals a recomputation.
    let bens_usage = w
        .contributions_of("acme", "ben")
        .await
        .into_iter()
        .find(|c| c.kind == K::UsagePattern && c.status == ContributionStatus::Active)
        .unwrap();
    let err = intelligence::review(&w.store, &tid("acme"), bens_usage.id, true, &uid("cat")).await.unwrap_err();
    assert!(err.to_string().contains("that takes responsibility owner or reviewer (has: viewer)"), "{err}");
    let err = intelligence::review(&w.store, &tid("acme"), bens_usage.id, true, &uid("ben")).await.unwrap_err();
    assert!(matches!(err, IntelligenceError::NotAllowed(_)), "{err}");
    assert!(err.to_string().contains("cannot review it"), "{err}");
    let (row, _) = intelligence::review(&w.store, &tid("acme"), bens_usage.id, false, &uid("ann")).await.unwrap();
    assert_eq!(row.status, ContributionStatus::Rejected);
    let acme = w.assert_incremental_equals_scratch("acme").await;
    assert!(!acme.state.users["ben"].contains_key(&K::UsagePattern));
    assert!(conflicts(&acme.pairs).all(|(p, c)| c.topic != "schedule" || (p.a != "ben" && p.b != "ben")));

    // Globex never saw acme's contributions.
    let globex = w.assert_incremental_equals_scratch("globex").await;
    assert_eq!(globex.state.summary.quality, Some(100.0));
    assert!(globex.state.summary.error_patterns.is_empty());

    // Contributions are counted by kind.
    let text = metrics.encode();
    assert!(
        text.contains("tributary_contributions_total{provider=\"hubspot\",kind=\"data_source\"} 4"),
        "ann ×2, dan, eve at globex:\n{text}"
    );
}

crate::support::contract::contract! {
    store: [],
    url: [runs_feed_company_intelligence],
}

/// The command line and the daemon: responsibilities assigned, `sync --user` and the
/// daemon's runs contributing, contributions listed and reviewed, intelligence shown
/// by the CLI and over the control socket (to operators and the tenant's admins only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_and_the_daemon_contribute_review_and_show() {
    use tributary::control::protocol::{Command as Ctl, Scope};

    use crate::daemon::{Fixture, NEVER, eventually, started_runs, target};

    let sim =
        tributary_simulator::start(tributary_simulator::SimConfig::new(tributary_simulator::Provider::HubSpot, 60))
            .await
            .unwrap();
    let fx = Fixture::sqlite("").await;
    let body = format!(
        "preset = \"aptem_hubspot\"\n[providers.aptem]\nschedule = \"{NEVER}\"\n\
         [providers.hubspot]\nbase_url = \"{}\"\nschedule = \"{NEVER}\"\n\
         [roles.sales]\nstreams = [\"hubspot.*\"]\n",
        sim.base_url()
    );
    fx.connect("acme", &body, &[]).await;
    for (user, duty) in [("ann", "owner"), ("ben", "user")] {
        fx.ok(&["users", "add", user, "--name", user, "--tenant", "acme", "--role", "sales"], "").await;
        fx.ok(&["users", "connect", user, "--tenant", "acme", "--provider", "hubspot"], "").await;
        let grant = sim.new_grant().unwrap().to_string();
        fx.ok(&["credentials", "set", "--tenant", "acme", "--provider", "hubspot", "--user", user], &grant).await;
        let out = fx
            .ok(
                &[
                    "responsibilities",
                    "assign",
                    "--tenant",
                    "acme",
                    "--provider",
                    "hubspot",
                    "--user",
                    user,
                    "--as",
                    duty,
                ],
                "",
            )
            .await;
        assert!(out.contains(&format!("{user} is {duty} of acme/hubspot")), "{out}");
    }

    // `sync --user` says what the run contributed.
    let out = fx
        .ok(&["sync", "--tenant", "acme", "--provider", "hubspot", "--user", "ann", "--stream", "contacts"], "")
        .await;
    assert!(
        out.contains("hubspot/contacts: contributed data_source, usage_pattern, performance_metrics, configuration"),
        "{out}"
    );

    // The daemon's runs contribute too: Ben's connection reports its usage.
    let daemon = fx.start("d", 2).await;
    let reply = daemon.ok(Ctl::Trigger(target("acme", Some("hubspot"), Some("contacts")))).await;
    assert_eq!(started_runs(&reply).len(), 2, "Ann's and Ben's contacts jobs: {reply}");
    let event = eventually("Ben's contribution from a daemon run", || async {
        daemon.events("contribution recorded").into_iter().find(|e| e["fields"]["user"] == "ben")
    })
    .await;
    assert_eq!(event["fields"]["kind"], "usage_pattern");

    let list = |args: &'static [&'static str]| {
        let fx = &fx;
        async move {
            let text = fx.ok(&[&["--json", "contributions", "list", "--tenant", "acme"][..], args].concat(), "").await;
            serde_json::from_str::<serde_json::Value>(&text).unwrap()
        }
    };
    let bens = list(&["--user", "ben", "--status", "active"]).await;
    let bens = bens.as_array().unwrap();
    assert_eq!(bens.len(), 1, "{bens:?}");
    assert_eq!(bens[0]["kind"], "usage_pattern");
    let id = bens[0]["id"].as_i64().unwrap().to_string();
    let err = fx.command(&["contributions", "reject", &id, "--tenant", "acme", "--by", "ben"]).output().await.unwrap();
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("cannot review it"));
    let out = fx.ok(&["contributions", "reject", &id, "--tenant", "acme", "--by", "ann"], "").await;
    assert!(out.contains(&format!("contribution {id} (usage_pattern by ben) rejected")), "{out}");
    let bad = fx.command(&["contributions", "list", "--tenant", "acme", "--kind", "gossip"]).output().await.unwrap();
    assert!(
        String::from_utf8_lossy(&bad.stderr)
            .contains("unknown contribution kind `gossip` (expected one of: data_source")
    );

    // The intelligence, from the CLI and over the socket.
    let shown = fx.ok(&["--json", "intelligence", "show", "--tenant", "acme"], "").await;
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown[0]["provider"], "hubspot");
    assert_eq!(shown[0]["quality"], 100.0);
    assert_eq!(shown[0]["quality_band"], "excellent");
    let users: Vec<&str> =
        shown[0]["contributors"].as_array().unwrap().iter().map(|c| c["user"].as_str().unwrap()).collect();
    assert_eq!(users, ["ann"], "Ben's only contribution was rejected");
    let text = fx.ok(&["intelligence", "show", "--tenant", "acme", "--recompute"], "").await;
    assert!(text.contains("acme/hubspot") && text.contains("quality 100.0 (excellent)"), "{text}");
    let admin = Scope::Tenant { tenant: "acme".into() };
    let reply = daemon.request(admin, Ctl::Intelligence(target("acme", Some("hubspot"), None))).await;
    assert!(reply.ok, "{reply:?}");
    assert_eq!(reply.data.unwrap()[0]["quality"], 100.0);
    let other = Scope::Tenant { tenant: "globex".into() };
    let reply = daemon.request(other, Ctl::Intelligence(target("acme", None, None))).await;
    assert!(!reply.ok && reply.error.unwrap().contains("cannot act on tenant `acme`"));
    drop(daemon);
    fx.finish().await;
}
