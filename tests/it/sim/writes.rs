//! Writes against the simulators: the real APIs' write shapes, validation errors,
//! versions, read-back, what the simulator received, and ambiguous failures.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Method as HttpMethod;
use serde_json::{Value, json};
use tributary::config::{BUILTIN_ENTITIES, Diagnostics, Entities, Manifests, Method, Source, WriteOp};
use tributary::mapping::{CompiledWrite, PreparedRequest, build_request, provider_error, write_result};
use tributary::simulator::{AmbiguousWrite, Faults, Provider, SimConfig};

use super::common::{Session, read};

fn send(s: &Session, method: HttpMethod, path: &str) -> reqwest::RequestBuilder {
    s.authed(s.client.request(method, format!("{}{path}", s.sim.api_base())))
}

/// The shipped manifest's write of `entity` for `provider`, compiled with its mapping.
fn shipped(provider: &str, entity: &str) -> CompiledWrite {
    let mut diag = Diagnostics::default();
    let manifests = Manifests::load(None, &mut diag);
    let entities = Entities::load(&Source::builtin("config/entities.toml", BUILTIN_ENTITIES), &mut diag);
    assert!(diag.is_empty(), "{diag:?}");
    let m = manifests.get(provider).expect("a built-in manifest");
    let def = entities.get(entity).expect("a built-in entity");
    CompiledWrite::compile(def, &m.mappings[entity], &m.writes[entity], m.tenant_variables()).expect("compiles")
}

/// Sends a prepared request as the executor would (JSON body, below the base URL the
/// manifest's `base_url` stands for: the host when its paths carry the API prefix, as
/// HubSpot's and Jira's do, else the API base).
async fn execute(s: &Session, req: &PreparedRequest) -> (u16, Value) {
    let prefix = s.sim.api_base().trim_start_matches(&s.sim.base_url()).to_owned();
    let base = if req.path.starts_with(&prefix) { s.sim.base_url() } else { s.sim.api_base() };
    let method = match req.method {
        Method::Get => HttpMethod::GET,
        Method::Post => HttpMethod::POST,
        Method::Put => HttpMethod::PUT,
        Method::Patch => HttpMethod::PATCH,
        Method::Delete => HttpMethod::DELETE,
    };
    let mut rb = s.authed(s.client.request(method, format!("{base}{}", req.path)));
    for (k, v) in &req.headers {
        rb = rb.header(k, v);
    }
    if let Some(body) = &req.body {
        rb = rb.json(body);
    }
    read(rb.send().await.expect("send")).await
}

