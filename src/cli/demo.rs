//! `demo`: everything working with no credentials. Starts a simulator for every
//! provider on loopback, creates demo tenants against them in `./tributary-demo/`,
//! runs the daemon, and prints where to look. Data keeps changing upstream, so the
//! one-minute schedule shows incremental runs. Webhooks flow both ways (see
//! [`webhooks`]): the simulated HubSpot, Slack and Jira send signed webhooks that
//! trigger runs, and a local receiver verifies the daemon's outbound deliveries.
//! Writes flow back (see [`writes`]): a HubSpot contact and a Jira comment go through
//! the outbox to the simulators. Ctrl-C drains and stops.

mod webhooks;
mod writes;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::Utc;
use serde_json::json;

use super::Global;
use crate::app::{DaemonOptions, Endpoints, reconcile};
use crate::model::{AuditEntry, JobFilter, ProviderId, Responsibility, RoleName, TenantId, TriggerKind, UserId};
use crate::secrets::{Credentials, MasterKey, Sealed};
use crate::store::Store;
use crate::tenants::Tenants;
use tributary_simulator::{Faults, Provider, SimConfig, SimHandle, start};

/// Arguments of `tributary demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Where the demo keeps its database, key, socket and tenant files (recreated).
    #[arg(long, default_value = "tributary-demo")]
    pub dir: PathBuf,
    /// Records per simulated stream.
    #[arg(long, default_value_t = 2000)]
    pub records: u64,
    /// Address of /metrics (falls back to a free port when taken).
    #[arg(long, default_value = "127.0.0.1:9187")]
    pub listen: SocketAddr,
    /// Seconds between the simulated providers' webhooks (HubSpot, Slack and Jira in turn).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub webhook_every: u64,
}

/// One simulator per provider, in `Provider::ALL` order.
struct Sims {
    by_provider: Vec<(Provider, SimHandle)>,
}

impl Sims {
    fn get(&self, p: Provider) -> &SimHandle {
        let i = self.by_provider.iter().position(|(q, _)| *q == p).unwrap_or(0);
        &self.by_provider[i].1
    }
}

