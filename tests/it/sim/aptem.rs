//! Aptem OData feed.

use serde_json::Value;
use tributary_simulator::{Provider, SimConfig};

use super::common::{Session, assert_records, boot, client, read};

fn config(n: u64) -> SimConfig {
    SimConfig::new(Provider::Aptem, n)
}

/// Pages with `$top`/`$skip` until a short page; returns rows and page sizes.
async fn walk(s: &Session, collection: &str, top: usize, extra: &[(&str, &str)]) -> (Vec<Value>, Vec<usize>) {
    let mut rows = Vec::new();
    let mut sizes = Vec::new();
    loop {
        let skip = rows.len().to_string();
        let top_s = top.to_string();
        let mut q = vec![("$top", top_s.as_str()), ("$skip", skip.as_str())];
        q.extend_from_slice(extra);
        let (status, body) = read(s.get(&format!("/{collection}")).query(&q).send().await.expect("send")).await;
        assert_eq!(status, 200, "{body}");
        assert!(body["@odata.context"].as_str().is_some_and(|c| c.ends_with(collection)));
        let page = body["value"].as_array().cloned().unwrap_or_default();
        sizes.push(page.len());
        let short = page.len() < top;
        rows.extend(page);
        if short {
            return (rows, sizes);
        }
    }
}

#[tokio::test]
async fn bad_or_missing_token_gets_401_with_error_message() {
    let sim = boot(config(3)).await;
    let c = client();
    let url = format!("{}/Learners", sim.api_base());
    for request in [c.get(&url), c.get(&url).header("X-API-Token", "wrong")] {
        let (status, body) = read(request.send().await.expect("send")).await;
        assert_eq!(status, 401);
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    }
    assert_eq!(sim.credentials().as_object().map(|o| o.len()), Some(1));
}

#[tokio::test]
async fn full_walk_returns_every_record_exactly() {
    let s = Session::start(config(25)).await;
    let (rows, sizes) = walk(&s, "Learners", 10, &[]).await;
    assert_eq!(sizes, vec![10, 10, 5]);
    assert_records(&s.sim, "learners", &rows, &(0..25).collect::<Vec<_>>());
    let ids: std::collections::HashSet<_> = rows.iter().map(|r| r["learner_id"].clone()).collect();
    assert_eq!(ids.len(), 25);
    assert_eq!(rows[0]["learner_id"], "L000001");
    let (orgs, _) = walk(&s, "Organizations", 10, &[]).await;
    assert_records(&s.sim, "organizations", &orgs, &(0..25).collect::<Vec<_>>());
    // Timestamps come with varying precision, as the real feed's do.
    let lens: std::collections::HashSet<usize> =
        rows.iter().filter_map(|r| r["UpdatedDate"].as_str().map(str::len)).collect();
    assert!(lens.len() >= 2, "{lens:?}");
}

#[tokio::test]
async fn exactly_one_full_page_then_empty() {
    let s = Session::start(config(10)).await;
    let (rows, sizes) = walk(&s, "Learners", 10, &[]).await;
    assert_eq!(sizes, vec![10, 0]);
    assert_eq!(rows.len(), 10);
}

#[tokio::test]
async fn empty_stream_returns_empty_value() {
    let s = Session::start(config(0)).await;
    let (status, body) = read(s.get("/Learners").send().await.expect("send")).await;
    assert_eq!(status, 200);
    assert_eq!(body["value"], Value::Array(vec![]));
    assert!(body.get("@odata.nextLink").is_none());
}

#[tokio::test]
async fn updated_date_filter_selects_a_suffix_and_then_the_modified() {
    let s = Session::start(config(30)).await;
    let cut =
        s.sim.expected_record("learners", 20).expect("record")["UpdatedDate"].as_str().expect("UpdatedDate").to_owned();
    let ge = format!("UpdatedDate ge {cut}");
    let (rows, _) = walk(&s, "Learners", 100, &[("$filter", &ge), ("$orderby", "UpdatedDate")]).await;
    assert_records(&s.sim, "learners", &rows, &(20..30).collect::<Vec<_>>());
    let gt = format!("UpdatedDate gt {}", cut.replace('Z', "+00:00"));
    let (rows, _) = walk(&s, "Learners", 100, &[("$filter", &gt)]).await;
    assert_records(&s.sim, "learners", &rows, &(21..30).collect::<Vec<_>>());

    let since = s.sim.anchor().format("%Y-%m-%dT%H:%M:%S%.fZ").to_string();
    assert!(s.sim.modify("learners", 17));
    assert!(s.sim.modify("learners", 3));
    let filter = format!("UpdatedDate ge {since}");
    let (rows, _) = walk(&s, "Learners", 100, &[("$filter", &filter), ("$orderby", "UpdatedDate")]).await;
    assert_records(&s.sim, "learners", &rows, &[17, 3]);
}

#[tokio::test]
async fn top_above_the_cap_is_refused_and_server_paging_follows_next_links() {
    let s = Session::start(config(12).page_size_cap(5)).await;
    let (status, body) = read(s.get("/Learners").query(&[("$top", "6")]).send().await.expect("send")).await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("'5'")), "{body}");
    let mut url = format!("{}/Learners", s.sim.api_base());
    let mut rows = Vec::new();
    loop {
        let (status, body) = read(s.authed(s.client.get(&url)).send().await.expect("send")).await;
        assert_eq!(status, 200);
        let page = body["value"].as_array().cloned().unwrap_or_default();
        assert!(page.len() <= 5);
        rows.extend(page);
        match body["@odata.nextLink"].as_str() {
            Some(next) => url = next.to_owned(),
            None => break,
        }
    }
    assert_records(&s.sim, "learners", &rows, &(0..12).collect::<Vec<_>>());
    let default = Session::start(config(1)).await;
    let (status, _) = read(default.get("/Learners").query(&[("$top", "1001")]).send().await.expect("send")).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn select_and_bad_queries() {
    let s = Session::start(config(3)).await;
    let q = [("$select", "learner_id,UpdatedDate"), ("$top", "1")];
    let (status, body) = read(s.get("/Learners").query(&q).send().await.expect("send")).await;
    assert_eq!(status, 200);
    let row = &body["value"][0];
    assert_eq!(row.as_object().map(|o| o.len()), Some(2), "{row}");
    for bad in [
        vec![("$select", "nope")],
        vec![("$filter", "UpdatedDate ge yesterday")],
        vec![("$filter", "first_name eq 'x'")],
        vec![("$orderby", "email")],
        vec![("$top", "-1")],
    ] {
        let (status, body) = read(s.get("/Learners").query(&bad).send().await.expect("send")).await;
        assert_eq!(status, 400, "{bad:?}");
        assert!(body["error"]["message"].is_string());
    }
    let (status, _) = read(s.get("/Nope").send().await.expect("send")).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_million_records_are_served_lazily() {
    let s = Session::start(config(1_000_000)).await;
    let q = [("$skip", "999995"), ("$top", "10")];
    let (status, body) = read(s.get("/Learners").query(&q).send().await.expect("send")).await;
    assert_eq!(status, 200);
    let rows = body["value"].as_array().cloned().unwrap_or_default();
    assert_records(&s.sim, "learners", &rows, &(999_995..1_000_000).collect::<Vec<_>>());
    assert_eq!(rows[4]["learner_id"], "L1000000");
}
