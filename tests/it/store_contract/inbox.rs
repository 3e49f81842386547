//! The inbound webhook inbox: deliveries kept together in one transaction, each delivery
//! id at most once within its window — inside one batch, across batches — and again once
//! the window has passed.

use tributary::store::NewDelivery;

use super::*;

fn delivery(id: Option<&str>, minute: u32, window_minutes: i64) -> NewDelivery {
    NewDelivery {
        tenant: tenant_id("acme"),
        provider: provider("hubspot"),
        delivery_id: id.map(str::to_owned),
        event_types: vec!["contact.propertyChange".into()],
        body: format!("[{{\"eventId\":{}}}]", id.unwrap_or("0")).into_bytes(),
        at: at(minute),
        forget_before: at(minute) - chrono::Duration::minutes(window_minutes),
    }
}

pub async fn deliveries_are_kept_once_per_id_within_their_window(store: &Store) {
    create(store, "acme", &["hubspot"]).await;
    let kept = store
        .accept_webhooks(&[delivery(Some("1"), 0, 10), delivery(Some("2"), 0, 10), delivery(Some("1"), 0, 10)])
        .await
        .unwrap();
    assert_eq!(kept, [true, true, false], "a replay inside one batch is refused");
    let kept = store
        .accept_webhooks(&[delivery(Some("2"), 5, 10), delivery(None, 5, 10), delivery(None, 5, 10)])
        .await
        .unwrap();
    assert_eq!(kept, [false, true, true], "a replay in a later batch; deliveries without an id are all kept");
    // Minute 20 with a 10-minute window: id 1 (minute 0) is forgotten, so it is new again.
    assert_eq!(store.accept_webhooks(&[delivery(Some("1"), 20, 10)]).await.unwrap(), [true]);
    assert_eq!(store.webhook_inbox_len().await.unwrap(), 5);
    let pending = store.pending_webhooks(100).await.unwrap();
    assert_eq!(pending.len(), 5);
    assert!(pending.iter().all(|p| p.tenant_id == "acme" && p.event_types == "contact.propertyChange"));
    assert!(pending.windows(2).all(|w| w[0].id < w[1].id), "oldest first");
    assert_eq!(store.accept_webhooks(&[]).await.unwrap(), Vec::<bool>::new());
}
