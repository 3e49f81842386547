//! Stopping: signals become control messages; a drain stops claiming and cancels runs at
//! their next page boundary; runs still in flight at the deadline (or at a second stop
//! signal) are stopped where they are and their run rows closed.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Daemon;
use crate::control::ControlMessage;
use crate::model::RunOutcome;
use crate::telemetry::RunFinished;

/// Signals become control messages: SIGHUP reload, SIGTERM/SIGINT drain (a second one
/// exits at once), SIGUSR1 triggers every enabled job.
pub(super) async fn signals(tx: mpsc::Sender<ControlMessage>, shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut hup), Ok(mut term), Ok(mut int), Ok(mut usr1)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::user_defined1()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    let mut stops = 0;
    loop {
        let msg = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = hup.recv() => ControlMessage::Reload,
            _ = usr1.recv() => ControlMessage::TriggerAll,
            _ = term.recv() => { stops += 1; if stops == 1 { ControlMessage::Drain } else { ControlMessage::ExitNow } }
            _ = int.recv() => { stops += 1; if stops == 1 { ControlMessage::Drain } else { ControlMessage::ExitNow } }
        };
        if tx.send(msg).await.is_err() {
            return;
        }
    }
}

impl Daemon {
    /// Stops the runs still in flight without waiting for a page boundary: their tasks
    /// are aborted (an unfinished page write rolls back) and their run rows closed as
    /// cancelled, with the cursor their last committed page left on the job.
    pub(super) async fn stop_in_flight(&mut self, why: &str) {
        self.tasks.abort_all();
        let mut finished = Vec::new();
        while let Some(joined) = self.tasks.join_next().await {
            // A run that ended before the abort took effect completes as usual.
            if let Ok(done) = joined {
                finished.push(done);
            }
        }
        for done in finished {
            self.complete(done).await;
        }
        for r in self.running.values() {
            let Some((run_id, mut stats)) = r.progress.lock().ok().and_then(|p| Some((p.run_id?, p.stats.clone())))
            else {
                continue;
            };
            let job = &r.claimed.job;
            stats.error = Some(why.to_owned());
            let closed = tokio::time::timeout(Duration::from_secs(2), async {
                if let Ok(Some(row)) = self.store.get_job(&job.tenant_id, job.id).await {
                    stats.cursor_after = row.cursor;
                }
                self.store.finish_run(&job.tenant_id, run_id, RunOutcome::Cancelled, &stats).await
            })
            .await;
            match closed {
                Ok(Ok(row)) => RunFinished { run: &row }.emit(&self.metrics),
                Ok(Err(e)) => tracing::warn!(run_id = %run_id, "closing a stopped run failed: {e}"),
                Err(_) => tracing::warn!(run_id = %run_id, "closing a stopped run timed out"),
            }
        }
    }

    pub(super) fn start_drain(&mut self) {
        if self.draining.is_some() {
            return;
        }
        tracing::info!(
            in_flight = self.running.len(),
            deadline_secs = self.settings.drain_deadline_secs,
            "draining: no new runs; in-flight runs stop at their next page"
        );
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        self.ready.store(false, Ordering::Relaxed);
        self.draining = Some(Instant::now());
        for r in self.running.values() {
            r.cancel.cancel();
        }
    }
}
