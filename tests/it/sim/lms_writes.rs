//! Writes against the LMS simulators (Aptem's REST API beside its OData feed, Bud,
//! OneFile): creates and updates that the reads show with a new version, notes,
//! validation errors in the body the manifests point at, throttling, and one object read
//! back as the listings show it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::Method as HttpMethod;
use serde_json::{Value, json};
use tributary_simulator::{AmbiguousWrite, Faults, Provider, SimConfig};

use super::common::{Session, read};

/// A request to `path` on the simulator's host (not below its API base).
fn host(s: &Session, method: HttpMethod, path: &str) -> reqwest::RequestBuilder {
    s.authed(s.client.request(method, format!("{}{path}", s.sim.base_url())))
}

fn at(v: &Value, pointer: &str) -> DateTime<Utc> {
    let text = v.pointer(pointer).and_then(Value::as_str).unwrap_or_else(|| panic!("no {pointer} in {v}"));
    DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}")).with_timezone(&Utc)
}

#[tokio::test]
async fn aptem_create_update_and_note_show_in_the_feed() {
    let s = Session::start(SimConfig::new(Provider::Aptem, 3)).await;
    let (status, created) = read(
        host(&s, HttpMethod::POST, "/api/v1/learners")
            .json(&json!({"first_name": "Ann", "last_name": "Lee", "email": "ann@example.com", "employer_id": "2"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, created.clone()), (201, json!({"id": "L000004"})));
    assert_eq!(s.sim.record_count("learners"), 4);

    // The feed shows the new learner; the REST API's single learner is the feed's item.
    let filter = [("$filter", "learner_id eq 'L000004'")];
    let (_, feed) = read(s.get("/Learners").query(&filter).send().await.unwrap()).await;
    let item = feed["value"][0].clone();
    assert_eq!((item["first_name"].as_str(), item["employer_id"].as_u64()), (Some("Ann"), Some(2)), "{feed}");
    let (status, one) = read(host(&s, HttpMethod::GET, "/api/v1/learners/L000004").send().await.unwrap()).await;
    assert_eq!((status, &one), (200, &item));

    let answer = host(&s, HttpMethod::PATCH, "/api/v1/learners/L000004")
        .json(&json!({"status": "Withdrawn", "uln": "1234567890"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 204);
    let (_, feed) = read(s.get("/Learners").query(&filter).send().await.unwrap()).await;
    let updated = &feed["value"][0];
    assert_eq!((updated["status"].as_str(), updated["uln"].as_str()), (Some("Withdrawn"), Some("1234567890")));
    assert!(at(updated, "/UpdatedDate") > at(&item, "/UpdatedDate"), "{updated} after {item}");

    // A note is its own object: the learner's version stays.
    let (status, note) = read(
        host(&s, HttpMethod::POST, "/api/v1/learners/L000004/notes")
            .json(&json!({"text": "Called about the review"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{note}");
    assert_eq!(
        (note["learner_id"].as_str(), note["text"].as_str()),
        (Some("L000004"), Some("Called about the review"))
    );
    assert!(note["id"].is_u64());
    let (_, notes) = read(host(&s, HttpMethod::GET, "/api/v1/learners/L000004/notes").send().await.unwrap()).await;
    assert_eq!(notes["items"], json!([note]));
    let (_, after) = read(host(&s, HttpMethod::GET, "/api/v1/learners/L000004").send().await.unwrap()).await;
    assert_eq!(after["UpdatedDate"], updated["UpdatedDate"]);

    let received = s.sim.writes_received();
    let seen: Vec<(&str, &str)> = received.iter().map(|w| (w.method.as_str(), w.path.as_str())).collect();
    assert_eq!(
        seen,
        [
            ("POST", "/api/v1/learners"),
            ("PATCH", "/api/v1/learners/L000004"),
            ("POST", "/api/v1/learners/L000004/notes")
        ]
    );
    assert_eq!(received[1].body, json!({"status": "Withdrawn", "uln": "1234567890"}));
    assert!(received.iter().all(|w| !w.headers.contains_key("x-api-token")), "credentials are not kept");
}

#[tokio::test]
async fn aptem_refuses_bad_writes_with_its_error_body() {
    let s = Session::start(SimConfig::new(Provider::Aptem, 2)).await;
    let create = |body: Value| host(&s, HttpMethod::POST, "/api/v1/learners").json(&body);
    let (status, body) =
        read(create(json!({"first_name": "A", "email": "not an email", "colour": "red"})).send().await.unwrap()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("ValidationFailed")));
    let message = body.pointer("/error/message").and_then(Value::as_str).unwrap();
    for problem in ["'colour' is not a writable learner field.", "'not an email' is not a valid email", "'last_name'"] {
        assert!(message.contains(problem), "{problem} in {message}");
    }
    let (status, body) = read(
        create(json!({"first_name": "A", "last_name": "B", "start_date": "01/02/2024", "status": "Paused"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("'start_date' must be a date") && message.contains("'status' must be one of"),
        "{message}"
    );
    assert_eq!(s.sim.record_count("learners"), 2, "nothing refused is applied");

    let (status, body) = read(
        host(&s, HttpMethod::PATCH, "/api/v1/learners/L000099")
            .json(&json!({"status": "Active"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, body["error"]["message"].as_str()), (404, Some("Learner 'L000099' was not found.")));
    let (status, body) = read(
        host(&s, HttpMethod::POST, "/api/v1/learners/L000001/notes").json(&json!({"text": " "})).send().await.unwrap(),
    )
    .await;
    assert_eq!((status, body["error"]["message"].as_str()), (400, Some("'text' is required and must not be empty.")));

    // The same token as the feed.
    let anonymous = s.client.post(format!("{}/api/v1/learners", s.sim.base_url())).json(&json!({}));
    let (status, body) = read(anonymous.send().await.unwrap()).await;
    assert_eq!(status, 401);
    assert!(body["error"]["message"].as_str().unwrap().starts_with("Authorization has been denied"));
    assert_eq!(s.sim.writes_received().len(), 5, "refused writes are received too");
}

#[tokio::test]
async fn aptem_writes_are_throttled_with_a_429_and_the_feed_with_its_400() {
    let s = Session::start(SimConfig::new(Provider::Aptem, 2)).await;
    let untouched = s.sim.expected_record("learners", 0).unwrap();
    s.sim.set_faults(Faults::none().rate_limit_every(1).retry_after_secs(7));
    let answer = host(&s, HttpMethod::PATCH, "/api/v1/learners/L000001")
        .json(&json!({"status": "Active"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("7"));
    let (status, body) = read(answer).await;
    assert_eq!((status, body["error"]["code"].as_str()), (429, Some("TooManyRequests")));
    let (status, body) = read(s.get("/Learners").send().await.unwrap()).await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().unwrap().contains("Try again"));
    assert!(s.sim.writes_received().is_empty(), "a throttled write never reaches the API");
    assert_eq!(s.sim.expected_record("learners", 0).unwrap(), untouched);
    s.sim.set_faults(Faults::none());
    let before = s.sim.updated_at("learners", 0).unwrap();
    let answer = host(&s, HttpMethod::PATCH, "/api/v1/learners/L000001")
        .json(&json!({"status": "Active"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 204);
    assert!(s.sim.updated_at("learners", 0).unwrap() > before);
}

#[tokio::test]
async fn bud_update_and_notes_show_in_the_reads() {
    let s = Session::start(SimConfig::new(Provider::Bud, 3)).await;
    let (_, list) = read(s.get("/learners").send().await.unwrap()).await;
    let item = list["items"][1].clone();
    let id = item["id"].as_str().unwrap().to_owned();

    // The single learner is the listing's item: what a conflict check reads.
    let (status, one) = read(s.get(&format!("/learners/{id}")).send().await.unwrap()).await;
    assert_eq!((status, &one), (200, &item));

    let patch = json!({"email": "new@example.com", "status": "3", "expectedEndDate": "2027-01-31"});
    let (status, updated) =
        read(host(&s, HttpMethod::PATCH, &format!("/v1/learners/{id}")).json(&patch).send().await.unwrap()).await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!((updated["status"].as_u64(), updated["active"].as_bool()), (Some(3), Some(false)));
    assert_eq!(updated["email"], "new@example.com");
    assert!(at(&updated, "/updatedAt") > at(&item, "/updatedAt"), "{updated} after {item}");
    let (_, list) = read(s.get("/learners").send().await.unwrap()).await;
    assert_eq!(list["items"][1], updated);
    let (_, again) =
        read(host(&s, HttpMethod::PATCH, &format!("/v1/learners/{id}")).json(&json!({})).send().await.unwrap()).await;
    assert!(at(&again, "/updatedAt") > at(&updated, "/updatedAt"), "every update moves the version");

    let (status, note) = read(
        host(&s, HttpMethod::POST, &format!("/v1/learners/{id}/notes"))
            .json(&json!({"text": "Review booked"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{note}");
    assert_eq!((note["learnerId"].as_str(), note["text"].as_str()), (Some(id.as_str()), Some("Review booked")));
    assert!(note["id"].as_str().is_some_and(|n| n.len() == 36), "a GUID: {note}");
    let (_, notes) = read(s.get(&format!("/learners/{id}/notes")).send().await.unwrap()).await;
    assert_eq!(notes["items"], json!([note]));

    let received = s.sim.writes_received();
    assert_eq!(received.len(), 3);
    assert_eq!((received[0].method.as_str(), received[0].body.clone()), ("PATCH", patch));
    assert!(received.iter().all(|w| !w.headers.contains_key("authorization")));
}

#[tokio::test]
async fn bud_refuses_bad_writes_with_problem_details_and_throttles_them() {
    let s = Session::start(SimConfig::new(Provider::Bud, 2)).await;
    let (_, one) = read(s.get("/learners").query(&[("pageSize", "1")]).send().await.unwrap()).await;
    let id = one["items"][0]["id"].as_str().unwrap().to_owned();
    let before = one["items"][0].clone();
    let path = format!("/v1/learners/{id}");
    let (status, body) = read(
        host(&s, HttpMethod::PATCH, &path)
            .json(&json!({"email": "nope", "status": 9, "apprenticeId": 5, "startDate": "2024-13-01"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["status"].as_u64(), body["title"].as_str()),
        (400, Some(400), Some("One or more validation errors occurred."))
    );
    let detail = body.pointer("/detail").and_then(Value::as_str).unwrap();
    for problem in ["email: 'nope'", "status: '9'", "apprenticeId: is not a writable", "startDate: '2024-13-01'"] {
        assert!(detail.contains(problem), "{problem} in {detail}");
    }
    assert_eq!(s.sim.expected_record("learners", 0).unwrap(), before, "nothing refused is applied");

    let (status, body) = read(
        host(&s, HttpMethod::PATCH, "/v1/learners/00000000-0000-0000-0000-000000000000")
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, body["title"].as_str()), (404, Some("Not Found")));
    let (status, body) =
        read(host(&s, HttpMethod::POST, &format!("{path}/notes")).json(&json!({"note": "x"})).send().await.unwrap())
            .await;
    assert_eq!((status, body["detail"].as_str()), (400, Some("text: is required.")));
    let anonymous = s.client.patch(format!("{}{path}", s.sim.base_url())).json(&json!({}));
    let (status, body) = read(anonymous.send().await.unwrap()).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_token")));

    s.sim.set_faults(Faults::none().rate_limit_every(1).retry_after_secs(3));
    let answer = host(&s, HttpMethod::PATCH, &path).json(&json!({"status": 2})).send().await.unwrap();
    assert_eq!(answer.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("3"));
    let (status, body) = read(answer).await;
    assert_eq!((status, body["status"].as_u64()), (429, Some(429)));
    assert_eq!(s.sim.expected_record("learners", 0).unwrap(), before);
    assert_eq!(s.sim.writes_received().len(), 4, "the throttled write is not received");
}

#[tokio::test]
async fn onefile_create_and_update_show_in_search_and_get() {
    let s = Session::start(SimConfig::new(Provider::OneFile, 2)).await;
    let (status, created) = read(
        s.post("/User")
            .json(&json!({"FirstName": "Ann", "LastName": "Lee", "Role": 1, "Email": "ann@example.com", "StartOn": "2026-09-01", "OrganisationID": "5001"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["ID"], 100_002);
    assert_eq!(
        (created["StartOn"].as_str(), created["OrganisationID"].as_u64()),
        (Some("2026-09-01T00:00:00.000Z"), Some(5001))
    );
    let (_, found) = read(s.post("/User/Search").json(&json!({"Role": 1})).send().await.unwrap()).await;
    assert_eq!(found.as_array().and_then(|a| a.last()), Some(&created), "{found}");
    let (status, one) = read(s.get("/User/100002").send().await.unwrap()).await;
    assert_eq!((status, &one), (200, &created));

    // Updates are POSTs to the user.
    let (status, updated) =
        read(s.post("/User/100002").json(&json!({"LastName": "Lee-Smith", "Role": 1})).send().await.unwrap()).await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["LastName"], "Lee-Smith");
    assert!(at(&updated, "/ModifiedOn") > at(&created, "/ModifiedOn"), "{updated} after {created}");
    let (_, one) = read(s.get("/User/100002").send().await.unwrap()).await;
    assert_eq!(one, updated);

    // Form-encoded writes are read too.
    let (status, formed) = read(s.post("/User/100000").form(&[("MISID", "MIS42")]).send().await.unwrap()).await;
    assert_eq!((status, formed["MISID"].as_str()), (200, Some("MIS42")));
    let received = s.sim.writes_received();
    assert_eq!(received.len(), 3);
    assert_eq!((received[1].method.as_str(), received[1].path.as_str()), ("POST", "/api/v2.1/User/100002"));
    assert_eq!(received[2].body, json!({"MISID": "MIS42"}));
    assert!(received.iter().all(|w| !w.headers.contains_key("x-tokenid")));
}

#[tokio::test]
async fn onefile_refuses_bad_writes_with_its_message_and_throttles_them() {
    let s = Session::start(SimConfig::new(Provider::OneFile, 1)).await;
    let (status, body) = read(
        s.post("/User").json(&json!({"FirstName": "A", "Role": 5, "Email": "a@b", "Colour": 1})).send().await.unwrap(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let message = body.pointer("/Message").and_then(Value::as_str).unwrap();
    assert!(message.starts_with("The request is invalid. "), "{message}");
    for problem in
        ["Role 5", "not a valid e-mail address", "Colour is not a writable", "The LastName field is required."]
    {
        assert!(message.contains(problem), "{problem} in {message}");
    }
    assert!(body["ModelState"]["model.LastName"].is_array(), "{body}");
    let (status, body) = read(s.post("/User/100000").json(&json!({"StartOn": "soon"})).send().await.unwrap()).await;
    assert_eq!(status, 400);
    assert_eq!(body["ModelState"]["model.StartOn"][0], "The value 'soon' is not valid for StartOn.");
    let (status, body) = read(s.post("/User/100777").json(&json!({"MISID": "x"})).send().await.unwrap()).await;
    assert_eq!((status, body["Message"].as_str()), (404, Some("No user found with ID 100777.")));
    assert_eq!(s.sim.record_count("learners"), 1);
    let anonymous = s.client.post(format!("{}/User", s.sim.api_base())).json(&json!({}));
    assert_eq!(read(anonymous.send().await.unwrap()).await.0, 401);

    s.sim.set_faults(Faults::none().rate_limit_every(1));
    let answer = s.post("/User").json(&json!({"FirstName": "A", "LastName": "B", "Role": 1})).send().await.unwrap();
    assert!(answer.headers().contains_key("retry-after"));
    assert_eq!(read(answer).await.0, 429);
    assert_eq!(s.sim.record_count("learners"), 1);
    assert_eq!(s.sim.writes_received().len(), 4);
}

/// A write fault applies the write and withholds its answer, on every LMS simulator.
#[tokio::test]
async fn lms_writes_are_applied_without_an_answer_under_a_write_fault() {
    let s = Session::start(SimConfig::new(Provider::Aptem, 1)).await;
    s.sim.set_write_fault(Some(AmbiguousWrite::Drop));
    let lost = host(&s, HttpMethod::POST, "/api/v1/learners").json(&json!({"first_name": "A", "last_name": "B"}));
    assert!(lost.send().await.is_err(), "the connection is dropped");
    assert_eq!(s.sim.record_count("learners"), 2, "applied all the same");

    let s = Session::start(SimConfig::new(Provider::Bud, 1)).await;
    let id = s.sim.expected_record("learners", 0).unwrap()["id"].as_str().unwrap().to_owned();
    s.sim.set_write_fault(Some(AmbiguousWrite::Hang));
    let lost = host(&s, HttpMethod::POST, &format!("/v1/learners/{id}/notes")).json(&json!({"text": "x"}));
    assert!(lost.timeout(Duration::from_millis(300)).send().await.is_err_and(|e| e.is_timeout()));
    s.sim.set_write_fault(None);
    let (_, notes) = read(s.get(&format!("/learners/{id}/notes")).send().await.unwrap()).await;
    assert_eq!(notes["items"].as_array().map(Vec::len), Some(1), "{notes}");

    let s = Session::start(SimConfig::new(Provider::OneFile, 1)).await;
    s.sim.set_write_fault(Some(AmbiguousWrite::Drop));
    let before = s.sim.updated_at("learners", 0).unwrap();
    assert!(s.post("/User/100000").json(&json!({"MISID": "M1"})).send().await.is_err());
    assert!(s.sim.updated_at("learners", 0).unwrap() > before);
    assert_eq!(s.sim.expected_record("learners", 0).unwrap()["MISID"], "M1");
}
