use tributary_simulator::{Provider, SimConfig};

use super::common::{Session, read};

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

#[tokio::test]
async fn pages_announce_the_next_one_in_x_next_page_until_the_last() {
    let s = Session::start(SimConfig::new(Provider::GitLab, 10).parents(5).page_size_cap(2)).await;
    let mut page = "1".to_owned();
    let mut seen = Vec::new();
    loop {
        let r = s
            .get("/projects")
            .query(&[("per_page", "100"), ("order_by", "id"), ("sort", "asc"), ("page", &page)])
            .send()
            .await
            .unwrap();
        assert_eq!(header(&r, "x-total").as_deref(), Some("5"));
        assert_eq!(header(&r, "x-total-pages").as_deref(), Some("3"));
        assert!(header(&r, "ratelimit-remaining").is_some());
        let next = header(&r, "x-next-page").expect("X-Next-Page is always sent");
        let (status, body) = read(r).await;
        assert_eq!(status, 200);
        seen.extend(body.as_array().unwrap().iter().map(|p| p["path_with_namespace"].as_str().unwrap().to_owned()));
        if next.is_empty() {
            break;
        }
        page = next;
    }
    let expected: Vec<String> = (1..=5).map(|i| format!("sim-group/project-{i:04}")).collect();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn updated_after_filters_and_projects_need_order_by_updated_at_for_it() {
    let s = Session::start(SimConfig::new(Provider::GitLab, 9).parents(3)).await;
    let after = s.sim.anchor().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    let (status, body) = read(s.get("/projects").query(&[("updated_after", &after)]).send().await.unwrap()).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("order_by=updated_at"), "{body}");

    assert!(s.sim.modify("issues", 4));
    let project = s.sim.parent_of("issues", 4).unwrap();
    let id = (4_000_000 + project).to_string();
    let (status, issues) =
        read(s.get(&format!("/projects/{id}/issues")).query(&[("updated_after", &after)]).send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(issues.as_array().map(Vec::len), Some(1), "{issues}");
    assert_eq!(issues[0], s.sim.expected_record("issues", 4).unwrap());
    assert!(issues[0]["references"]["full"].as_str().unwrap().starts_with("sim-group/project-"));
    // The project may also be named by its URL-encoded path.
    let path = format!("/projects/sim-group%2Fproject-{:04}/merge_requests", project + 1);
    let (status, mrs) = read(s.get(&path).send().await.unwrap()).await;
    assert_eq!((status, mrs.as_array().map(Vec::len)), (200, Some(3)));
    let r = s
        .client
        .get(format!("{}/projects", s.sim.api_base()))
        .header("PRIVATE-TOKEN", "glpat-wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(read(r).await.0, 401);
}
