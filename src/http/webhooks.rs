//! Outbound event webhooks: signing (Standard Webhooks), the SSRF guard and the delivery
//! worker that drains the store's outbox.
//!
//! Every attempt of a message carries the same `webhook-id` (the outbox row's id), a
//! fresh `webhook-timestamp` (Unix seconds) and `webhook-signature: v1,<base64>`: the
//! HMAC-SHA256, keyed with the base64-decoded part of the endpoint's `whsec_…` secret,
//! of `{id}.{timestamp}.{body}`. A 2xx delivers the message; 410 Gone, or the retry
//! schedule spent, fails it and disables its endpoint; anything else is retried after
//! the next delay of the schedule. Redirects are not followed.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::webhook::hmac_sha256;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::Utc;
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

use crate::config::WebhookSettings;
use crate::secrets::MasterKey;
use crate::store::{Store, WebhookAttemptRecord, WebhookMessage, WebhookSettle};
use crate::telemetry::{DeliveryLabels, Metrics};

/// The prefix of a signing secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// A new random signing secret, `whsec_` and 32 random bytes in base64.
pub fn generate_secret() -> Zeroizing<String> {
    use chacha20poly1305::aead::Generate;
    let bytes = chacha20poly1305::Key::generate();
    Zeroizing::new(format!("{SECRET_PREFIX}{}", B64.encode(bytes.as_slice())))
}

/// The key bytes of a `whsec_<base64>` secret; `None` if it is not one.
pub fn secret_key(secret: &str) -> Option<Zeroizing<Vec<u8>>> {
    let b64 = secret.strip_prefix(SECRET_PREFIX)?;
    B64.decode(b64).ok().filter(|k| !k.is_empty()).map(Zeroizing::new)
}

/// The `webhook-signature` header value: `v1,<base64 HMAC-SHA256 of id.timestamp.body>`.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    let mac = hmac_sha256(key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]);
    format!("v1,{}", B64.encode(mac))
}

/// Whether `ip` is private, loopback, link-local, unspecified, multicast or otherwise
/// not a public unicast address.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64.0.0/10, shared address space
                || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18.0.0/15, benchmarking
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] == 0x64 && s[1] == 0xff9b) // NAT64 of any IPv4
        }
    }
}

/// Resolves names like the system resolver, then drops private addresses: the check
/// happens on the addresses actually connected to, so a name that resolves to a private
/// address after registration (DNS rebinding) is refused too.
struct PublicOnly;

/// The resolver's refusal of a name that resolves only to private addresses.
#[derive(Debug)]
struct PrivateTarget(String);

