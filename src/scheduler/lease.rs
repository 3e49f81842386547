//! Leases held outside the daemon's claims: a foreground run (`tributary sync`) takes
//! its job's lease like a daemon worker does, renews it by heartbeat while it runs and
//! gives it back at the end. So a job never runs twice at once, every page write of the
//! run is fenced on the lease, and a run whose process dies leaves an expiring lease
//! behind, from which the next holder (or the daemon's sweep) closes it as `abandoned`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::{Catalog, RoleGrants};
use crate::model::{ConnectionStatus, JobRow, Owner, ProviderId, StreamName, TenantId, UserId};
use crate::store::{Store, StoreError};
use crate::tenants::{TenantError, Tenants};

/// An id naming one process that holds leases: `<prefix><host>-<pid>-<random>`, so an
/// operator told who holds a job sees which machine and process it is.
pub fn instance_id(prefix: &str) -> String {
    let host = host_name();
    let id = uuid::Uuid::now_v7().simple().to_string();
    format!("{prefix}{host}-{}-{}", std::process::id(), &id[id.len() - 6..])
}

/// This machine's name (`/etc/hostname`, else `$HOSTNAME`, else `host`).
pub fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "host".into())
}

/// Whether `holder` (an [`instance_id`]) names a process on this host that no longer
/// runs. Another host's holders, and ids of another shape, are never judged dead here.
fn holder_died_here(holder: &str) -> bool {
    let mut parts = holder.rsplitn(3, '-');
    let (Some(_random), Some(pid), Some(named)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else { return false };
    let mine = instance_id("");
    let Some(host) = mine.rsplitn(3, '-').nth(2) else { return false };
    let on_this_host = named == host || named.strip_prefix("sync-") == Some(host);
    on_this_host && pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Why a foreground lease was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Someone else runs the job now.
    #[error(
        "`{provider}/{stream}` of tenant `{tenant}` is already running: {held}; \
         wait for that run to end (or stop it) and try again"
    )]
    Busy { tenant: TenantId, provider: ProviderId, stream: StreamName, held: StoreError },
    #[error(transparent)]
    Tenant(#[from] TenantError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A lease on one job held by this process for a foreground run, renewed in the
/// background until [`ForegroundLease::release`] (or drop, which stops the renewal and
/// lets the lease expire).
pub struct ForegroundLease {
    store: Store,
    job: JobRow,
    owner: String,
    lost: Arc<AtomicBool>,
    heartbeat: tokio::task::JoinHandle<()>,
    /// Runs of the job that were still marked `running` (their process died) and were
    /// closed as `abandoned` when the lease was taken.
    pub abandoned: u64,
}

impl ForegroundLease {
    /// Takes the lease on the job of `stream` on `user`'s (or the company's) connection
    /// to `provider` at `tenant`, for `lease` at a time, renewed every `heartbeat`; then
    /// closes the job's runs left `running` by a dead process as `abandoned`.
    ///
    /// `Ok(None)` when there is no such job and none can be made (no connection, the
    /// provider or stream not enabled): the run reports why when it starts.
    pub async fn take(
        catalog: &Catalog,
        store: &Store,
        target: (&TenantId, &ProviderId, &StreamName),
        user: Option<&UserId>,
        lease: Duration,
        heartbeat: Duration,
    ) -> Result<Option<Self>, LeaseError> {
        let (tenant, provider, stream) = target;
        let Some(job) = find_job(catalog, store, tenant, provider, user, stream).await? else {
            return Ok(None);
        };
        let owner = instance_id("sync-");
        let now = Utc::now();
        let mut claimed = store.claim_job(tenant, job.id, &owner, now, until(now, lease), None).await;
        // A holder on this machine whose process is gone (a SIGKILLed `tributary sync`)
        // cannot renew: its lease is taken over at once instead of after it expires.
        if let Err(StoreError::LeaseHeld { owner: holder, .. }) = &claimed
            && holder_died_here(holder)
        {
            claimed = store.claim_job(tenant, job.id, &owner, now, until(now, lease), Some(holder)).await;
        }
        let job = match claimed {
            Ok(job) => job,
            Err(held @ StoreError::LeaseHeld { .. }) => {
                return Err(LeaseError::Busy {
                    tenant: tenant.clone(),
                    provider: provider.clone(),
                    stream: stream.clone(),
                    held,
                });
            }
            Err(e) => return Err(e.into()),
        };
        let lost = Arc::new(AtomicBool::new(false));
        let heartbeat = tokio::spawn(renew(
            store.clone(),
            tenant.clone(),
            job.id,
            owner.clone(),
            lease,
            heartbeat.max(Duration::from_secs(1)),
            lost.clone(),
        ));
        let mut taken = Self { store: store.clone(), job, owner, lost, heartbeat, abandoned: 0 };
        // We hold the lease: any run of the job still marked `running` has no live holder.
        let error = match &taken.job.reclaimed_from {
            Some(previous) => {
                format!("abandoned: {previous} stopped renewing its lease and {} took the job", taken.owner)
            }
            None => format!("abandoned: no process held the job's lease when {} took it", taken.owner),
        };
        taken.abandoned = store.close_abandoned_runs(tenant, taken.job.id, &error).await?;
        Ok(Some(taken))
    }

    /// The lease holder's id: pass it as the run's `lease_owner` so its writes are fenced.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The job as it was when the lease was taken.
    pub fn job(&self) -> &JobRow {
        &self.job
    }

    /// Whether another process took the lease (the run's writes then fail).
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }

    /// Stops renewing and gives the lease back (a trigger on the job stays).
    pub async fn release(self) -> Result<(), StoreError> {
        self.heartbeat.abort();
        self.store.release_lease(&self.job.tenant_id, self.job.id, &self.owner).await.map(|_| ())
    }
}

