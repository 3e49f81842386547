//! Writes against the simulators: the real APIs' write shapes, validation errors,
//! versions, read-back, what the simulator received, and ambiguous failures.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Method as HttpMethod;
use serde_json::{Value, json};
use tributary::config::{BUILTIN_ENTITIES, ConflictCheck, Diagnostics, Entities, Manifests, Method, Source, WriteOp};
use tributary::mapping::{CompiledWrite, PreparedRequest, build_request, provider_error, write_result};
use tributary_simulator::{AmbiguousWrite, Faults, Provider, SimConfig};

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

/// The URL of `path` below the base URL the manifest's `base_url` stands for: the host
/// when its paths carry the API prefix, as HubSpot's, Jira's and Bud's do, or when the
/// manifest's writes are below the base URL's origin (Aptem's `path_root = "origin"`),
/// else the API base.
fn url_of(s: &Session, path: &str) -> String {
    let mut diag = Diagnostics::default();
    let manifests = Manifests::load(None, &mut diag);
    let below_origin = manifests
        .get(s.sim.provider().id())
        .is_some_and(|m| m.writes.values().any(|w| w.path_root == tributary::config::PathRoot::Origin));
    let prefix = s.sim.api_base().trim_start_matches(&s.sim.base_url()).to_owned();
    let base = if below_origin || path.starts_with(&prefix) { s.sim.base_url() } else { s.sim.api_base() };
    format!("{base}{path}")
}

