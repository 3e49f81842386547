//! Shared helpers: start a simulator, log in the way each provider wants,
//! and send an authenticated request.

use reqwest::{Client, RequestBuilder, Response};
use serde_json::{Value, json};
use tributary_simulator::{Provider, SimConfig, SimHandle, start};

/// A started simulator with a logged-in client.
pub struct Session {
    pub sim: SimHandle,
    pub client: Client,
    pub auth: Auth,
}

/// How requests prove who they are.
#[derive(Clone, Debug)]
pub enum Auth {
    Header(&'static str, String),
    Bearer(String),
    Basic(String, String),
}

pub fn client() -> Client {
    Client::builder().timeout(std::time::Duration::from_secs(10)).build().expect("client")
}

pub async fn boot(config: SimConfig) -> SimHandle {
    start(config).await.expect("simulator starts")
}

/// Status and JSON body (Null when the body is empty or not JSON).
pub async fn read(response: Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn s(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or_default().to_owned()
}

/// Exchanges the simulator's credentials for whatever the provider uses on
/// data calls. For rotating providers this spends the initial refresh token.
pub async fn login_with(sim: &SimHandle, client: &Client, creds: &Value) -> Auth {
    let token_url = sim.token_url().unwrap_or_default();
    match sim.provider() {
        Provider::Aptem => Auth::Header("X-API-Token", s(creds, "api_token")),
        Provider::GitHub => Auth::Bearer(s(creds, "token")),
        Provider::GitLab => Auth::Header("PRIVATE-TOKEN", s(creds, "private_token")),
        Provider::Jira if creds.get("email").is_some() => Auth::Basic(s(creds, "email"), s(creds, "api_token")),
        Provider::OneFile => {
            let response = client
                .post(&token_url)
                .header("X-CustomerToken", s(creds, "customer_token"))
                .send()
                .await
                .expect("authenticate");
            assert_eq!(response.status().as_u16(), 200);
            Auth::Header("X-TokenID", response.text().await.expect("token"))
        }
        Provider::Bud => {
            let form = [
                ("grant_type", "client_credentials".to_owned()),
                ("client_id", s(creds, "client_id")),
                ("client_secret", s(creds, "client_secret")),
            ];
            let (status, body) = read(client.post(&token_url).form(&form).send().await.expect("token")).await;
            assert_eq!(status, 200, "{body}");
            Auth::Bearer(s(&body, "access_token"))
        }
        Provider::Microsoft => {
            let form = [
                ("grant_type", "client_credentials".to_owned()),
                ("client_id", s(creds, "client_id")),
                ("client_secret", s(creds, "client_secret")),
                ("scope", "https://graph.microsoft.com/.default".to_owned()),
            ];
            let (status, body) = read(client.post(&token_url).form(&form).send().await.expect("token")).await;
            assert_eq!(status, 200, "{body}");
            Auth::Bearer(s(&body, "access_token"))
        }
        Provider::Jira => {
            let body = json!({
                "grant_type": "refresh_token",
                "client_id": creds["client_id"],
                "client_secret": creds["client_secret"],
                "refresh_token": creds["refresh_token"],
            });
            let (status, body) = read(client.post(&token_url).json(&body).send().await.expect("token")).await;
            assert_eq!(status, 200, "{body}");
            Auth::Bearer(s(&body, "access_token"))
        }
        Provider::HubSpot | Provider::Salesforce | Provider::Slack | Provider::GoogleDrive | Provider::Asana => {
            let (status, body) = refresh(sim, client, creds, &s(creds, "refresh_token")).await;
            assert_eq!(status, 200, "{body}");
            if sim.provider() == Provider::Slack {
                assert_eq!(body["ok"], true, "{body}");
            }
            Auth::Bearer(s(&body, "access_token"))
        }
    }
}

/// A form-encoded refresh-token grant (HubSpot, Salesforce, Slack, Google Drive, Asana).
pub async fn refresh(sim: &SimHandle, client: &Client, creds: &Value, token: &str) -> (u16, Value) {
    let form = [
        ("grant_type", "refresh_token".to_owned()),
        ("client_id", s(creds, "client_id")),
        ("client_secret", s(creds, "client_secret")),
        ("refresh_token", token.to_owned()),
    ];
    let url = sim.token_url().unwrap_or_default();
    read(client.post(url).form(&form).send().await.expect("refresh")).await
}

impl Session {
    pub async fn start(config: SimConfig) -> Self {
        let sim = boot(config).await;
        let client = client();
        let auth = login_with(&sim, &client, &sim.credentials()).await;
        Self { sim, client, auth }
    }

    pub fn authed(&self, rb: RequestBuilder) -> RequestBuilder {
        match &self.auth {
            Auth::Header(name, value) => rb.header(*name, value),
            Auth::Bearer(token) => rb.bearer_auth(token),
            Auth::Basic(user, pass) => rb.basic_auth(user, Some(pass)),
        }
    }

    pub fn get(&self, path: &str) -> RequestBuilder {
        self.authed(self.client.get(format!("{}{path}", self.sim.api_base())))
    }

    pub fn post(&self, path: &str) -> RequestBuilder {
        self.authed(self.client.post(format!("{}{path}", self.sim.api_base())))
    }

    /// The smallest authenticated data request for this provider.
    pub fn probe(&self) -> RequestBuilder {
        match self.sim.provider() {
            Provider::Aptem => self.get("/Learners").query(&[("$top", "1")]),
            Provider::Bud => self.get("/learners").query(&[("pageSize", "1")]),
            Provider::OneFile => self.post("/User/Search").json(&json!({"Role": 1, "PageSize": 1})),
            Provider::HubSpot => self.get("/objects/contacts").query(&[("limit", "1")]),
            Provider::Salesforce => self.get("/query").query(&[("q", "SELECT Id FROM Account")]),
            Provider::Slack => self.get("/users.list").query(&[("limit", "1")]),
            Provider::Jira => self.get("/project/search").query(&[("maxResults", "1")]),
            Provider::GoogleDrive => self.get("/files").query(&[("pageSize", "1")]),
            Provider::Microsoft => self.get("/users").query(&[("$top", "1")]),
            Provider::GitHub => self.get("/user/repos").query(&[("per_page", "1")]),
            Provider::GitLab => self.get("/projects").query(&[("per_page", "1")]),
            Provider::Asana => {
                self.get("/projects").query(&[("workspace", tributary_simulator::ASANA_WORKSPACE_GID), ("limit", "1")])
            }
        }
    }
}

/// Asserts `got` holds exactly the expected records at `indices`, in order.
pub fn assert_records(sim: &SimHandle, stream: &str, got: &[Value], indices: &[u64]) {
    let expected: Vec<Value> =
        indices.iter().map(|i| sim.expected_record(stream, *i).expect("record exists")).collect();
    assert_eq!(got.len(), expected.len(), "record count");
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(g, e);
    }
}
