//! Microsoft Graph: the identity platform's token endpoint, `@odata.nextLink` paging,
//! `$top` limits, teams, channels and their messages, Outlook mail and delta queries.

use serde_json::Value;
use tributary_simulator::{Provider, SimConfig};

use super::common::{Session, assert_records, boot, client, read};

fn config(n: u64) -> SimConfig {
    SimConfig::new(Provider::Microsoft, n)
}

/// Follows `@odata.nextLink` from `first` to the end; returns the records, the page
/// sizes and the last page's body.
async fn walk(s: &Session, first: reqwest::RequestBuilder) -> (Vec<Value>, Vec<usize>, Value) {
    let mut rows = Vec::new();
    let mut sizes = Vec::new();
    let mut request = first;
    loop {
        let (status, body) = read(request.send().await.expect("send")).await;
        assert_eq!(status, 200, "{body}");
        let items = body["value"].as_array().cloned().expect("value");
        sizes.push(items.len());
        rows.extend(items);
        match body["@odata.nextLink"].as_str() {
            Some(next) => {
                assert!(body.get("@odata.deltaLink").is_none(), "a page has a nextLink or a deltaLink, not both");
                request = s.authed(s.client.get(next));
            }
            None => return (rows, sizes, body),
        }
    }
}

#[tokio::test]
async fn client_credentials_need_the_default_scope_the_tenant_and_the_secret() {
    let sim = boot(config(1)).await;
    let c = client();
    let creds = sim.credentials();
    let url = sim.token_url().expect("token url");
    let text = |k: &str| creds[k].as_str().unwrap().to_owned();
    let form = |scope: &str, secret: &str| {
        vec![
            ("grant_type", "client_credentials".to_owned()),
            ("client_id", text("client_id")),
            ("client_secret", secret.to_owned()),
            ("scope", scope.to_owned()),
        ]
    };
    let (status, body) = read(
        c.post(&url).form(&form("https://graph.microsoft.com/.default", &text("client_secret"))).send().await.unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["token_type"].as_str(), body["expires_in"].as_u64()), (Some("Bearer"), Some(3599)));
    assert!(body.get("refresh_token").is_none(), "client credentials get no refresh token");
    let token = body["access_token"].as_str().unwrap().to_owned();
    let (status, _) = read(c.get(format!("{}/users", sim.api_base())).bearer_auth(&token).send().await.unwrap()).await;
    assert_eq!(status, 200);

    let (status, body) =
        read(c.post(&url).form(&form("User.Read", &text("client_secret"))).send().await.unwrap()).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_scope")));
    assert_eq!(body["error_codes"][0], 1002012);
    let (status, body) =
        read(c.post(&url).form(&form("https://graph.microsoft.com/.default", "wrong")).send().await.unwrap()).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")));
    assert!(body["error_description"].as_str().unwrap().starts_with("AADSTS7000215"));
    let other_tenant = url.replace(creds["tenant_id"].as_str().unwrap(), "00000000-0000-0000-0000-000000000000");
    let (status, body) = read(
        c.post(&other_tenant)
            .form(&form("https://graph.microsoft.com/.default", &text("client_secret")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_request")));

    // Data calls without or with a bad token: 401 InvalidAuthenticationToken.
    let response = c.get(format!("{}/users", sim.api_base())).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 401);
    assert!(response.headers().get("www-authenticate").is_some_and(|v| v.to_str().unwrap().starts_with("Bearer")));
    let (_, body) = read(response).await;
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");
    sim.expire_access_tokens();
    let (status, body) =
        read(c.get(format!("{}/users", sim.api_base())).bearer_auth(&token).send().await.unwrap()).await;
    assert_eq!(
        (status, body["error"]["message"].as_str()),
        (401, Some("Access token has expired or is not yet valid."))
    );
}

#[tokio::test]
async fn delegated_refresh_tokens_rotate_on_every_use() {
    let sim = boot(config(1)).await;
    let c = client();
    let creds = sim.oauth_credentials().expect("delegated credentials");
    assert_eq!(creds["tenant_id"], sim.credentials()["tenant_id"]);
    let refresh = |token: String| {
        let form = vec![
            ("grant_type", "refresh_token".to_owned()),
            ("client_id", creds["client_id"].as_str().unwrap().to_owned()),
            ("client_secret", creds["client_secret"].as_str().unwrap().to_owned()),
            ("refresh_token", token),
            ("scope", "offline_access User.Read.All".to_owned()),
        ];
        c.post(sim.token_url().unwrap()).form(&form).send()
    };
    let first = creds["refresh_token"].as_str().unwrap().to_owned();
    let (status, body) = read(refresh(first.clone()).await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    let second = body["refresh_token"].as_str().expect("a new refresh token").to_owned();
    assert_ne!(second, first);
    let (status, body) = read(refresh(first).await.unwrap()).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
}

#[tokio::test]
async fn users_page_by_next_link_with_top_and_select() {
    let s = Session::start(config(25)).await;
    let (rows, sizes, last) = walk(&s, s.get("/users").query(&[("$top", "10")])).await;
    assert_eq!(sizes, vec![10, 10, 5]);
    assert_records(&s.sim, "users", &rows, &(0..25).collect::<Vec<_>>());
    assert!(last["@odata.context"].as_str().unwrap().ends_with("$metadata#users"));
    // Default page 100; `$select` keeps the named properties and the id.
    let (rows, sizes, _) = walk(&s, s.get("/users").query(&[("$select", "displayName,mail")])).await;
    assert_eq!(sizes, vec![25]);
    let mut keys: Vec<&str> = rows[3].as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["displayName", "id", "mail"]);
    assert_eq!(rows[3]["mail"], s.sim.expected_record("users", 3).unwrap()["mail"]);

    let (status, body) = read(s.get("/users").query(&[("$top", "1000")]).send().await.unwrap()).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("between 1 and 999"));
    let (status, body) = read(s.get("/users").query(&[("$skiptoken", "forged")]).send().await.unwrap()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("BadRequest")));
}

