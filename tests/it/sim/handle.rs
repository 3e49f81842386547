//! The handle API shared by every simulator.

use std::time::Duration;

use tributary_simulator::{Provider, SimConfig, serve, start, start_on};

use super::common::{Session, boot, client};

#[tokio::test]
async fn credentials_api_bases_and_token_urls_per_provider() {
    let expected = [
        (Provider::Aptem, "/odata/1.0", vec!["api_token"], None),
        (Provider::Bud, "/v1", vec!["client_id", "client_secret"], Some("/connect/token")),
        (Provider::OneFile, "/api/v2.1", vec!["customer_token"], Some("/api/v2.1/Authentication")),
        (Provider::HubSpot, "/crm/v3", vec!["client_id", "client_secret", "refresh_token"], Some("/oauth/v1/token")),
        (
            Provider::Salesforce,
            "/services/data/v60.0",
            vec!["client_id", "client_secret", "refresh_token"],
            Some("/services/oauth2/token"),
        ),
        (Provider::Slack, "/api", vec!["client_id", "client_secret", "refresh_token"], Some("/api/oauth.v2.access")),
        (Provider::Jira, "/rest/api/3", vec!["email", "api_token"], Some("/oauth/token")),
        (Provider::GoogleDrive, "/drive/v3", vec!["client_id", "client_secret", "refresh_token"], Some("/token")),
        (
            Provider::Microsoft,
            "/v1.0",
            vec!["tenant_id", "client_id", "client_secret"],
            Some("/5f1c3a0e-7b2d-4e8f-9a6b-3c2d1e0f4a5b/oauth2/v2.0/token"),
        ),
        (Provider::GitHub, "", vec!["token"], Some("/app/installations/4242/access_tokens")),
        (Provider::GitLab, "/api/v4", vec!["private_token"], Some("/oauth/token")),
        (Provider::Asana, "/api/1.0", vec!["client_id", "client_secret", "refresh_token"], Some("/-/oauth_token")),
    ];
    for (provider, base, keys, token) in expected {
        let sim = boot(SimConfig::new(provider, 1)).await;
        assert!(sim.base_url().starts_with("http://127.0.0.1:"));
        assert_eq!(sim.api_base(), format!("{}{base}", sim.base_url()));
        assert_eq!(sim.token_url(), token.map(|t| format!("{}{t}", sim.base_url())));
        let creds = sim.credentials();
        let mut got: Vec<&str> = creds.as_object().expect("object").keys().map(String::as_str).collect();
        got.sort_unstable();
        let mut want = keys.clone();
        want.sort_unstable();
        assert_eq!(got, want, "{provider}");
        assert!(creds.as_object().expect("object").values().all(|v| v.as_str().is_some_and(|s| !s.is_empty())));
        assert_eq!(provider.id().parse::<Provider>(), Ok(provider));
        assert_eq!(provider.to_string(), provider.id());
        assert!(!sim.streams().is_empty());
    }
    assert!("nope".parse::<Provider>().is_err());
}

#[tokio::test]
async fn records_are_deterministic_per_seed() {
    let a = boot(SimConfig::new(Provider::HubSpot, 5).seed(9)).await;
    let anchor = a.anchor();
    let b = boot(SimConfig::new(Provider::HubSpot, 5).seed(9).anchor(anchor)).await;
    let c = boot(SimConfig::new(Provider::HubSpot, 5).seed(10).anchor(anchor)).await;
    assert_eq!(a.expected_record("contacts", 3), b.expected_record("contacts", 3));
    assert_ne!(a.expected_record("contacts", 3), c.expected_record("contacts", 3));
    assert_eq!(a.credentials(), b.credentials());
    let t: Vec<_> = (0..5).filter_map(|i| a.updated_at("contacts", i)).collect();
    assert!(t.windows(2).all(|w| w[0] < w[1]));
    assert!(t.iter().all(|u| *u < anchor && *u > anchor - chrono::TimeDelta::days(367)));
}