pub async fn run(g: &Global, args: DemoArgs) -> anyhow::Result<ExitCode> {
    let catalog = g.catalog()?;
    if args.dir.exists() {
        std::fs::remove_dir_all(&args.dir).with_context(|| format!("cannot reset {}", args.dir.display()))?;
    }
    std::fs::create_dir_all(args.dir.join("tenants"))?;
    let dir = std::fs::canonicalize(&args.dir)?;

    tracing::info!(providers = Provider::ALL.len(), "demo: starting a simulator for every provider");
    let mut by_provider = Vec::new();
    for p in Provider::ALL {
        let mut config = SimConfig::new(p, args.records);
        if p == Provider::HubSpot {
            // A little real-world weather: throttling now and then.
            config = config.faults(Faults::none().rate_limit_every(97));
        }
        by_provider.push((p, start(config).await?));
    }
    let sims = Sims { by_provider };

    let url = format!("sqlite://{}", dir.join("demo.db").display());
    let store = Store::connect(&url).await?;
    let (key, _) = MasterKey::locate(None, None, &dir)?;
    let key = Arc::new(key);

    let tenants = Tenants::new(&catalog, &store, "demo");
    for (id, text) in tenant_files(&sims) {
        let path = dir.join("tenants").join(format!("{id}.toml"));
        std::fs::write(&path, text)?;
        let spec = catalog.tenant_file(&path).map_err(|d| anyhow::anyhow!("{d}"))?;
        tenants.apply(&spec).await?;
    }
    for (tenant, provider, p) in [
        ("acme", "aptem", Provider::Aptem),
        ("acme", "hubspot", Provider::HubSpot),
        ("globex", "bud", Provider::Bud),
        ("globex", "salesforce", Provider::Salesforce),
        ("initech", "onefile", Provider::OneFile),
        ("initech", "slack", Provider::Slack),
        ("initech", "jira", Provider::Jira),
        ("hooli", "aptem", Provider::Aptem),
        ("hooli", "microsoft", Provider::Microsoft),
        ("hooli", "github", Provider::GitHub),
    ] {
        // With the secret each provider signs its webhooks with (HubSpot: the client secret).
        let creds = sims.get(p).credentials_with_webhook_secret();
        store_credentials(&store, &key, tenant, provider, None, &creds).await?;
    }
    demo_users(&store, &key, sims.get(Provider::HubSpot)).await?;
    let mut settings = catalog.settings.daemon.clone();
    settings.apply_tenant_files = false;
    // Jobs exist now; run everything once right away, then on schedule.
    reconcile(&catalog, &store, false, Duration::from_secs(60), &crate::telemetry::Metrics::new()).await?;
    store.trigger_jobs(&JobFilter::default(), TriggerKind::Manual, Utc::now()).await?;

    let listen = match std::net::TcpListener::bind(args.listen) {
        Ok(l) => l.local_addr()?,
        Err(_) => SocketAddr::from(([127, 0, 0, 1], 0)),
    };
    let socket = dir.join("tributary.sock");
    let changes = tokio::spawn(keep_changing(sims.get(Provider::Aptem).clone()));
    let receiver = webhooks::start_receiver(&store, &key, "acme").await?;
    let receiver_text = format!("{} (endpoint {})", receiver.url, receiver.endpoint);
    let sources = vec![
        webhooks::Source { sim: sims.get(Provider::HubSpot).clone(), tenant: "acme", entity: "employer" },
        webhooks::Source { sim: sims.get(Provider::Slack).clone(), tenant: "initech", entity: "message" },
        webhooks::Source { sim: sims.get(Provider::Jira).clone(), tenant: "initech", entity: "issue" },
    ];
    let (ready, address) = tokio::sync::oneshot::channel();
    let every = Duration::from_secs(args.webhook_every);
    let inbound = tokio::spawn(webhooks::send_webhooks(sources, store.clone(), address, every));
    let (writes_ready, writes_go) = tokio::sync::oneshot::channel();
    let planned = vec![
        writes::Planned::hubspot_contact(sims.get(Provider::HubSpot).clone()),
        writes::Planned::jira_comment(sims.get(Provider::Jira).clone()),
    ];
    let outbound_writes = tokio::spawn(writes::round_trip(catalog.clone(), store.clone(), planned, writes_go));
    let opts = DaemonOptions {
        config_dir: g.config_dir(),
        connectors: g.connectors_dir(),
        store,
        key,
        settings,
        webhooks: crate::config::WebhookSettings { allow_private_targets: true, ..catalog.settings.webhooks.clone() },
        socket,
        http_listen: listen,
    };
    let dir_text = args.dir.display().to_string();
    let sim_lines: Vec<String> =
        sims.by_provider.iter().map(|(p, h)| format!("    {:<11} {}", p.id(), h.api_base())).collect();
    let every = args.webhook_every;
    crate::app::run(opts, move |e: &Endpoints| {
        let _ = ready.send(e.webhooks);
        print_welcome(e, &dir_text, &sim_lines, &receiver_text, every);
        let _ = writes_ready.send(());
    })
    .await?;
    changes.abort();
    inbound.abort();
    outbound_writes.abort();
    receiver.task.abort();
    for (_, h) in &sims.by_provider {
        h.shutdown();
    }
    Ok(ExitCode::SUCCESS)
}

