//! Durable queues through the proxy: a queued route answers at once with a receipt and the app
//! gets each lead later, at the queue's pace; 303 to a thank-you page; 413 and 503 when a lead
//! cannot be stored; an Idempotency-Key seen again; a campaign's `action = "queue"`; the
//! reload rule for a queue that still holds leads; the admin endpoints behind the token.

mod common;

use std::time::Duration;

use common::{Kit, Seawall, TestUpstream, closed_addr};

const SOON: Duration = Duration::from_secs(10);

fn body(app: &str, queue_extra: &str) -> String {
    format!(
        r#"
[upstreams.app]
servers = ["{app}"]
connect_timeout = "200ms"
read_timeout = "2s"

[queues.leads]
deliver_to = "app"
rate = "50r/s"
max_body = "1KiB"
retry = {{ initial = "100ms", max = "200ms" }}
accepted = {{ status = 202, body = "Thanks, we got it.", content_type = "text/plain" }}
{queue_extra}

[[routes]]
name = "signup"
path_prefix = "/api/v1/users/register"
methods = ["POST"]
queue = "leads"

[[routes]]
name = "site"
upstream = "app"
"#
    )
}

async fn post(sw: &Seawall, path: &str, b: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut r = sw.client.post(sw.url(path)).body(b.to_string());
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_route_answers_at_once_and_the_app_gets_the_whole_lead_later() {
    let app = TestUpstream::start("app").await;
    let sw = Kit::new()
        .server("trusted_proxies = [\"127.0.0.1/32\"]")
        .start(&body(&app.addr.to_string(), ""));
    let r = post(
        &sw,
        "/api/v1/users/register?ref=x",
        r#"{"email":"lead@example.com"}"#,
        &[
            ("content-type", "application/json"),
            ("x-forwarded-for", "203.0.113.5"),
        ],
    )
    .await;
    assert_eq!(r.status(), 202);
    let receipt = r.headers()["x-seawall-receipt"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(receipt.len(), 32);
    let request_id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(r.text().await.unwrap(), "Thanks, we got it.");
    assert_eventually!(SOON, "the lead reaches the app", app.hits() == 1);
    let seen = app.last();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.uri, "/api/v1/users/register?ref=x");
    assert_eq!(&seen.body[..], br#"{"email":"lead@example.com"}"#);
    assert_eq!(seen.header("content-type").unwrap(), "application/json");
    assert_eq!(seen.header("x-seawall-receipt").unwrap(), receipt);
    assert_eq!(seen.header("idempotency-key").unwrap(), receipt);
    assert_eq!(seen.header("x-seawall-attempt").unwrap(), "1");
    assert!(seen.header("x-seawall-queued-at").unwrap().ends_with('Z'));
    assert_eq!(seen.header("x-real-ip").unwrap(), "203.0.113.5");
    assert_eq!(
        seen.header("x-forwarded-for").unwrap(),
        "203.0.113.5, 127.0.0.1",
        "as computed when it was accepted"
    );
    assert_eq!(seen.header("x-request-id").unwrap(), request_id);
    sw.expect_metric("seawall_queue_accepted_total", &[("queue", "leads")], 1.0)
        .await;
    sw.expect_metric(
        "seawall_queue_deliveries_total",
        &[("queue", "leads"), ("result", "delivered")],
        1.0,
    )
    .await;
    sw.expect_metric(
        "seawall_requests_total",
        &[("route", "signup"), ("status", "202")],
        1.0,
    )
    .await;
    // Page views on the same site are proxied as ever.
    assert_eq!(
        sw.get("/pricing").await.text().await.unwrap(),
        "app /pricing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_gets_a_303_to_its_thank_you_page() {
    let app = TestUpstream::start("app").await;
    let sw = Kit::new().start(&body(&app.addr.to_string(), "").replace(
        "accepted = { status = 202, body = \"Thanks, we got it.\", content_type = \"text/plain\" }",
        "accepted = { redirect = \"/thanks\" }",
    ));
    let r = post(&sw, "/api/v1/users/register", "email=a%40b.c", &[]).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/thanks");
    assert!(r.headers().contains_key("x-seawall-receipt"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lead_that_cannot_be_stored_is_refused_never_accepted() {
    // The app is down: leads stay queued. max_bytes is small enough to fill.
    let sw = Kit::new().start(&body(&closed_addr().to_string(), "max_bytes = \"1500\""));
    let big = "x".repeat(2000);
    let r = post(&sw, "/api/v1/users/register", &big, &[]).await;
    assert_eq!(r.status(), 413, "over the queue's max_body");
    let mut statuses = Vec::new();
    for i in 0..10 {
        let r = post(
            &sw,
            "/api/v1/users/register",
            &format!("lead {i} {}", "y".repeat(300)),
            &[],
        )
        .await;
        statuses.push(r.status().as_u16());
        if r.status() == 503 {
            assert_eq!(r.headers()["retry-after"], "30");
            assert!(r.headers().get("x-seawall-receipt").is_none());
        }
    }
    let accepted = statuses.iter().filter(|s| **s == 202).count();
    assert!(accepted >= 2 && statuses.contains(&503), "{statuses:?}");
    // Nothing queued was dropped for room.
    let v: serde_json::Value = sw.admin_get("/-/queues").await.json().await.unwrap();
    assert_eq!(v["queues"][0]["depth"], accepted);
    sw.expect_metric(
        "seawall_queue_refused_total",
        &[("queue", "leads"), ("reason", "too_large")],
        1.0,
    )
    .await;
    sw.expect_metric(
        "seawall_queue_refused_total",
        &[("queue", "leads"), ("reason", "full")],
        (10 - accepted) as f64,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_seen_again_gets_the_first_receipt_and_adds_nothing() {
    let app = TestUpstream::start("app").await;
    let sw = Kit::new().start(&body(&app.addr.to_string(), ""));
    let key = [("idempotency-key", "form-7f3a")];
    let first = post(&sw, "/api/v1/users/register", "a", &key).await;
    let again = post(&sw, "/api/v1/users/register", "a", &key).await;
    assert_eq!(first.status(), 202);
    assert_eq!(again.status(), 202);
    assert_eq!(
        first.headers()["x-seawall-receipt"],
        again.headers()["x-seawall-receipt"]
    );
    assert_eventually!(SOON, "delivered", app.hits() >= 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.hits(), 1, "one lead, delivered once");
    assert_eq!(app.last().header("idempotency-key").unwrap(), "form-7f3a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_can_queue_its_sign_ups_while_page_views_pass() {
    let app = TestUpstream::start("app").await;
    let main = body(&app.addr.to_string(), "").replace("queue = \"leads\"", "upstream = \"app\"");
    let sw = Kit::new()
        .campaigns(
            "tag_sources = [\"query:ref\"]\ningest_queue = \"leads\"\n\
             [unregistered]\naction = \"queue\"\ntargets = [\"/api/v1/users/register\"]\n",
        )
        .start(&main);
    let r = post(&sw, "/api/v1/users/register?ref=NEWS", "lead", &[]).await;
    assert_eq!(r.status(), 202);
    assert!(r.headers().contains_key("x-seawall-receipt"));
    assert_eq!(sw.get("/?ref=NEWS").await.text().await.unwrap(), "app /");
    assert_eventually!(SOON, "the queued lead is delivered", app.hits() == 2);
    let lead = app.seen().into_iter().find(|s| s.method == "POST").unwrap();
    assert_eq!(lead.header("x-seawall-campaign").unwrap(), "unregistered");
    sw.expect_metric(
        "seawall_campaign_requests_total",
        &[("campaign", "unregistered"), ("action", "queue")],
        1.0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_queue_that_holds_leads_is_a_reload_error_naming_it() {
    let kit = Kit::new();
    let sw = Kit::new().start(&body(&closed_addr().to_string(), ""));
    for _ in 0..3 {
        assert_eq!(
            post(&sw, "/api/v1/users/register", "lead", &[])
                .await
                .status(),
            202
        );
    }
    let without =
        body(&closed_addr().to_string(), "").replace("queue = \"leads\"", "upstream = \"app\"");
    let i = without.find("[queues.leads]").unwrap();
    let j = without.find("[[routes]]").unwrap();
    let without = format!("{}{}", &without[..i], &without[j..]);
    sw.rewrite(&kit, &without);
    let r = sw
        .client
        .post(sw.admin_url("/-/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let v: serde_json::Value = r.json().await.unwrap();
    let errors = v["errors"].to_string();
    assert!(errors.contains("leads") && errors.contains('3'), "{errors}");
    assert_eq!(sw.state().status().generation, 1, "the old config stays");
    // Still accepting on the old config.
    assert_eq!(
        post(&sw, "/api/v1/users/register", "lead", &[])
            .await
            .status(),
        202
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_admin_endpoints_pause_resume_and_redrive_behind_the_token() {
    let app = TestUpstream::builder("app").status(400).start().await;
    let sw = Kit::new()
        .server("admin_token_file = \"token\"")
        .file("token", "t0ken\n")
        .start(&body(&app.addr.to_string(), ""));
    let admin = |p: &str| sw.admin_url(p);
    let r = sw
        .client
        .post(admin("/-/queues/leads/pause"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = sw
        .client
        .post(admin("/-/queues/leads/pause"))
        .bearer_auth("t0ken")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        post(&sw, "/api/v1/users/register", "lead", &[])
            .await
            .status(),
        202
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.hits(), 0, "paused: accepted, not delivered");
    let v: serde_json::Value = sw.admin_get("/-/queues").await.json().await.unwrap();
    assert_eq!(v["queues"][0]["paused"], true);
    assert_eq!(v["queues"][0]["depth"], 1);
    sw.client
        .post(admin("/-/queues/leads/resume"))
        .bearer_auth("t0ken")
        .send()
        .await
        .unwrap();
    // The app answers 400: a dead letter at once.
    assert_eventually!(SOON, "a dead letter", {
        let v: serde_json::Value = sw
            .admin_get("/-/queues/leads/dead")
            .await
            .json()
            .await
            .unwrap();
        v["dead_letters"].as_array().is_some_and(|d| d.len() == 1)
    });
    let dead: serde_json::Value = sw
        .admin_get("/-/queues/leads/dead")
        .await
        .json()
        .await
        .unwrap();
    assert!(
        dead["dead_letters"][0].get("body").is_none(),
        "no bodies without asking"
    );
    assert_eq!(dead["dead_letters"][0]["last"], "status 400");
    let r = sw
        .client
        .get(admin("/-/queues/leads/dead?body=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "bodies only with the token");
    let r = sw
        .client
        .post(admin("/-/queues/leads/dead/redrive"))
        .bearer_auth("t0ken")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eventually!(SOON, "redriven and tried again", app.hits() == 2);
    let r = sw
        .client
        .post(admin("/-/queues/nope/pause"))
        .bearer_auth("t0ken")
        .send()
        .await;
    assert_eq!(r.unwrap().status(), 404);
}