#[tokio::test]
async fn modify_add_delete_change_what_is_served() {
    let sim = boot(SimConfig::new(Provider::Aptem, 5)).await;
    let before = sim.expected_record("learners", 2);
    assert!(sim.modify("Learners", 2));
    let after = sim.expected_record("learners", 2);
    assert_ne!(before, after);
    assert!(sim.updated_at("learners", 2) > Some(sim.anchor()));
    assert_eq!(sim.add("learners", 3), Some(5..8));
    assert!(sim.delete("learners", 0));
    assert!(!sim.delete("learners", 0));
    assert!(!sim.modify("learners", 0));
    assert!(!sim.modify("learners", 99));
    assert_eq!(sim.expected_record("learners", 0), None);
    assert_eq!(sim.record_count("learners"), 7);
    assert_eq!(sim.add("nope", 1), None);
    assert!(!sim.modify("nope", 1));
    assert!(!sim.is_child_stream("learners"));
}

#[tokio::test]
async fn requests_are_counted_in_total_and_per_path() {
    let s = Session::start(SimConfig::new(Provider::Salesforce, 2)).await;
    assert_eq!(s.sim.request_count(), 1);
    for _ in 0..3 {
        assert_eq!(s.probe().send().await.expect("send").status().as_u16(), 200);
    }
    assert_eq!(s.sim.request_count(), 4);
    assert_eq!(s.sim.data_request_count(), 3);
    assert_eq!(s.sim.requests_for("/services/data/v60.0/query"), 3);
    assert_eq!(s.sim.requests_for("/services/oauth2/token"), 1);
    assert_eq!(s.sim.requests_for("/services"), 4);
    assert_eq!(s.sim.requests_for("/nothing"), 0);
}

async fn refused(url: &str) -> bool {
    for _ in 0..50 {
        if client().get(url).send().await.is_err() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn shutdown_and_dropping_the_last_handle_stop_the_server() {
    let sim = start(SimConfig::new(Provider::Slack, 1)).await.expect("start");
    let url = format!("{}/users.list", sim.api_base());
    assert!(client().get(&url).send().await.is_ok());
    let clone = sim.clone();
    clone.shutdown();
    assert!(refused(&url).await);

    let sim = start(SimConfig::new(Provider::Slack, 1)).await.expect("start");
    let url = format!("{}/users.list", sim.api_base());
    let clone = sim.clone();
    drop(sim);
    assert!(client().get(&url).send().await.is_ok(), "a clone keeps it running");
    drop(clone);
    assert!(refused(&url).await);
}

#[tokio::test]
async fn start_on_binds_the_given_address() {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = probe.local_addr().expect("addr");
    drop(probe);
    let sim = start_on(SimConfig::new(Provider::Jira, 1), addr).await.expect("start");
    assert_eq!(sim.addr(), addr);
    assert_eq!(sim.base_url(), format!("http://{addr}"));
}

/// Two consecutive free ports on loopback.
fn free_port_pair() -> u16 {
    loop {
        let first = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = first.local_addr().expect("addr").port();
        if port < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

#[tokio::test]
async fn serve_runs_each_provider_on_consecutive_ports() {
    let port = free_port_pair();
    let configs = vec![SimConfig::new(Provider::Aptem, 1), SimConfig::new(Provider::Jira, 1)];
    let task = tokio::spawn(serve(configs, Some(port), None));
    let c = client();
    let urls = [
        format!("http://127.0.0.1:{port}/odata/1.0/Learners"),
        format!("http://127.0.0.1:{}/rest/api/3/project/search", port + 1),
    ];
    for url in &urls {
        let mut status = None;
        for _ in 0..100 {
            if let Ok(response) = c.get(url).send().await {
                status = Some(response.status().as_u16());
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(status, Some(401), "{url}");
    }
    task.abort();
    let _ = task.await;
    assert!(refused(&urls[0]).await);
}
