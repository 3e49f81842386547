//! Stopping: signals become control messages; a drain stops claiming and cancels runs at
//! their next page boundary.

use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Daemon;
use crate::control::ControlMessage;

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