#[tokio::test]
async fn teams_channels_and_channel_messages_with_the_top_limit_of_50() {
    let s = Session::start(config(10).parents(2).stream_records("channels", 5).stream_records("channel_messages", 130))
        .await;
    let teams_filter = "resourceProvisioningOptions/Any(x:x eq 'Team')";
    let (teams, _, _) = walk(&s, s.get("/groups").query(&[("$filter", teams_filter)])).await;
    assert_eq!(teams.len(), 2);
    assert!(teams.iter().all(|t| t["resourceProvisioningOptions"][0] == "Team"));
    let (groups, _, _) = walk(&s, s.get("/groups")).await;
    assert_eq!(groups.len(), 10);
    assert_eq!(groups[5]["resourceProvisioningOptions"], serde_json::json!([]));
    let (status, _) = read(s.get("/groups").query(&[("$filter", "displayName eq 'x'")]).send().await.unwrap()).await;
    assert_eq!(status, 400);

    let mut channels = Vec::new();
    for team in &teams {
        let (status, body) =
            read(s.get(&format!("/teams/{}/channels", team["id"].as_str().unwrap())).send().await.unwrap()).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.get("@odata.nextLink").is_none());
        for c in body["value"].as_array().unwrap() {
            channels.push((team["id"].as_str().unwrap().to_owned(), c["id"].as_str().unwrap().to_owned()));
        }
    }
    assert_eq!(channels.len(), 5);
    assert!(channels[0].1.starts_with("19:") && channels[0].1.ends_with("@thread.tacv2"));

    let mut total = 0;
    for (team, channel) in &channels {
        let path = format!("/teams/{team}/channels/{channel}/messages");
        let (rows, sizes, _) = walk(&s, s.get(&path).query(&[("$top", "50")])).await;
        assert!(sizes.iter().all(|n| *n <= 50), "{sizes:?}");
        for r in &rows {
            assert_eq!(r["channelIdentity"]["channelId"], channel.as_str());
            assert_eq!(r["channelIdentity"]["teamId"], team.as_str());
        }
        total += rows.len();
    }
    assert_eq!(total, 130);
    // Default page 20.
    let path = format!("/teams/{}/channels/{}/messages", channels[0].0, channels[0].1);
    let (_, sizes, _) = walk(&s, s.get(&path)).await;
    assert_eq!(sizes[0], 20);
    let (status, body) = read(s.get(&path).query(&[("$top", "51")]).send().await.unwrap()).await;
    assert_eq!((status, body["error"]["message"].as_str()), (400, Some("Limit of '50' for Top Query")));
    let (status, _) = read(s.get(&path).query(&[("$select", "body")]).send().await.unwrap()).await;
    assert_eq!(status, 400, "channel messages take no OData option but $top");
    // A channel under another team is not found.
    let wrong = format!("/teams/{}/channels/{}/messages", channels[4].0, channels[0].1);
    if channels[4].0 != channels[0].0 {
        let (status, body) = read(s.get(&wrong).send().await.unwrap()).await;
        assert_eq!((status, body["error"]["code"].as_str()), (404, Some("NotFound")));
    }
}