fn print_welcome(e: &Endpoints, dir: &str, sims: &[String], receiver: &str, every: u64) {
    let db = format!("sqlite://{dir}/demo.db");
    println!(
        "\ntributary demo is running — four tenants, every provider simulated, no credentials needed.\n\n  \
         simulators:\n{}\n\n  \
         tenants:     acme (Aptem + HubSpot, custom field → learner.division, Aptem every minute;\n               \
         users ann, ben, cat with their own HubSpot connections feeding its intelligence)\n               \
         globex (Bud + Salesforce), initech (OneFile + Slack + Jira),\n               \
         hooli (Aptem + Microsoft 365 + GitHub: Graph delta queries, GitHub conditional requests;\n               \
         its preset grants developers GitHub and Teams, sales the directory)\n               \
         their files: {dir}/tenants/*.toml\n\n  \
         webhooks in: every {every} s the simulated HubSpot (acme), Slack or Jira (initech) changes a record\n               \
         and sends its signed webhook to http://{}/webhooks/<tenant>/<provider>; the triggered\n               \
         run syncs it (log lines `demo: webhook sent`, then `demo: webhook change synced` with the latency)\n  \
         webhooks out: a local receiver at {receiver} is acme's endpoint for every event;\n               \
         it verifies each Standard Webhooks signature and prints one line per delivery\n    \
         tributary --database-url {db} webhooks list --tenant acme\n  \
         write-back:  a HubSpot contact (acme) and a Jira comment (initech) go through the outbox;\n               \
         the daemon's write worker sends them; the `write-back:` lines below say how each ended\n               \
         (and acme's receiver gets the `write.succeeded` event)\n    \
         tributary --database-url {db} writes list\n\n  \
         look at it:\n    \
         tributary ctl --socket {} status\n    \
         tributary ctl --socket {} trigger acme aptem\n    \
         tributary ctl --socket {} intelligence acme hubspot\n    \
         tributary --database-url {db} runs list\n    \
         tributary --database-url {db} records list --tenant acme --entity learner\n    \
         curl http://{}/metrics\n\n  \
         Ctrl-C drains and stops.\n",
        sims.join("\n"),
        e.webhooks,
        e.socket.display(),
        e.socket.display(),
        e.socket.display(),
        e.http,
    );
}

/// Demo tenant files pointing every connector at its simulator.
fn tenant_files(s: &Sims) -> Vec<(&'static str, String)> {
    let api = |p| s.get(p).api_base();
    let base = |p| s.get(p).base_url();
    vec![
        (
            "acme",
            format!(
                r#"id = "acme"
name = "Acme Training Ltd"
subdomain = "acme"
preset = "aptem_hubspot"
timezone = "Europe/London"

[providers.aptem]
base_url = "{}"
schedule = "every 1 minute"

[providers.aptem.mappings.learner]
division = "custom_field_123"

[providers.hubspot]
base_url = "{}"

[providers.hubspot.mappings.employer]
account_manager = "properties.account_manager"

# People's own HubSpot connections sync what their role is granted.
[roles.sales]
streams = ["hubspot.*"]

[roles.developer]
streams = ["hubspot.contacts"]
"#,
                api(Provider::Aptem),
                base(Provider::HubSpot)
            ),
        ),
        (
            "globex",
            format!(
                r#"id = "globex"
name = "Globex Apprenticeships"
subdomain = "globex"
preset = "bud_salesforce"

[providers.bud]
base_url = "{}"
variables = {{ auth_url = "{}" }}

[providers.salesforce]
variables = {{ login_url = "{}" }}
"#,
                base(Provider::Bud),
                base(Provider::Bud),
                base(Provider::Salesforce)
            ),
        ),
        (
            "initech",
            format!(
                r#"id = "initech"
name = "Initech Skills"
subdomain = "initech"
preset = "onefile"

[providers.onefile]
base_url = "{}"

[providers.slack]
enabled = true
base_url = "{}"

[providers.jira]
enabled = true
base_url = "{}"
"#,
                api(Provider::OneFile),
                api(Provider::Slack),
                base(Provider::Jira)
            ),
        ),
        (
            "hooli",
            format!(
                r#"id = "hooli"
name = "Hooli Academy"
subdomain = "hooli"
preset = "aptem_microsoft_github"

[providers.aptem]
base_url = "{}"

# Microsoft Graph: users, groups and Teams read by delta queries after the first pass.
[providers.microsoft]
base_url = "{}"
variables = {{ login_url = "{}" }}
schedule = "every 2 minutes"

# GitHub: issues read conditionally (an unchanged listing answers 304 and costs nothing).
[providers.github]
base_url = "{}"
schedule = "every 2 minutes"
"#,
                api(Provider::Aptem),
                api(Provider::Microsoft),
                base(Provider::Microsoft),
                base(Provider::GitHub)
            ),
        ),
    ]
}

