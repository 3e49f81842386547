//! `sync`: one run (or one per enabled stream) in the foreground, with a progress bar
//! on a terminal and plain log lines otherwise; non-zero exit when a run fails.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use super::output::outln;
use super::progress::Progress;
use super::{Global, output};
use crate::config::RoleGrants;
use crate::model::{Owner, ProviderId, RunOutcome, RunRow, RunTrigger, StreamName, TenantId, UserId};
use crate::scheduler::lease::ForegroundLease;
use crate::scheduler::stream_access;
use crate::sync::{SyncRequest, Syncer};
use crate::tenants::Tenants;

/// Arguments of `tributary sync`.
#[derive(Debug, clap::Args)]
pub struct SyncArgs {
    #[arg(long)]
    pub tenant: String,
    #[arg(long)]
    pub provider: String,
    /// One stream; every enabled stream of the provider when omitted (parents first).
    #[arg(long)]
    pub stream: Option<String>,
    /// Ignore the stored cursor and read everything again.
    #[arg(long)]
    pub full_refresh: bool,
    /// Run this user's own connection (its credentials, and only the streams their role
    /// is granted) instead of the company's.
    #[arg(long)]
    pub user: Option<String>,
}

pub async fn run(g: &Global, args: SyncArgs) -> anyhow::Result<ExitCode> {
    let catalog = g.catalog()?;
    let store = g.store(&catalog).await?;
    let tenant = TenantId::parse(&args.tenant)?;
    let provider = ProviderId::parse(&args.provider)?;
    let user = args.user.as_deref().map(UserId::parse).transpose()?;
    let streams: Vec<StreamName> = match &args.stream {
        Some(s) => vec![StreamName::parse(s)?],
        None => {
            let view = Tenants::new(&catalog, &store, super::actor()).require(&tenant).await?;
            let p = view
                .effective
                .providers
                .get(&provider)
                .filter(|p| p.config.is_enabled())
                .ok_or_else(|| anyhow::anyhow!("provider `{provider}` is not enabled for tenant `{tenant}`"))?;
            let manifest = catalog
                .manifests
                .get(provider.as_str())
                .ok_or_else(|| anyhow::anyhow!("no manifest for `{provider}`"))?;
            let mut names: Vec<StreamName> =
                p.config.enabled_streams().filter_map(|(n, _)| StreamName::parse(n).ok()).collect();
            if let Some(user) = &user {
                // A user connection runs the streams its owner's role is granted.
                let connection =
                    store.get_connection(&tenant, &provider, Owner::User(user)).await?.ok_or_else(|| {
                        anyhow::anyhow!(
                            "user `{user}` has no connection to `{provider}` at tenant `{tenant}` (create it with \
                         `tributary users connect {user} --tenant {tenant} --provider {provider}`)"
                        )
                    })?;
                let access = stream_access(p, &connection, &RoleGrants::from_stored(&view.roles));
                names.retain(|n| access.iter().any(|a| a.stream == n.as_str() && a.denied.is_none()));
                if names.is_empty() {
                    let why = access.iter().find_map(|a| a.denied.as_ref()).map(|d| d.describe(&tenant));
                    anyhow::bail!(
                        "user `{user}`'s connection to `{provider}` at tenant `{tenant}` may sync none of its \
                         enabled streams{}",
                        why.map(|w| format!(": {w}")).unwrap_or_default()
                    );
                }
            }
            names.sort_by_key(|n| manifest.streams.get(n).is_some_and(|s| s.parent.is_some()));
            names
        }
    };
    let key = g.master_key(&catalog, &store).await?;
    // One process, one set of limits; on PostgreSQL, next to running daemons, it leases
    // its share of every quota like one more replica.
    let daemon = &catalog.settings.daemon;
    let limits = Arc::new(match &store {
        crate::store::Store::Postgres(_) => crate::http::RateLimiters::leased(),
        crate::store::Store::Sqlite(_) => crate::http::RateLimiters::new(),
    });
    let budgets_stop = CancellationToken::new();
    let budgets = tokio::spawn(crate::http::budgets::run(
        store.clone(),
        limits.clone(),
        crate::scheduler::lease::instance_id("sync-"),
        budgets_stop.clone(),
    ));
    let mut syncer = Syncer::new(&catalog, &store, &key)?.with_limits(limits);
    syncer.retry = crate::http::RetryPolicy::from_settings(daemon);
    // SIGINT/SIGTERM: the run in progress stops at the next page boundary (its page
    // and position commit) and no further stream starts; a second signal exits at once.
    let cancel = CancellationToken::new();
    let stopped_by = Arc::new(AtomicU8::new(0));
    let watcher = tokio::spawn(watch_signals(cancel.clone(), stopped_by.clone()));
    let mut rows: Vec<RunRow> = Vec::new();
    let (lease_for, heartbeat) = (Duration::from_secs(daemon.lease_secs), Duration::from_secs(daemon.heartbeat_secs));
    for stream in streams {
        if cancel.is_cancelled() {
            break;
        }
        // The job's lease, as a daemon worker holds it; closes runs left by dead processes.
        let target = (&tenant, &provider, &stream);
        let lease = ForegroundLease::take(&catalog, &store, target, user.as_ref(), lease_for, heartbeat).await?;
        if let Some(n) = lease.as_ref().map(|l| l.abandoned).filter(|n| *n > 0) {
            eprintln!("{provider}/{stream}: closed {n} run(s) left `running` by a process that died");
        }
        let req = SyncRequest {
            tenant: tenant.clone(),
            provider: provider.clone(),
            stream: stream.clone(),
            trigger: RunTrigger::Cli,
            full_refresh: args.full_refresh,
            lease_owner: lease.as_ref().map(|l| l.owner().to_owned()),
            cancel: Some(cancel.clone()),
            owner: user.clone(),
        };
        let watch = std::sync::Arc::new(crate::http::WaitWatch::default());
        let mut progress = Progress::start(tenant.as_str(), provider.as_str(), stream.as_str(), watch.clone());
        let started = Instant::now();
        let row =
            crate::http::RATE_LIMIT_WATCH.scope(watch, syncer.run(&req, &mut |id, s| progress.update(id, s))).await;
        progress.finish();
        if let Some(lease) = lease
            && let Err(e) = lease.release().await
        {
            eprintln!("warning: releasing the lease on {provider}/{stream} failed (it expires on its own): {e}");
        }
        let row = row?;
        if user.is_some() {
            match crate::intelligence::after_run(&store, &catalog, &syncer.metrics, &row, user.as_ref()).await {
                Ok(made) if !made.is_empty() && !g.json => {
                    let kinds: Vec<&str> = made.iter().map(|c| c.kind.as_str()).collect();
                    outln!("{provider}/{stream}: contributed {}", kinds.join(", "));
                }
                Ok(_) => {}
                Err(e) => eprintln!("warning: recording contributions failed: {e}"),
            }
        }
        if !g.json {
            let s = &row.stats;
            let secs = started.elapsed().as_secs_f64();
            outln!(
                "{provider}/{stream}: {} in {secs:.1}s — fetched {}, inserted {}, updated {}, unchanged {}, filtered {}, dead-lettered {}, {} pages, {} HTTP calls, {} retries, {} rate-limit waits ({} ms){}",
                row.outcome,
                s.fetched,
                s.inserted,
                s.updated,
                s.unchanged,
                s.filtered,
                s.dead_lettered,
                s.pages,
                s.http_calls,
                s.retries,
                s.rate_limit_waits,
                s.rate_limit_wait_ms,
                s.error.as_ref().map(|e| format!("\n  error: {e}")).unwrap_or_default()
            );
            if let Some(note) = &s.note {
                outln!("  note: {note}");
            }
        }
        rows.push(row);
    }
    watcher.abort();
    budgets_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), budgets).await;
    store.close().await;
    if g.json {
        output::json(&json!(rows))?;
    }
    let signal = stopped_by.load(Ordering::SeqCst);
    if signal != 0 {
        return Ok(ExitCode::from(signal));
    }
    let failed = rows.iter().any(|r| !matches!(r.outcome, RunOutcome::Success | RunOutcome::Partial));
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// Waits for SIGINT or SIGTERM: the first cancels `cancel` and records the exit code
/// it calls for (130 or 143) in `stopped_by`; the second exits the process at once.
async fn watch_signals(cancel: CancellationToken, stopped_by: Arc<AtomicU8>) {
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        eprintln!("warning: cannot listen for SIGINT/SIGTERM; a signal stops the sync without committing");
        return;
    };
    let next = async |int: &mut tokio::signal::unix::Signal, term: &mut tokio::signal::unix::Signal| {
        tokio::select! {
            _ = int.recv() => ("SIGINT", 130u8),
            _ = term.recv() => ("SIGTERM", 143u8),
        }
    };
    let (name, code) = next(&mut int, &mut term).await;
    stopped_by.store(code, Ordering::SeqCst);
    cancel.cancel();
    eprintln!("{name}: stopping at the next page boundary (the page in flight commits); signal again to exit at once");
    let (name, code) = next(&mut int, &mut term).await;
    eprintln!("{name}: exiting at once; the run continues from its last committed page next time");
    std::process::exit(i32::from(code));
}
