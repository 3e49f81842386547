use serde_json::Value;
use tributary_simulator::{Provider, SimConfig};

use super::common::{Session, boot, client, read};

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// A listing's `ETag` sent back as `If-None-Match` gets `304` with no body, and that
/// request leaves the primary quota where it was; a changed listing gets a new tag.
#[tokio::test]
async fn an_unchanged_listing_answers_304_without_spending_quota() {
    let s = Session::start(SimConfig::new(Provider::GitHub, 6).parents(4)).await;
    let first = s.get("/user/repos").send().await.unwrap();
    assert_eq!(first.status().as_u16(), 200);
    let etag = header(&first, "etag").expect("an ETag");
    let remaining = |r: &reqwest::Response| header(r, "x-ratelimit-remaining").unwrap().parse::<u64>().unwrap();
    let before = remaining(&first);
    assert_eq!(before, 4_999);

    let again = s.get("/user/repos").header("If-None-Match", &etag).send().await.unwrap();
    assert_eq!(again.status().as_u16(), 304);
    assert_eq!(header(&again, "etag").as_deref(), Some(etag.as_str()));
    assert_eq!(remaining(&again), before, "a 304 costs no quota");
    assert!(again.bytes().await.unwrap().is_empty());

    assert!(s.sim.modify("repositories", 2));
    let changed = s.get("/user/repos").header("If-None-Match", &etag).send().await.unwrap();
    assert_eq!(changed.status().as_u16(), 200);
    assert_ne!(header(&changed, "etag").as_deref(), Some(etag.as_str()));
    assert_eq!(remaining(&changed), before - 1);
}

#[tokio::test]
async fn pages_are_linked_and_issues_filter_by_since_and_state() {
    let s = Session::start(SimConfig::new(Provider::GitHub, 12).parents(2).page_size_cap(4)).await;
    let r =
        s.get("/repos/sim-org/repo-0001/issues").query(&[("state", "all"), ("per_page", "100")]).send().await.unwrap();
    let link = header(&r, "link").expect("a Link header");
    assert!(link.contains("page=2>; rel=\"next\""), "{link}");
    let (status, body) = read(r).await;
    assert_eq!((status, body.as_array().map(Vec::len)), (200, Some(4)));
    let numbers: Vec<u64> = body.as_array().unwrap().iter().map(|i| i["number"].as_u64().unwrap()).collect();
    assert!(numbers.iter().all(|n| n % 2 == 1), "issues take the odd numbers: {numbers:?}");

    // `since`: only what changed at or after it.
    let since = s.sim.anchor().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    assert!(s.sim.modify("issues", 0));
    let (_, changed) = read(
        s.get("/repos/sim-org/repo-0001/issues").query(&[("state", "all"), ("since", &since)]).send().await.unwrap(),
    )
    .await;
    assert_eq!(changed.as_array().map(Vec::len), Some(1), "{changed}");
    assert_eq!(changed[0], s.sim.expected_record("issues", 0).unwrap());

    // The default state is `open`: every listed issue is open.
    let (_, open) = read(s.get("/repos/sim-org/repo-0002/issues").send().await.unwrap()).await;
    assert!(open.as_array().unwrap().iter().all(|i| i["state"] == "open"), "{open}");
    let (status, _) = read(s.get("/repos/sim-org/repo-0099/issues").send().await.unwrap()).await;
    assert_eq!(status, 404);
}

/// The App flow: a JWT signed with the app's key buys an installation token, which
/// lists the installation's repositories; a JWT signed with another key, an expired one
/// or a personal token where an installation token is needed are refused.
#[tokio::test]
async fn installation_tokens_are_issued_only_for_jwts_signed_with_the_apps_key() {
    let sim = boot(SimConfig::new(Provider::GitHub, 3).parents(3)).await;
    let creds = sim.app_credentials().expect("app credentials");
    assert!(creds["private_key"].as_str().unwrap().starts_with("-----BEGIN PRIVATE KEY-----"));
    let c = client();
    let url = sim.token_url().unwrap();

    // tributary's own signer is exercised end to end in the connector tests; here the
    // refusals: no JWT, a malformed one, and one signed by a different app's key.
    let (status, body) = read(c.post(&url).send().await.unwrap()).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = read(c.post(&url).bearer_auth("a.b.c").send().await.unwrap()).await;
    assert_eq!((status, body["message"].as_str()), (401, Some("A JSON web token could not be decoded")));

    let other = boot(SimConfig::new(Provider::GitHub, 1)).await;
    let other_key = other.app_credentials().unwrap()["private_key"].as_str().unwrap().to_owned();
    assert_ne!(other_key, creds["private_key"].as_str().unwrap());

    let pat = sim.credentials()["token"].as_str().unwrap().to_owned();
    let r = c.get(format!("{}/installation/repositories", sim.base_url())).bearer_auth(&pat).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 403, "a personal token cannot list an installation's repositories");
    let (status, body): (u16, Value) = read(
        c.get(format!("{}/user/repos", sim.base_url()))
            .header("Authorization", format!("token {pat}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, body.as_array().map(Vec::len)), (200, Some(3)));
}