impl Drop for ForegroundLease {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

fn until(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(lease).unwrap_or_else(|_| chrono::Duration::seconds(60))
}

/// Renews the lease every `every` until it is lost or the task is aborted.
async fn renew(
    store: Store,
    tenant: TenantId,
    job_id: i64,
    owner: String,
    lease: Duration,
    every: Duration,
    lost: Arc<AtomicBool>,
) {
    loop {
        tokio::time::sleep(every).await;
        match store.renew_lease(&tenant, job_id, &owner, until(Utc::now(), lease)).await {
            Ok(()) => {}
            Err(StoreError::LeaseLost { .. }) => {
                lost.store(true, Ordering::Relaxed);
                tracing::warn!(tenant = %tenant, job_id, "the job's lease was taken by another process");
                return;
            }
            Err(e) => tracing::warn!(tenant = %tenant, job_id, "lease renewal failed (will retry): {e}"),
        }
    }
}

/// The job a foreground run of `stream` uses, made as the run would make it if the
/// reconciler has not yet; `None` if the run cannot start at all.
async fn find_job(
    catalog: &Catalog,
    store: &Store,
    tenant: &TenantId,
    provider: &ProviderId,
    user: Option<&UserId>,
    stream: &StreamName,
) -> Result<Option<JobRow>, LeaseError> {
    let Some(connection) = store.get_connection(tenant, provider, Owner::of(user)).await? else {
        return Ok(None);
    };
    let jobs = store.list_jobs(tenant).await?;
    if let Some(job) = jobs.into_iter().find(|j| j.connection_id == connection.id && &j.stream == stream) {
        return Ok(Some(job));
    }
    // Only a job the run would make: a connection that may run, a stream it may sync.
    if matches!(connection.status, ConnectionStatus::Disabled | ConnectionStatus::Pending)
        || !connection.has_credentials
    {
        return Ok(None);
    }
    let view = Tenants::new(catalog, store, "sync").require(tenant).await?;
    let Some(effective) = view.effective.providers.get(provider).filter(|p| p.config.is_enabled()) else {
        return Ok(None);
    };
    let grants = RoleGrants::from_stored(&view.roles);
    let access = super::stream_access(effective, &connection, &grants);
    if !access.iter().any(|a| a.stream == stream.as_str() && a.denied.is_none()) {
        return Ok(None);
    }
    let config = &effective.config;
    let schedule = connection
        .schedule
        .clone()
        .or_else(|| config.streams.get(stream.as_str()).and_then(|s| s.schedule.clone()))
        .or_else(|| config.schedule.clone())
        .unwrap_or_default();
    Ok(Some(store.ensure_job(tenant, connection.id, stream, &schedule).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_holders_on_this_host_whose_process_is_gone_are_dead() {
        let mine = instance_id("sync-");
        let host = mine.strip_prefix("sync-").and_then(|m| m.rsplitn(3, '-').nth(2)).expect("a host in the id");
        // No process has this pid (Linux pids stay below 2^22).
        assert!(holder_died_here(&format!("sync-{host}-999999999-abc123")));
        assert!(holder_died_here(&format!("{host}-999999999-abc123")), "a daemon's id too");
        assert!(!holder_died_here(&mine), "this process is alive");
        assert!(!holder_died_here(&format!("{host}-1-abc123")), "pid 1 runs");
        assert!(!holder_died_here("sync-another-host.example-999999999-abc123"), "another host is not judged");
        assert!(!holder_died_here("not an id"));
    }
}
