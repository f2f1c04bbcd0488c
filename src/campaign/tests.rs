use super::*;
use crate::config::values::named_source;

fn launch(name: &str, tags: &[&str], targets: &[&str], action: LaunchAction) -> Launch {
    Launch {
        name: Arc::from(name),
        tags: tags.iter().map(|t| t.to_lowercase()).collect(),
        owner: None,
        ticket: None,
        starts: Some("2026-06-01T09:00:00Z".parse().unwrap()),
        ends: Some("2026-06-30T23:59:59Z".parse().unwrap()),
        expected_volume: None,
        expected_peak_rps: Some(300.0),
        targets: targets.iter().map(|t| t.to_string()).collect(),
        new_fields: vec![],
        action,
        limit: None,
        name_span: 0..0,
        target_spans: vec![],
        bound: None,
        counter: None,
    }
}

fn campaigns(unregistered: UnregisteredAction) -> Campaigns {
    let launches = vec![
        launch(
            "summer-sale",
            &["SUMMERSALE20"],
            &["/api/v1/users/register"],
            LaunchAction::Divert,
        ),
        launch("paused", &["HOLD"], &[], LaunchAction::Pause),
    ];
    let by_tag = launches
        .iter()
        .enumerate()
        .flat_map(|(i, l)| l.tags.iter().map(move |t| (t.clone(), i)))
        .collect();
    Campaigns {
        tag_sources: [
            "query:utm_campaign",
            "query:ref",
            "cookie:utm_campaign",
            "header:x-campaign",
        ]
        .iter()
        .map(|s| named_source(s).unwrap())
        .collect(),
        ingest: None,
        ingest_queue: None,
        unregistered: Unregistered {
            action: unregistered,
            limit: None,
            bound: None,
        },
        launches,
        by_tag,
    }
}

fn req(uri: &str, headers: &[(&str, &str)]) -> RequestHeader {
    let mut r = RequestHeader::build("POST", uri.as_bytes(), None).unwrap();
    for (k, v) in headers {
        r.append_header(k.to_string(), *v).unwrap();
    }
    r
}

fn at(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

const IN: &str = "2026-06-15T12:00:00Z";

fn class(
    c: &Campaigns,
    uri: &str,
    headers: &[(&str, &str)],
    now: &str,
) -> Option<(String, Action, &'static str, String)> {
    let r = req(uri, headers);
    classify(c, &r, r.uri.path(), at(now))
        .map(|x| (x.campaign.to_string(), x.action, x.action_label, x.tag))
}

#[test]
fn a_registered_tag_on_a_target_path_is_diverted() {
    let c = campaigns(UnregisteredAction::Pass);
    let got = class(&c, "/api/v1/users/register?ref=SUMMERSALE20", &[], IN).unwrap();
    assert_eq!(
        got,
        (
            "summer-sale".into(),
            Action::Divert,
            "divert",
            "summersale20".into()
        )
    );
    // Case-insensitive, URL-decoded, from any source.
    let got = class(
        &c,
        "/api/v1/users/register?utm_campaign=summer%53ale20",
        &[],
        IN,
    )
    .unwrap();
    assert_eq!(got.0, "summer-sale");
    let got = class(
        &c,
        "/api/v1/users/register",
        &[("cookie", "a=1; utm_campaign=SummerSale20")],
        IN,
    );
    assert_eq!(got.unwrap().0, "summer-sale");
    let got = class(
        &c,
        "/api/v1/users/register",
        &[("x-campaign", "SUMMERSALE20")],
        IN,
    );
    assert_eq!(got.unwrap().0, "summer-sale");
}

#[test]
fn the_same_tag_elsewhere_passes_to_the_app_attributed() {
    let c = campaigns(UnregisteredAction::Divert);
    let got = class(&c, "/pricing?ref=SUMMERSALE20", &[], IN).unwrap();
    assert_eq!(
        got,
        (
            "summer-sale".into(),
            Action::Pass,
            "pass",
            "summersale20".into()
        )
    );
}

#[test]
fn untagged_requests_are_not_campaign_traffic() {
    let c = campaigns(UnregisteredAction::Divert);
    assert_eq!(class(&c, "/api/v1/users/register", &[], IN), None);
    assert_eq!(class(&c, "/api/v1/users/register?ref=", &[], IN), None);
    assert_eq!(
        class(&c, "/api/v1/users/register?other=SUMMERSALE20", &[], IN),
        None
    );
}

#[test]
fn unknown_tags_follow_the_unregistered_policy() {
    let c = campaigns(UnregisteredAction::Reject);
    let got = class(&c, "/x?ref=BLACKFRIDAY+2026", &[], IN).unwrap();
    assert_eq!(
        got,
        (
            "unregistered".into(),
            Action::Refuse,
            "reject",
            "blackfriday 2026".into()
        )
    );
    let c = campaigns(UnregisteredAction::Divert);
    assert_eq!(class(&c, "/x?ref=X", &[], IN).unwrap().1, Action::Divert);
}

#[test]
fn outside_its_window_a_launch_tag_counts_as_unregistered() {
    let c = campaigns(UnregisteredAction::Pass);
    let uri = "/api/v1/users/register?ref=SUMMERSALE20";
    assert_eq!(
        class(&c, uri, &[], "2026-06-01T08:59:59Z").unwrap().0,
        "unregistered"
    );
    assert_eq!(
        class(&c, uri, &[], "2026-06-01T09:00:00Z").unwrap().0,
        "summer-sale"
    );
    assert_eq!(
        class(&c, uri, &[], "2026-06-30T23:59:59Z").unwrap().0,
        "summer-sale"
    );
    assert_eq!(
        class(&c, uri, &[], "2026-07-01T00:00:00Z").unwrap().0,
        "unregistered"
    );
}

#[test]
fn a_paused_launch_is_refused() {
    let c = campaigns(UnregisteredAction::Pass);
    let got = class(&c, "/anything?ref=hold", &[], IN).unwrap();
    assert_eq!(got.1, Action::Refuse);
    assert_eq!(got.2, "pause");
}