#[tokio::test]
async fn users_delta_reports_changes_and_removals_then_expires() {
    let s = Session::start(config(30)).await;
    let (rows, sizes, last) = walk(&s, s.get("/users/delta").header("Prefer", "odata.maxpagesize=12")).await;
    assert_eq!(sizes, vec![12, 12, 6]);
    assert_records(&s.sim, "users", &rows, &(0..30).collect::<Vec<_>>());
    let delta_link = last["@odata.deltaLink"].as_str().expect("a deltaLink on the last page").to_owned();
    assert!(delta_link.contains("$deltatoken="));

    // Nothing changed: an empty round with a new deltaLink.
    let (rows, _, last) = walk(&s, s.authed(s.client.get(&delta_link))).await;
    assert!(rows.is_empty());
    assert!(last["@odata.deltaLink"].is_string());

    assert!(s.sim.modify("users", 4));
    assert!(s.sim.modify("users", 17));
    let added = s.sim.add("users", 1).unwrap().start;
    let removed_id = s.sim.expected_record("users", 9).unwrap()["id"].clone();
    assert!(s.sim.delete("users", 9));
    let (rows, _, last) = walk(&s, s.authed(s.client.get(&delta_link))).await;
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert_records(&s.sim, "users", &rows[..3], &[4, 17, added]);
    assert_eq!(rows[3], serde_json::json!({"id": removed_id, "@removed": {"reason": "changed"}}));
    let next_link = last["@odata.deltaLink"].as_str().unwrap().to_owned();
    let (rows, _, _) = walk(&s, s.authed(s.client.get(&next_link))).await;
    assert!(rows.is_empty(), "the next round starts after these changes: {rows:?}");

    s.sim.expire_sync_states();
    let (status, body) = read(s.authed(s.client.get(&next_link)).send().await.unwrap()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("syncStateNotFound")));
}

#[tokio::test]
async fn mail_per_user_and_its_delta_with_410_when_expired() {
    let s = Session::start(config(4).stream_records("messages", 40)).await;
    let user = s.sim.expected_record("users", 1).unwrap()["id"].as_str().unwrap().to_owned();
    let (rows, sizes, _) = walk(&s, s.get(&format!("/users/{user}/messages"))).await;
    assert_eq!(sizes[0], 10);
    let mine: Vec<u64> = (0..40).filter(|i| s.sim.parent_of("messages", *i) == Some(1)).collect();
    assert_records(&s.sim, "messages", &rows, &mine);
    let owner_mail = s.sim.expected_record("users", 1).unwrap()["mail"].clone();
    assert!(rows.iter().all(|r| r["toRecipients"][0]["emailAddress"]["address"] == owner_mail));

    let delta = format!("/users/{user}/mailFolders/inbox/messages/delta");
    let (rows, _, last) = walk(&s, s.get(&delta)).await;
    assert_eq!(rows.len(), mine.len());
    let link = last["@odata.deltaLink"].as_str().unwrap().to_owned();
    assert!(s.sim.modify("messages", mine[0]));
    let gone = s.sim.expected_record("messages", mine[1]).unwrap()["id"].clone();
    assert!(s.sim.delete("messages", mine[1]));
    let other = (0..40).find(|i| s.sim.parent_of("messages", *i) == Some(2)).unwrap();
    assert!(s.sim.modify("messages", other), "another mailbox's change is not in this delta");
    let (rows, _, _) = walk(&s, s.authed(s.client.get(&link))).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_records(&s.sim, "messages", &rows[..1], &[mine[0]]);
    assert_eq!((&rows[1]["id"], rows[1]["@removed"]["reason"].as_str()), (&gone, Some("deleted")));

    s.sim.expire_sync_states();
    let (status, body) = read(s.authed(s.client.get(&link)).send().await.unwrap()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (410, Some("syncStateNotFound")));
}
