//! `[daemon] webhook_listen`: webhooks on a listener of their own, which serves nothing
//! else (no `/metrics`), while the main listener no longer serves them.

use super::{HUBSPOT_PATH, contact_change, http_address, logged_address, metrics, now_ms, post_hubspot, setup_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_served_on_their_own_listener_only() {
    let s = setup_with("webhook_listen = \"127.0.0.1:0\"").await;
    let main = http_address(&s.daemon);
    let hooks = logged_address(&s.daemon, "webhook listener");
    assert_ne!(main, hooks);

    let answer = post_hubspot(&hooks, HUBSPOT_PATH, &contact_change(1), &s.secret, now_ms()).await;
    assert_eq!((answer.status, answer.body.as_str()), (200, ""), "accepted on the webhook listener");
    let answer = post_hubspot(&main, HUBSPOT_PATH, &contact_change(2), &s.secret, now_ms()).await;
    assert_eq!(answer.status, 404, "not served on the main listener");
    assert_eq!(s.fx.store.webhook_inbox_len().await.unwrap(), 1);

    for path in ["/metrics", "/healthz", "/readyz"] {
        let r = reqwest::get(format!("http://{hooks}{path}")).await.unwrap();
        assert_eq!(r.status().as_u16(), 404, "{path} is not on the webhook listener");
    }
    let text = metrics(&main).await;
    assert!(text.contains(r#"tributary_webhooks_received_total{provider="hubspot",outcome="accepted"} 1"#), "{text}");
    drop(s.daemon);
    s.fx.finish().await;
}