/// Three people at acme with their own HubSpot connections, schedules and
/// responsibilities, so the company intelligence has contributors from the first runs:
/// Ann (sales, owner, every minute), Ben (developer — contacts only —, user, every five
/// minutes: a schedule conflict with Ann's) and Cat (sales, viewer: contributes nothing).
async fn demo_users(store: &Store, key: &MasterKey, hubspot: &SimHandle) -> anyhow::Result<()> {
    let acme = TenantId::parse("acme")?;
    let provider = ProviderId::parse("hubspot")?;
    for (id, name, role, schedule, duty) in [
        ("ann", "Ann Lee", "sales", "every 1 minute", Responsibility::Owner),
        ("ben", "Ben Ode", "developer", "every 5 minutes", Responsibility::User),
        ("cat", "Cat Roy", "sales", "every 1 minute", Responsibility::Viewer),
    ] {
        let user = UserId::parse(id)?;
        let audit = AuditEntry {
            at: Utc::now(),
            actor: "demo".into(),
            scope: Some("local".into()),
            outcome: crate::model::AuditOutcome::Ok,
            message: None,
            action: "user.add".into(),
            tenant_id: Some(acme.clone()),
            subject: Some(id.into()),
            details: json!({}),
        };
        store.add_user(&user, name, None, &audit).await?;
        store.set_membership(&acme, &user, &RoleName::parse(role)?, &audit).await?;
        store.connect_user(&acme, &provider, &user, Some(schedule), &audit).await?;
        store_credentials(
            store,
            key,
            "acme",
            "hubspot",
            Some(&user),
            &hubspot.new_grant().context("the HubSpot simulator issues grants")?,
        )
        .await?;
        store.assign_responsibility(&acme, &provider, &user, duty, None, None, "demo").await?;
    }
    Ok(())
}

async fn store_credentials(
    store: &Store,
    key: &MasterKey,
    tenant: &str,
    provider: &str,
    user: Option<&UserId>,
    secret: &serde_json::Value,
) -> anyhow::Result<()> {
    let tenant = TenantId::parse(tenant)?;
    let provider = ProviderId::parse(provider)?;
    let creds = Credentials::from_json(secret.to_string().as_bytes())?;
    let owner = crate::model::Owner::of(user);
    let sealed = key.seal_as(Sealed::Credentials, &tenant, &provider, owner, &creds.to_json());
    let audit = AuditEntry {
        at: Utc::now(),
        actor: "demo".into(),
        scope: Some("local".into()),
        outcome: crate::model::AuditOutcome::Ok,
        message: None,
        action: "credentials.set".into(),
        tenant_id: Some(tenant.clone()),
        subject: Some(provider.to_string()),
        details: json!({ "key_id": key.id() }),
    };
    store.set_credentials(&tenant, &provider, owner, &sealed, &audit).await?;
    Ok(())
}

/// Upstream keeps changing: a few learners every 20 seconds.
async fn keep_changing(aptem: SimHandle) {
    let mut i = 0u64;
    loop {
        tokio::time::sleep(Duration::from_secs(20)).await;
        for _ in 0..5 {
            i = (i * 7919 + 13) % aptem.record_count("learners").max(1);
            aptem.modify("learners", i);
        }
    }
}