#[tokio::test]
async fn hubspot_create_update_and_read_back() {
    let s = Session::start(SimConfig::new(Provider::HubSpot, 5)).await;
    let (status, created) = read(
        send(&s, HttpMethod::POST, "/objects/contacts")
            .json(&json!({"properties": {"firstname": "Ann", "email": "ann@example.com"}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["properties"]["email"], "ann@example.com");
    assert_eq!(s.sim.record_count("contacts"), 6);

    // The read endpoints show it: the listing and the single object.
    // The email is unique: a repeated create is a 409 naming the contact.
    let (status, again) = read(
        send(&s, HttpMethod::POST, "/objects/contacts")
            .json(&json!({"properties": {"email": "ANN@example.com"}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, again["category"].as_str()), (409, Some("CONFLICT")));
    assert_eq!(again["message"], format!("Contact already exists. Existing ID: {id}"));
    assert_eq!(s.sim.record_count("contacts"), 6);

    let (_, list) = read(s.get("/objects/contacts").query(&[("limit", "100")]).send().await.unwrap()).await;
    let found = list["results"].as_array().unwrap().iter().find(|r| r["id"] == id.as_str()).cloned().unwrap();
    assert_eq!(found["properties"]["firstname"], "Ann");

    let (status, updated) = read(
        send(&s, HttpMethod::PATCH, &format!("/objects/contacts/{id}"))
            .json(&json!({"properties": {"lastname": "Lee", "phone": 7}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert!(updated["updatedAt"].as_str() > created["updatedAt"].as_str(), "{updated} after {created}");
    assert_eq!(updated["properties"]["lastname"], "Lee");
    assert_eq!(updated["properties"]["phone"], "7", "HubSpot stores text");
    let (_, one) =
        read(s.get(&format!("/objects/contacts/{id}")).query(&[("properties", "lastname")]).send().await.unwrap())
            .await;
    assert_eq!(one["properties"]["lastname"], "Lee");

    let (status, body) = read(
        send(&s, HttpMethod::PATCH, "/objects/contacts/999")
            .json(&json!({"properties": {"lastname": "X"}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, body["category"].as_str()), (404, Some("OBJECT_NOT_FOUND")));

    let received = s.sim.writes_received();
    assert_eq!(received.len(), 4);
    assert_eq!((received[0].method.as_str(), received[0].path.as_str()), ("POST", "/crm/v3/objects/contacts"));
    assert_eq!(received[2].body, json!({"properties": {"lastname": "Lee", "phone": 7}}));
    assert!(received.iter().all(|w| !w.headers.contains_key("authorization")), "credentials are not kept");
}

#[tokio::test]
async fn hubspot_validation_errors_apply_nothing() {
    let s = Session::start(SimConfig::new(Provider::HubSpot, 2)).await;
    for (body, error) in [
        (json!({"properties": {"email": "not an email"}}), "INVALID_EMAIL"),
        (json!({"properties": {"favourite_colour": "blue"}}), "PROPERTY_DOESNT_EXIST"),
    ] {
        let (status, answer) =
            read(send(&s, HttpMethod::POST, "/objects/contacts").json(&body).send().await.unwrap()).await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["category"], "VALIDATION_ERROR");
        assert_eq!(answer["errors"][0]["error"], error);
        assert!(answer["message"].as_str().unwrap().starts_with("Property values were not valid"));
    }
    let (status, _) =
        read(send(&s, HttpMethod::POST, "/objects/contacts").json(&json!({})).send().await.unwrap()).await;
    assert_eq!(status, 400);
    assert_eq!(s.sim.record_count("contacts"), 2);
    assert_eq!(s.sim.writes_received().len(), 3, "refused writes are received too");
}

#[tokio::test]
async fn throttled_writes_are_not_applied() {
    let s = Session::start(SimConfig::new(Provider::HubSpot, 2)).await;
    s.sim.set_faults(Faults::none().rate_limit_every(1));
    let (status, body) = read(
        send(&s, HttpMethod::POST, "/objects/companies")
            .json(&json!({"properties": {"name": "Acme"}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, body["errorType"].as_str()), (429, Some("RATE_LIMIT")));
    assert_eq!(s.sim.record_count("companies"), 2);
    assert!(s.sim.writes_received().is_empty());
}

#[tokio::test]
async fn ambiguous_writes_are_applied_without_an_answer() {
    let s = Session::start(SimConfig::new(Provider::HubSpot, 2)).await;
    let create = || send(&s, HttpMethod::POST, "/objects/companies").json(&json!({"properties": {"name": "Acme"}}));
    s.sim.set_write_fault(Some(AmbiguousWrite::Drop));
    let dropped = create().send().await;
    assert!(dropped.is_err(), "the connection is dropped: {dropped:?}");
    assert_eq!(s.sim.record_count("companies"), 3, "applied all the same");

    s.sim.set_write_fault(Some(AmbiguousWrite::Hang));
    let hung = create().timeout(Duration::from_millis(300)).send().await;
    assert!(hung.is_err_and(|e| e.is_timeout()));
    assert_eq!(s.sim.record_count("companies"), 4);

    s.sim.set_write_fault(None);
    let (status, _) = read(create().send().await.unwrap()).await;
    assert_eq!(status, 201);
    assert_eq!(s.sim.record_count("companies"), 5);
    assert_eq!(s.sim.writes_received().len(), 3);
}

#[tokio::test]
async fn salesforce_create_update_and_preconditions() {
    let s = Session::start(SimConfig::new(Provider::Salesforce, 3)).await;
    let (status, created) =
        read(send(&s, HttpMethod::POST, "/sobjects/Account").json(&json!({"Name": "Acme Ltd"})).send().await.unwrap())
            .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!((created["success"].as_bool(), created["errors"].clone()), (Some(true), json!([])));
    let id = created["id"].as_str().unwrap().to_owned();

    let soql = format!("SELECT Id, Name, SystemModstamp FROM Account WHERE Id = '{id}'");
    let (_, rows) = read(s.get("/query").query(&[("q", soql.as_str())]).send().await.unwrap()).await;
    assert_eq!(rows["records"][0]["Name"], "Acme Ltd", "{rows}");
    let stamp = rows["records"][0]["SystemModstamp"].as_str().unwrap().to_owned();

    let update = |since: &str| {
        send(&s, HttpMethod::PATCH, &format!("/sobjects/Account/{id}"))
            .header("If-Unmodified-Since", since)
            .json(&json!({"Industry": "Retail"}))
    };
    let answer = update(&stamp).send().await.unwrap();
    assert_eq!(answer.status(), 204);
    let stale = "Mon, 01 Jan 2024 00:00:00 GMT";
    let (status, body) = read(update(stale).send().await.unwrap()).await;
    assert_eq!((status, body[0]["errorCode"].as_str()), (412, Some("PRECONDITION_FAILED")));

    let (status, body) = read(
        send(&s, HttpMethod::POST, "/sobjects/Account")
            .json(&json!({"Name": "X", "Colour__c": "red"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!([{"message": "No such column 'Colour__c' on sobject of type Account", "errorCode": "INVALID_FIELD", "fields": ["Colour__c"]}])
    );
    let (status, body) =
        read(send(&s, HttpMethod::POST, "/sobjects/Account").json(&json!({"Website": "x"})).send().await.unwrap())
            .await;
    assert_eq!((status, body[0]["errorCode"].as_str()), (400, Some("REQUIRED_FIELD_MISSING")));
    let (status, _) = read(
        send(&s, HttpMethod::PATCH, "/sobjects/Account/001SimZZZZZZZZZAAA")
            .json(&json!({"Name": "Y"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(s.sim.record_count("accounts"), 4);
}

#[tokio::test]
async fn jira_create_update_comment() {
    let s = Session::start(SimConfig::new(Provider::Jira, 6).parents(2)).await;
    let (_, projects) = read(s.get("/project/search").send().await.unwrap()).await;
    let key = projects["values"][1]["key"].as_str().unwrap().to_owned();
    let (status, created) = read(
        send(&s, HttpMethod::POST, "/issue")
            .json(&json!({"fields": {"project": {"key": key}, "summary": "Printer on fire", "issuetype": {"name": "Task"}}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let (_, by_key) = read(s.get(&format!("/issue/{}", created["key"].as_str().unwrap())).send().await.unwrap()).await;
    assert_eq!(by_key["id"], id.as_str(), "the new key addresses the new issue: {by_key}");
    assert!(created["self"].as_str().unwrap().ends_with(&format!("/rest/api/3/issue/{id}")));
    let (_, issue) = read(s.get(&format!("/issue/{id}")).send().await.unwrap()).await;
    assert_eq!(issue["fields"]["summary"], "Printer on fire");
    assert_eq!(issue["fields"]["project"]["key"], key.as_str());
    let before = issue["fields"]["updated"].as_str().unwrap().to_owned();

    let answer = send(&s, HttpMethod::PUT, &format!("/issue/{id}"))
        .json(&json!({"fields": {"summary": "Printer out"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 204);
    let (_, issue) = read(s.get(&format!("/issue/{id}")).send().await.unwrap()).await;
    assert_eq!(issue["fields"]["summary"], "Printer out");
    assert_ne!(issue["fields"]["updated"].as_str(), Some(before.as_str()));

    let adf = json!({"type": "doc", "version": 1, "content": [{"type": "paragraph", "content": [{"type": "text", "text": "On it"}]}]});
    let (status, comment) = read(
        send(&s, HttpMethod::POST, &format!("/issue/{id}/comment")).json(&json!({"body": adf})).send().await.unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{comment}");
    assert_eq!(comment["body"], adf);

    let (status, body) = read(
        send(&s, HttpMethod::POST, "/issue").json(&json!({"fields": {"project": {"key": key}}})).send().await.unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["errors"]["summary"], "You must specify a summary of the issue.");
    assert!(body["errorMessages"].as_array().is_some_and(Vec::is_empty));
    let (status, body) =
        read(send(&s, HttpMethod::PUT, "/issue/99999").json(&json!({"fields": {}})).send().await.unwrap()).await;
    assert_eq!(status, 404);
    assert!(body["errorMessages"][0].as_str().unwrap().contains("Issue does not exist"));
}

#[tokio::test]
async fn slack_post_message_shows_in_history() {
    let s = Session::start(SimConfig::new(Provider::Slack, 4).parents(3)).await;
    let (_, channels) = read(s.get("/conversations.list").send().await.unwrap()).await;
    let channel = channels["channels"][2]["id"].as_str().unwrap().to_owned();
    let (status, posted) = read(
        s.post("/chat.postMessage").json(&json!({"channel": channel, "text": "Deploy done"})).send().await.unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!((posted["ok"].as_bool(), posted["channel"].as_str()), (Some(true), Some(channel.as_str())), "{posted}");
    let ts = posted["ts"].as_str().unwrap().to_owned();
    let (_, history) =
        read(s.get("/conversations.history").query(&[("channel", channel.as_str())]).send().await.unwrap()).await;
    let message = history["messages"].as_array().unwrap().iter().find(|m| m["ts"] == ts.as_str()).cloned();
    assert_eq!(message.map(|m| m["text"].clone()), Some(json!("Deploy done")), "{history}");

    let (status, body) =
        read(s.post("/chat.postMessage").json(&json!({"channel": "CNOPE0000", "text": "x"})).send().await.unwrap())
            .await;
    assert_eq!((status, body), (200, json!({"ok": false, "error": "channel_not_found"})));
    assert_eq!(s.sim.writes_received().len(), 2);
}

/// The requests the shipped manifests prepare are the ones the simulators accept, and
/// their answers give the declared id.
#[tokio::test]
async fn shipped_write_declarations_work_against_the_simulators() {
    // HubSpot contact: create, then update by the id the answer carried.
    let s = Session::start(SimConfig::new(Provider::HubSpot, 1)).await;
    let w = shipped("hubspot", "contact");
    let record = json!({"first_name": "Bo", "email": "bo@example.com"});
    let (status, body) = execute(&s, &build_request(&w, WriteOp::Create, &record, None).unwrap()).await;
    assert_eq!(status, 201, "{body}");
    let result = write_result(w.spec().create.as_ref().unwrap(), &body);
    let id = result.id.expect("an id");
    assert!(result.version.is_some());
    // The declared lookup finds what a create made (an ambiguous create resumes from it).
    let lookup = w.lookup_request(&json!({"email": "BO@example.com"})).unwrap().unwrap();
    let (status, found) = execute(&s, &lookup).await;
    assert_eq!(status, 200, "{found}");
    let l = w.spec().lookup.as_ref().unwrap();
    assert_eq!(found.pointer(&l.id).and_then(Value::as_str), Some(id.as_str()), "{found}");
    assert_eq!(found.pointer(l.total.as_deref().unwrap()), Some(&json!(1)));
    let none = w.lookup_request(&json!({"email": "nobody@example.com"})).unwrap().unwrap();
    let (_, found) = execute(&s, &none).await;
    assert_eq!(found.pointer(&l.id), None);
    let req = build_request(&w, WriteOp::Update, &json!({"email": "bad"}), Some(&id));
    assert!(req.is_err(), "the target schema refuses a bad email before the provider sees it");
    let req = build_request(&w, WriteOp::Update, &json!({"phone": "+44 1"}), Some(&id)).unwrap();
    assert_eq!(execute(&s, &req).await.0, 200);
    assert_eq!(s.sim.expected_record("contacts", 1).unwrap()["properties"]["phone"], "+44 1");

    // Jira issue: create with the declared default issue type, then comment.
    let s = Session::start(SimConfig::new(Provider::Jira, 2).parents(1)).await;
    let w = shipped("jira", "issue");
    let (_, projects) = read(s.get("/project/search").send().await.unwrap()).await;
    let key = projects["values"][0]["key"].clone();
    let req = build_request(&w, WriteOp::Create, &json!({"summary": "From chat", "project_key": key}), None).unwrap();
    let (status, body) = execute(&s, &req).await;
    assert_eq!(status, 201, "{body}");
    let id = write_result(w.spec().create.as_ref().unwrap(), &body).id.unwrap();
    let req = build_request(&w, WriteOp::Comment, &json!({"text": "Thanks"}), Some(&id)).unwrap();
    assert_eq!(execute(&s, &req).await.0, 201);
    let req = build_request(&w, WriteOp::Create, &json!({"project_key": key}), None).unwrap();
    let (status, body) = execute(&s, &req).await;
    assert_eq!(status, 400);
    assert_eq!(provider_error(w.spec().create.as_ref().unwrap(), &body), None, "Jira puts field errors under `errors`");

    // Salesforce account and Slack message.
    let s = Session::start(SimConfig::new(Provider::Salesforce, 1)).await;
    let w = shipped("salesforce", "company");
    let req = build_request(&w, WriteOp::Create, &json!({"name": "Acme", "domain": "acme.example"}), None).unwrap();
    let (status, body) = execute(&s, &req).await;
    assert_eq!(status, 201, "{body}");
    assert!(write_result(w.spec().create.as_ref().unwrap(), &body).id.is_some_and(|id| id.starts_with("001")));

    let s = Session::start(SimConfig::new(Provider::Slack, 1).parents(1)).await;
    let w = shipped("slack", "message");
    let (_, channels) = read(s.get("/conversations.list").send().await.unwrap()).await;
    let channel = channels["channels"][0]["id"].as_str().unwrap().to_owned();
    let req = build_request(&w, WriteOp::Create, &json!({"channel_id": channel, "text": "hello"}), None).unwrap();
    let (status, body) = execute(&s, &req).await;
    assert_eq!(status, 200);
    let create = w.spec().create.as_ref().unwrap();
    assert_eq!(provider_error(create, &body), None, "{body}");
    let id = write_result(create, &body).id.unwrap();
    assert_eq!(id, format!("{channel}:{}", body["ts"].as_str().unwrap()));
    let req = build_request(&w, WriteOp::Create, &json!({"channel_id": "CNOPE0000", "text": "x"}), None).unwrap();
    let (_, body) = execute(&s, &req).await;
    assert_eq!(provider_error(create, &body).as_deref(), Some("channel_not_found"));
    let _: BTreeMap<String, String> = req.headers;
}