impl std::fmt::Display for PrivateTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` resolves only to private or local addresses", self.0)
    }
}

impl std::error::Error for PrivateTarget {}

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = addrs.into_iter().filter(|a| !is_private(a.ip())).collect();
            if public.is_empty() {
                return Err(Box::new(PrivateTarget(host)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Checks a target URL: http(s), with a host; with `allow_private` false, a literal IP
/// must be public (names are checked when they are resolved, at connect time).
pub fn check_url(url: &str, allow_private: bool) -> Result<reqwest::Url, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("invalid URL `{url}`: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("`{url}`: only http and https targets are supported"));
    }
    let Some(host) = parsed.host_str() else {
        return Err(format!("`{url}` has no host"));
    };
    let ip = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().ok();
    if ip.is_none() && !allow_private && (host.eq_ignore_ascii_case("localhost") || host.ends_with(".localhost")) {
        return Err(format!("`{url}` is a local target (set `[webhooks] allow_private_targets`)"));
    }
    if let Some(ip) = ip
        && !allow_private
        && is_private(ip)
    {
        return Err(format!("`{url}` is a private or local address (set `[webhooks] allow_private_targets`)"));
    }
    Ok(parsed)
}

/// The HTTP client deliveries use: no redirects, no proxy, the attempt timeout, and
/// (unless private targets are allowed) the public-only resolver.
pub fn client(settings: &WebhookSettings) -> reqwest::Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(settings.timeout_secs.max(1)))
        .connect_timeout(Duration::from_secs(settings.timeout_secs.clamp(1, 10)))
        .user_agent(concat!("tributary-webhooks/", env!("CARGO_PKG_VERSION")));
    if !settings.allow_private_targets {
        b = b.dns_resolver(PublicOnly);
    }
    b.build()
}

/// What one attempt got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub status: Option<u16>,
    pub latency_ms: i64,
    pub error: Option<String>,
    pub outcome: Outcome,
}

/// How an attempt ended (the `outcome` label of its metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx.
    Delivered,
    /// Another status.
    Failed,
    /// 410 Gone.
    Gone,
    /// No answer within the timeout.
    Timeout,
    /// A private or local target, refused before connecting.
    RefusedTarget,
    /// No answer for another reason (connection refused, TLS, the secret).
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::Gone => "gone",
            Self::Timeout => "timeout",
            Self::RefusedTarget => "refused_target",
            Self::Error => "error",
        }
    }

    /// Whether the attempt reached the network and waited for an answer.
    fn waited(self) -> bool {
        matches!(self, Self::Delivered | Self::Failed | Self::Gone | Self::Timeout)
    }

    fn of_status(status: u16) -> Self {
        match status {
            200..=299 => Self::Delivered,
            410 => Self::Gone,
            _ => Self::Failed,
        }
    }
}

/// Makes one attempt of `message`.
pub async fn attempt(
    client: &reqwest::Client,
    key: &MasterKey,
    settings: &WebhookSettings,
    message: &WebhookMessage,
) -> Attempt {
    let started = Instant::now();
    let fail = |outcome: Outcome, error: String| Attempt { status: None, latency_ms: 0, error: Some(error), outcome };
    let url = match check_url(&message.url, settings.allow_private_targets) {
        Ok(u) => u,
        // A malformed URL cannot be registered; what fails here is a private target.
        Err(e) => return fail(Outcome::RefusedTarget, e),
    };
    let secret = match key.open_webhook_secret(&message.endpoint_id, &message.sealed_secret()) {
        Ok(s) => s,
        Err(e) => return fail(Outcome::Error, format!("the endpoint's secret does not open: {e}")),
    };
    let Some(secret_key) = std::str::from_utf8(&secret).ok().and_then(secret_key) else {
        return fail(Outcome::Error, "the endpoint's secret is not a `whsec_` secret".into());
    };
    let timestamp = Utc::now().timestamp();
    let signature = sign(&secret_key, &message.id, timestamp, message.payload.as_bytes());
    let sent = client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", &message.id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(message.payload.clone())
        .send()
        .await;
    let latency_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    match sent {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let error = (!resp.status().is_success()).then(|| format!("HTTP {status}"));
            Attempt { status: Some(status), latency_ms, error, outcome: Outcome::of_status(status) }
        }
        Err(e) => {
            let mut text = e.to_string();
            let mut outcome = if e.is_timeout() { Outcome::Timeout } else { Outcome::Error };
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                if s.is::<PrivateTarget>() {
                    outcome = Outcome::RefusedTarget;
                }
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            Attempt { status: None, latency_ms, error: Some(text), outcome }
        }
    }
}

/// What follows an attempt, given the attempts made before it.
pub fn settle_for(settings: &WebhookSettings, previous_attempts: i64, got: &Attempt) -> WebhookSettle {
    match got.status {
        Some(s) if (200..300).contains(&s) => WebhookSettle::Delivered,
        Some(410) => WebhookSettle::GiveUp("the endpoint answered 410 Gone".into()),
        _ => {
            let index = usize::try_from(previous_attempts).unwrap_or(usize::MAX);
            match settings.retry_schedule_secs.get(index) {
                Some(&delay) => WebhookSettle::Retry(
                    Utc::now() + chrono::Duration::seconds(i64::try_from(delay).unwrap_or(i64::MAX / 1000)),
                ),
                None => WebhookSettle::GiveUp(format!(
                    "delivery failed {} times (last: {})",
                    previous_attempts + 1,
                    got.error.as_deref().unwrap_or("no response")
                )),
            }
        }
    }
}

/// How often a worker reads the outbox's pending count for its gauge (one count over
/// the partial index of pending messages).
pub const PENDING_REFRESH: Duration = Duration::from_secs(5);

/// Counters a delivery worker keeps; with [`DeliveryCounters::exporting`], also the
/// delivery metrics of `/metrics`.
#[derive(Default)]
pub struct DeliveryCounters {
    pub delivered: std::sync::atomic::AtomicU64,
    pub failed_attempts: std::sync::atomic::AtomicU64,
    pub endpoints_disabled: std::sync::atomic::AtomicU64,
    metrics: Option<Arc<Metrics>>,
}

impl std::fmt::Debug for DeliveryCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryCounters")
            .field("delivered", &self.delivered)
            .field("failed_attempts", &self.failed_attempts)
            .field("endpoints_disabled", &self.endpoints_disabled)
            .field("exporting", &self.metrics.is_some())
            .finish()
    }
}

impl DeliveryCounters {
    /// Counters that also feed `metrics`.
    pub fn exporting(metrics: Arc<Metrics>) -> Self {
        Self { metrics: Some(metrics), ..Self::default() }
    }

    /// Counts an attempt and what follows from it.
    fn record(&self, got: &Attempt, settle: &WebhookSettle) {
        use std::sync::atomic::Ordering::Relaxed;
        match settle {
            WebhookSettle::Delivered => self.delivered.fetch_add(1, Relaxed),
            WebhookSettle::Retry(_) => self.failed_attempts.fetch_add(1, Relaxed),
            WebhookSettle::GiveUp(_) => {
                self.endpoints_disabled.fetch_add(1, Relaxed);
                self.failed_attempts.fetch_add(1, Relaxed)
            }
        };
        let Some(m) = &self.metrics else { return };
        m.webhook_attempts.get_or_create(&DeliveryLabels { outcome: got.outcome.as_str().to_owned() }).inc();
        if got.outcome.waited() {
            m.webhook_delivery_duration
                .observe(Duration::from_millis(got.latency_ms.max(0).unsigned_abs()).as_secs_f64());
        }
        if matches!(settle, WebhookSettle::GiveUp(_)) {
            m.webhook_endpoints_disabled.inc();
        }
    }

    /// Sets the pending gauge from the store.
    async fn refresh_pending(&self, store: &Store) {
        let Some(m) = &self.metrics else { return };
        match store.pending_webhook_count().await {
            Ok(n) => {
                m.webhook_outbox_pending.set(n);
            }
            Err(e) => tracing::debug!("the webhook outbox's pending count was not read: {e}"),
        }
    }
}

/// How long the claim loop waits for half its slots before claiming for fewer.
const CLAIM_WAIT: Duration = Duration::from_millis(5);

/// Attempts settled in one store transaction at most.
const SETTLE_BATCH: usize = 256;

/// Delivers due outbox messages until `cancel`: keeps up to `concurrency` attempts in
/// flight, claiming (under `owner`'s lease) as many due messages as there are free
/// slots, so one slow endpoint holds one slot, not a batch. Finished attempts go to a
/// settler that records whatever has finished meanwhile in one transaction (one commit
/// for many deliveries). Polls every `poll` when nothing is due. On `cancel` it stops
/// claiming, lets the attempts in flight finish and records them.
pub async fn run_worker(
    store: Store,
    key: Arc<MasterKey>,
    settings: WebhookSettings,
    owner: String,
    poll: Duration,
    counters: Arc<DeliveryCounters>,
    cancel: CancellationToken,
) {
    let client = match client(&settings) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("webhook deliveries disabled: cannot build the HTTP client: {e}");
            return;
        }
    };
    let concurrency = settings.concurrency.clamp(1, 4096);
    let slots = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let (done, finished) = tokio::sync::mpsc::channel::<WebhookAttemptRecord>(concurrency * 4);
    let settler = tokio::spawn(settle_finished(store.clone(), owner.clone(), finished));
    let mut pending_read: Option<Instant> = None;
    loop {
        // Wait for half the slots (briefly), so that under load one claim takes several
        // messages rather than one transaction per message; then take every free one.
        let half = u32::try_from(concurrency.div_ceil(2)).unwrap_or(1);
        let mut held = tokio::select! {
            got = tokio::time::timeout(CLAIM_WAIT, Arc::clone(&slots).acquire_many_owned(half)) => match got {
                Ok(Ok(p)) => p,
                Ok(Err(_)) => break,
                Err(_) => tokio::select! {
                    slot = Arc::clone(&slots).acquire_owned() => match slot { Ok(p) => p, Err(_) => break },
                    () = cancel.cancelled() => break,
                },
            },
            () = cancel.cancelled() => break,
        };
        if let Ok(more) =
            Arc::clone(&slots).try_acquire_many_owned(u32::try_from(slots.available_permits()).unwrap_or(0))
        {
            held.merge(more);
        }
        if pending_read.is_none_or(|at| at.elapsed() >= PENDING_REFRESH) {
            counters.refresh_pending(&store).await;
            pending_read = Some(Instant::now());
        }
        let free = held.num_permits();
        let until = Utc::now() + chrono::Duration::seconds(i64::try_from(settings.lease_secs.max(1)).unwrap_or(60));
        let claimed = match store.claim_webhooks(&owner, until, i64::try_from(free).unwrap_or(1)).await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!("claiming webhook messages failed: {e}");
                Vec::new()
            }
        };
        if claimed.is_empty() {
            drop(held);
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(poll) => continue,
            }
        }
        for message in claimed {
            // At most `free` messages were claimed, one slot each.
            let Some(slot) = held.split(1) else { break };
            let (client, key, settings, counters, done) =
                (client.clone(), key.clone(), settings.clone(), counters.clone(), done.clone());
            tokio::spawn(async move {
                let got = attempt(&client, &key, &settings, &message).await;
                let settle = settle_for(&settings, message.attempts, &got);
                counters.record(&got, &settle);
                match &settle {
                    WebhookSettle::Delivered => {}
                    WebhookSettle::Retry(at) => {
                        tracing::debug!(
                            message = %message.id, endpoint = %message.endpoint_id, retry_at = %at,
                            "webhook attempt failed: {}", got.error.as_deref().unwrap_or("")
                        );
                    }
                    WebhookSettle::GiveUp(reason) => {
                        tracing::warn!(
                            message = %message.id, endpoint = %message.endpoint_id, event = %message.event_type,
                            "webhook endpoint disabled: {reason}"
                        );
                    }
                }
                let record = WebhookAttemptRecord {
                    message: message.id,
                    status: got.status,
                    latency_ms: got.latency_ms,
                    error: got.error,
                    settle,
                };
                let _ = done.send(record).await;
                drop(slot);
            });
        }
    }
    // Every slot back: no attempt is in flight any more.
    let _ = slots.acquire_many(u32::try_from(concurrency).unwrap_or(u32::MAX)).await;
    drop(done);
    let _ = settler.await;
}

/// Records finished attempts: waits for one, takes whatever else has finished (up to
/// [`SETTLE_BATCH`]) and settles them together. Ends when every sender is gone.
async fn settle_finished(store: Store, owner: String, mut finished: tokio::sync::mpsc::Receiver<WebhookAttemptRecord>) {
    let mut batch = Vec::with_capacity(SETTLE_BATCH);
    while finished.recv_many(&mut batch, SETTLE_BATCH).await > 0 {
        match store.settle_webhooks(&owner, &batch).await {
            Ok(kept) => {
                for (record, kept) in batch.iter().zip(kept) {
                    if !kept {
                        tracing::debug!(message = %record.message, "webhook lease lost before settling");
                    }
                }
            }
            // The messages stay leased; when the lease lapses they are attempted again,
            // with the same webhook-id.
            Err(e) => tracing::warn!(attempts = batch.len(), "recording webhook attempts failed: {e}"),
        }
        batch.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_round_trip_and_differ() {
        let a = generate_secret();
        let b = generate_secret();
        assert_ne!(*a, *b);
        assert_eq!(secret_key(&a).map(|k| k.len()), Some(32));
        assert!(secret_key("nope").is_none());
    }

    #[test]
    fn private_addresses_are_refused() {
        for url in [
            "http://127.0.0.1/x",
            "http://10.1.2.3/",
            "http://[::1]/",
            "http://169.254.169.254/",
            "http://localhost:80/",
        ] {
            assert!(check_url(url, false).is_err(), "{url}");
            assert!(check_url(url, true).is_ok(), "{url}");
        }
        assert!(check_url("https://93.184.216.34/hook", false).is_ok());
        assert!(check_url("ftp://example.com/", true).is_err());
    }

    #[test]
    fn every_outcome_is_a_label_of_the_metric() {
        use Outcome::*;
        for o in [Delivered, Failed, Gone, Timeout, RefusedTarget, Error] {
            assert!(crate::telemetry::DELIVERY_OUTCOMES.contains(&o.as_str()), "{o:?}");
        }
        assert_eq!(Outcome::of_status(204), Delivered);
        assert_eq!(Outcome::of_status(410), Gone);
        assert_eq!(Outcome::of_status(503), Failed);
    }

    #[test]
    fn schedule_then_give_up() {
        let s = WebhookSettings { retry_schedule_secs: vec![0, 5], ..WebhookSettings::default() };
        let fail =
            Attempt { status: Some(503), latency_ms: 1, error: Some("HTTP 503".into()), outcome: Outcome::Failed };
        assert!(matches!(settle_for(&s, 0, &fail), WebhookSettle::Retry(_)));
        assert!(matches!(settle_for(&s, 1, &fail), WebhookSettle::Retry(_)));
        assert!(matches!(settle_for(&s, 2, &fail), WebhookSettle::GiveUp(_)));
        let gone = Attempt { status: Some(410), ..fail.clone() };
        assert!(matches!(settle_for(&s, 0, &gone), WebhookSettle::GiveUp(_)));
        let ok = Attempt { status: Some(204), ..fail };
        assert_eq!(settle_for(&s, 0, &ok), WebhookSettle::Delivered);
    }
}