/// Sends a prepared request as the executor would (JSON body, query parameters).
async fn execute(s: &Session, req: &PreparedRequest) -> (u16, Value) {
    let method = match req.method {
        Method::Get => HttpMethod::GET,
        Method::Post => HttpMethod::POST,
        Method::Put => HttpMethod::PUT,
        Method::Patch => HttpMethod::PATCH,
        Method::Delete => HttpMethod::DELETE,
    };
    let mut rb = s.authed(s.client.request(method, url_of(s, &req.path))).query(&req.query);
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
    let answer = update(&http_date(&stamp)).send().await.unwrap();
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

/// A Salesforce `SystemModstamp` (`2024-06-01T10:00:00.123+0000`) as the HTTP-date the
/// executor sends in `If-Unmodified-Since`.
fn http_date(stamp: &str) -> String {
    let t = chrono::DateTime::parse_from_str(stamp, "%Y-%m-%dT%H:%M:%S%.f%z").expect("a SystemModstamp");
    t.with_timezone(&chrono::Utc).format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

#[tokio::test]
async fn salesforce_reads_one_record_as_the_query_shows_it() {
    let s = Session::start(SimConfig::new(Provider::Salesforce, 3)).await;
    let soql = "SELECT Id, FirstName, LastName, Email, AccountId, CreatedDate, SystemModstamp FROM Contact";
    let (_, rows) = read(s.get("/query").query(&[("q", soql)]).send().await.unwrap()).await;
    let row = rows["records"][2].clone();
    let id = row["Id"].as_str().unwrap().to_owned();
    let (status, one) = read(s.get(&format!("/sobjects/Contact/{id}")).send().await.unwrap()).await;
    assert_eq!((status, &one), (200, &row), "every Contact field, with `attributes`");
    assert_eq!(one["attributes"]["url"], format!("/services/data/v60.0/sobjects/Contact/{id}"));
    let (status, some) = read(
        s.get(&format!("/sobjects/Contact/{id}")).query(&[("fields", "Email,systemmodstamp")]).send().await.unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        some,
        json!({"attributes": row["attributes"], "Email": row["Email"], "SystemModstamp": row["SystemModstamp"]})
    );

    // A write moves `SystemModstamp` in the single record too.
    let answer = send(&s, HttpMethod::PATCH, &format!("/sobjects/Contact/{id}"))
        .json(&json!({"LastName": "Moved"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 204);
    let (_, after) = read(s.get(&format!("/sobjects/Contact/{id}")).send().await.unwrap()).await;
    assert_eq!(after["LastName"], "Moved");
    assert!(after["SystemModstamp"].as_str() > row["SystemModstamp"].as_str(), "{after} after {row}");

    for (path, code) in [
        ("/sobjects/Contact/003SimZZZZZZZZZAAA".to_owned(), "NOT_FOUND"),
        (format!("/sobjects/Widget/{id}"), "NOT_FOUND"),
    ] {
        let (status, body) = read(s.get(&path).send().await.unwrap()).await;
        assert_eq!((status, body[0]["errorCode"].as_str()), (404, Some(code)), "{path}");
    }
    let (status, body) =
        read(s.get(&format!("/sobjects/Contact/{id}")).query(&[("fields", "Colour__c")]).send().await.unwrap()).await;
    assert_eq!((status, body[0]["errorCode"].as_str()), (400, Some("INVALID_FIELD")));
    let anonymous = s.client.get(format!("{}/sobjects/Contact/{id}", s.sim.api_base()));
    let (status, body) = read(anonymous.send().await.unwrap()).await;
    assert_eq!((status, body[0]["errorCode"].as_str()), (401, Some("INVALID_SESSION_ID")));
}

#[tokio::test]
async fn salesforce_if_unmodified_since_takes_http_dates_only() {
    let s = Session::start(SimConfig::new(Provider::Salesforce, 2)).await;
    let (_, row) =
        read(s.get("/query").query(&[("q", "SELECT Id, SystemModstamp FROM Account")]).send().await.unwrap()).await;
    let id = row["records"][0]["Id"].as_str().unwrap().to_owned();
    let base = row["records"][0]["SystemModstamp"].as_str().unwrap().to_owned();
    let update = |since: &str, name: &str| {
        send(&s, HttpMethod::PATCH, &format!("/sobjects/Account/{id}"))
            .header("If-Unmodified-Since", since)
            .json(&json!({"Name": name}))
    };
    // The ISO stamp itself is not an HTTP-date: 400, nothing written.
    let (status, body) = read(update(&base, "Iso").send().await.unwrap()).await;
    assert_eq!((status, body[0]["errorCode"].as_str()), (400, Some("INVALID_HEADER_TYPE")));
    // The base version as an HTTP-date: unchanged since, so the update applies.
    assert_eq!(update(&http_date(&base), "First").send().await.unwrap().status(), 204);
    // The same base version again is stale now (the record moved on): 412, nothing written.
    let (status, body) = read(update(&http_date(&base), "Second").send().await.unwrap()).await;
    assert_eq!((status, body[0]["errorCode"].as_str()), (412, Some("PRECONDITION_FAILED")));
    assert_eq!(s.sim.expected_record("accounts", 0).unwrap()["Name"], "First");
    // A version at or after the modification passes again.
    let (_, now) = read(s.get(&format!("/sobjects/Account/{id}")).send().await.unwrap()).await;
    let current = http_date(now["SystemModstamp"].as_str().unwrap());
    assert_eq!(update(&current, "Third").send().await.unwrap().status(), 204);
    assert_eq!(s.sim.writes_received().len(), 4);
}

#[tokio::test]
async fn salesforce_lookups_find_a_created_record_by_its_value() {
    let s = Session::start(SimConfig::new(Provider::Salesforce, 3)).await;
    let w = shipped("salesforce", "contact");
    let record = json!({"first_name": "Ann", "last_name": "Lee", "email": "ann.lee@example.com"});
    let (status, body) = execute(&s, &build_request(&w, WriteOp::Create, &record, None).unwrap()).await;
    assert_eq!(status, 201, "{body}");
    let id = write_result(w.spec().create.as_ref().unwrap(), &body).id.unwrap();
    let l = w.spec().lookup.as_ref().unwrap();

    // Found by email, in any case, with its version; a missing email finds nothing.
    let lookup = w.lookup_request(&json!({"email": "Ann.Lee@example.com"})).unwrap().unwrap();
    let (status, found) = execute(&s, &lookup).await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found.pointer(&l.id).and_then(Value::as_str), Some(id.as_str()), "{found}");
    assert_eq!(found.pointer(l.total.as_deref().unwrap()), Some(&json!(1)));
    let (_, one) = read(s.get(&format!("/sobjects/Contact/{id}")).send().await.unwrap()).await;
    assert_eq!(found.pointer(l.version.as_deref().unwrap()), Some(&one["SystemModstamp"]));
    let generated = s.sim.expected_record("contacts", 1).unwrap();
    let lookup = w.lookup_request(&json!({"email": generated["Email"]})).unwrap().unwrap();
    let (_, found) = execute(&s, &lookup).await;
    assert_eq!(found.pointer(&l.id), Some(&generated["Id"]), "generated records are found too");
    let none = w.lookup_request(&json!({"email": "nobody@example.com"})).unwrap().unwrap();
    let (status, found) = execute(&s, &none).await;
    assert_eq!((status, found.pointer(&l.id), found["totalSize"].as_u64()), (200, None, Some(0)));
    assert!(w.lookup_request(&json!({"first_name": "No email"})).unwrap().is_none());

    // Two matches are counted (the executor reports them, never guesses).
    let again = build_request(&w, WriteOp::Create, &json!({"last_name": "Twin", "email": "ann.lee@example.com"}), None);
    assert_eq!(execute(&s, &again.unwrap()).await.0, 201);
    let lookup = w.lookup_request(&record).unwrap().unwrap();
    let (_, found) = execute(&s, &lookup).await;
    assert_eq!(found.pointer(l.total.as_deref().unwrap()), Some(&json!(2)), "{found}");

    // Accounts by website.
    let w = shipped("salesforce", "company");
    let made = build_request(&w, WriteOp::Create, &json!({"name": "Acme", "domain": "https://acme.example"}), None);
    let (status, body) = execute(&s, &made.unwrap()).await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    let l = w.spec().lookup.as_ref().unwrap();
    let lookup = w.lookup_request(&json!({"name": "Other name", "domain": "https://ACME.example"})).unwrap().unwrap();
    let (_, found) = execute(&s, &lookup).await;
    assert_eq!(
        (found.pointer(&l.id).and_then(Value::as_str), found["totalSize"].as_u64()),
        (Some(id.as_str()), Some(1))
    );
}

/// The LMS manifests' declarations against their simulators: each declared operation is
/// accepted, its answer gives the declared id and version, and a refusal's message is
/// where `error` points.
#[tokio::test]
async fn shipped_lms_write_declarations_work_against_the_simulators() {
    // Aptem: create, update, note through the REST API beside the feed.
    let s = Session::start(SimConfig::new(Provider::Aptem, 1)).await;
    let w = shipped("aptem", "learner");
    let record =
        json!({"first_name": "Ann", "last_name": "Lee", "email": "ann@example.com", "start_date": "2026-09-01"});
    let req = build_request(&w, WriteOp::Create, &record, None).unwrap();
    let (status, body) = execute(&s, &req).await;
    assert_eq!(status, 201, "{body}");
    let id = write_result(w.spec().create.as_ref().unwrap(), &body).id.unwrap();
    assert_eq!(s.sim.writes_received()[0].path, "/api/v1/learners", "below the origin, beside the feed");
    let created = s.sim.expected_record("learners", 1).unwrap();
    assert_eq!(
        (created["learner_id"].as_str(), created["email"].as_str()),
        (Some(id.as_str()), Some("ann@example.com"))
    );
    let req =
        build_request(&w, WriteOp::Update, &json!({"status": "Completed", "completion": "2027-07-01"}), Some(&id));
    assert_eq!(execute(&s, &req.unwrap()).await.0, 204);
    assert_eq!(s.sim.expected_record("learners", 1).unwrap()["completion_date"], "2027-07-01");
    let req = build_request(&w, WriteOp::Comment, &json!({"text": "Welcome"}), Some(&id)).unwrap();
    let (status, body) = execute(&s, &req).await;
    assert_eq!(status, 201, "{body}");
    assert!(write_result(w.spec().comment.as_ref().unwrap(), &body).id.is_some());
    let req = build_request(&w, WriteOp::Update, &json!({"status": "Paused"}), Some(&id)).unwrap();
    let (status, body) = execute(&s, &req).await;
    assert_eq!(status, 400);
    let message = provider_error(w.spec().update.as_ref().unwrap(), &body).unwrap();
    assert!(message.starts_with("'status' must be one of"), "{message}");

    // Bud: update (answering the learner and its version) and a note.
    let s = Session::start(SimConfig::new(Provider::Bud, 2)).await;
    let w = shipped("bud", "learner");
    let id = s.sim.expected_record("learners", 1).unwrap()["id"].as_str().unwrap().to_owned();
    let req = build_request(&w, WriteOp::Update, &json!({"email": "x@example.com", "status": "2"}), Some(&id));
    let (status, body) = execute(&s, &req.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    let result = write_result(w.spec().update.as_ref().unwrap(), &body);
    assert_eq!(result.id.as_deref(), Some(id.as_str()));
    assert_eq!(result.version.as_deref(), s.sim.expected_record("learners", 1).unwrap()["updatedAt"].as_str());
    let req = build_request(&w, WriteOp::Comment, &json!({"text": "Hello"}), Some(&id)).unwrap();
    let (status, body) = execute(&s, &req).await;
    assert_eq!(status, 201);
    assert!(write_result(w.spec().comment.as_ref().unwrap(), &body).id.is_some());
    let req = build_request(&w, WriteOp::Update, &json!({"start_date": "2026-01-01", "status": "7"}), Some(&id));
    let (status, body) = execute(&s, &req.unwrap()).await;
    assert_eq!(status, 400);
    let message = provider_error(w.spec().update.as_ref().unwrap(), &body).unwrap();
    assert!(message.contains("status: '\"7\"' is not a valid status"), "{message}");

    // OneFile: create (Role 1 from the declared defaults) and update, both with versions.
    let s = Session::start(SimConfig::new(Provider::OneFile, 1)).await;
    let w = shipped("onefile", "learner");
    let record = json!({"first_name": "Ann", "last_name": "Lee", "employer_id": "5000", "start_date": "2026-09-01"});
    let (status, body) = execute(&s, &build_request(&w, WriteOp::Create, &record, None).unwrap()).await;
    assert_eq!(status, 200, "{body}");
    let create = write_result(w.spec().create.as_ref().unwrap(), &body);
    assert_eq!((create.id.as_deref(), create.version.is_some()), (Some("100001"), true));
    assert_eq!(s.sim.writes_received()[0].body["Role"], 1);
    let req = build_request(&w, WriteOp::Update, &json!({"programme": "Data Analyst L4"}), Some("100001")).unwrap();
    let (status, body) = execute(&s, &req).await;
    assert_eq!(status, 200, "{body}");
    let update = write_result(w.spec().update.as_ref().unwrap(), &body);
    assert_eq!(update.id.as_deref(), Some("100001"));
    assert!(update.version > create.version, "{update:?} after {create:?}");
    let req = build_request(&w, WriteOp::Update, &json!({"first_name": ""}), Some("100001")).unwrap();
    let (status, body) = execute(&s, &req).await;
    assert_eq!(status, 400);
    let message = provider_error(w.spec().update.as_ref().unwrap(), &body).unwrap();
    assert_eq!(message, "The request is invalid. The FirstName field is required.");
}

/// Every built-in manifest that checks conflicts by reading (`conflict = "read"`) gets,
/// from a GET on its `update` path, the object as the stream's listing shows it, with
/// `version_field`; and the version moves with every update.
#[tokio::test]
async fn conflict_reads_answer_the_object_with_a_moving_version() {
    let mut diag = Diagnostics::default();
    let manifests = Manifests::load(None, &mut diag);
    // Provider, entity, stream, the id's pointer in the record, an update to send.
    let cases = [
        (Provider::HubSpot, "contact", "contacts", "/id", json!({"phone": "+44 1"})),
        (Provider::HubSpot, "company", "companies", "/id", json!({"industry": "Retail"})),
        (Provider::HubSpot, "deal", "deals", "/id", json!({"stage": "closedwon"})),
        (Provider::Jira, "issue", "issues", "/id", json!({"summary": "Renamed"})),
        (Provider::Bud, "learner", "learners", "/id", json!({"email": "a@example.com"})),
        (Provider::Aptem, "learner", "learners", "/learner_id", json!({"status": "Active"})),
        (Provider::OneFile, "learner", "learners", "/ID", json!({"programme": "Chef L2"})),
    ];
    let mut checked = Vec::new();
    for (provider, entity, stream, id_at, update) in cases {
        let m = manifests.get(provider.id()).unwrap();
        let spec = &m.writes[entity];
        assert_eq!(spec.conflict, ConflictCheck::Read, "{provider} {entity}");
        checked.push((provider.id(), entity));
        let s = Session::start(SimConfig::new(provider, 2).parents(1)).await;
        let listed = s.sim.expected_record(stream, 1).unwrap();
        let id = match &listed.pointer(id_at).unwrap() {
            Value::String(t) => t.clone(),
            other => other.to_string(),
        };
        let version_at = format!("/{}", spec.version_field.as_deref().unwrap().replace('.', "/"));
        let path = spec.update.as_ref().unwrap().path.replace("{id}", &id);
        let (status, one) = read(s.authed(s.client.get(url_of(&s, &path))).send().await.unwrap()).await;
        assert_eq!(status, 200, "{provider} GET {path}: {one}");
        // The object as the listing shows it (HubSpot shows the default properties unless
        // asked for others, in both).
        let keys = |v: &Value| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>());
        assert_eq!(keys(&one), keys(&listed), "{provider}: {one}");
        if provider != Provider::HubSpot {
            assert_eq!(one, listed, "{provider}: the object as the listing shows it");
        }
        let before = one.pointer(&version_at).cloned().unwrap_or_else(|| panic!("{provider}: {version_at} in {one}"));
        assert_eq!(Some(&before), listed.pointer(&version_at));

        let w = shipped(provider.id(), entity);
        let (status, body) = execute(&s, &build_request(&w, WriteOp::Update, &update, Some(&id)).unwrap()).await;
        assert!((200..300).contains(&status), "{provider}: {status} {body}");
        let (_, after) = read(s.authed(s.client.get(url_of(&s, &path))).send().await.unwrap()).await;
        assert_ne!(after.pointer(&version_at), Some(&before), "{provider}: the version moved: {after}");
        assert_eq!(after.pointer(&version_at), s.sim.expected_record(stream, 1).unwrap().pointer(&version_at));
    }
    // Every manifest that reads for conflicts is covered above.
    let declared: Vec<(&str, &str)> = ["aptem", "bud", "onefile", "hubspot", "salesforce", "slack", "jira"]
        .into_iter()
        .flat_map(|p| {
            let m = manifests.get(p).unwrap();
            m.writes
                .iter()
                .filter(|(_, w)| w.conflict == ConflictCheck::Read)
                .map(move |(e, _)| (p, e.as_str()))
                .collect::<Vec<_>>()
        })
        .collect();
    for d in &declared {
        assert!(checked.contains(d), "{d:?} reads for conflicts but is not checked here");
    }
}

/// A create whose answer was lost is found by the declared lookup, exactly once.
#[tokio::test]
async fn salesforce_lookup_finds_a_create_whose_answer_was_lost() {
    let s = Session::start(SimConfig::new(Provider::Salesforce, 2)).await;
    let w = shipped("salesforce", "contact");
    let record = json!({"last_name": "Lost", "email": "lost@example.com"});
    s.sim.set_write_fault(Some(AmbiguousWrite::Drop));
    let req = build_request(&w, WriteOp::Create, &record, None).unwrap();
    let lost = s.authed(s.client.post(url_of(&s, &req.path))).json(&req.body).send().await;
    assert!(lost.is_err(), "{lost:?}");
    s.sim.set_write_fault(None);
    let (status, found) = execute(&s, &w.lookup_request(&record).unwrap().unwrap()).await;
    assert_eq!((status, found["totalSize"].as_u64()), (200, Some(1)), "{found}");
    let id = found["records"][0]["Id"].as_str().unwrap();
    let (_, one) = read(s.get(&format!("/sobjects/Contact/{id}")).send().await.unwrap()).await;
    assert_eq!((one["LastName"].as_str(), one["Email"].as_str()), (Some("Lost"), Some("lost@example.com")));
    assert_eq!(s.sim.record_count("contacts"), 3);
}
