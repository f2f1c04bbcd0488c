use super::*;

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
        scope: Scope {
            targets: targets.iter().map(|t| t.to_string()).collect(),
            methods: None,
        },
        new_fields: vec![],
        action,
        limit: None,
        name_span: 0..0,
        target_spans: vec![],
        counter: Default::default(),
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
        tag_sources: vec![
            KeySource::Query("utm_campaign".into()),
            KeySource::Query("ref".into()),
            KeySource::Cookie("utm_campaign".into()),
            KeySource::Header(http::HeaderName::from_static("x-campaign")),
        ],
        ingest: None,
        ingest_queue: None,
        unregistered: Unregistered {
            action: unregistered,
            scope: Scope {
                targets: vec![],
                methods: None,
            },
            limit: None,
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
    classify(c, &r, r.uri.path(), at(now)).map(|x| {
        (
            x.campaign.to_string(),
            x.action,
            x.action.label(),
            x.tag.value,
        )
    })
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
            Action::Reject,
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
    assert_eq!(got.1, Action::Pause);
    assert!(got.1.refuses());
    assert_eq!(got.2, "pause");
}

#[test]
fn an_action_applies_only_to_the_methods_and_paths_of_its_scope() {
    let mut c = campaigns(UnregisteredAction::Divert);
    let writes = Some(WRITE_METHODS.to_vec());
    c.launches[0].scope.methods = writes.clone();
    c.unregistered.scope = Scope {
        targets: vec!["/api/v1/users/register".into()],
        methods: writes,
    };
    let get = |uri: &str| {
        let mut r = req(uri, &[]);
        r.set_method(http::Method::GET);
        let x = classify(&c, &r, r.uri.path(), at(IN)).unwrap();
        (x.action, x.limit.is_some())
    };
    // A newsletter link (a GET with a tag) reaches the app, attributed, for either kind of tag.
    assert_eq!(
        get("/api/v1/users/register?ref=SUMMERSALE20").0,
        Action::Pass
    );
    assert_eq!(get("/?utm_campaign=newsletter").0, Action::Pass);
    assert_eq!(get("/api/v1/users/register?ref=newsletter").0, Action::Pass);
    // The sign-up itself (a POST on a target) is diverted, for either kind of tag.
    let post = |uri: &str| class(&c, uri, &[], IN).unwrap().1;
    assert_eq!(
        post("/api/v1/users/register?ref=SUMMERSALE20"),
        Action::Divert
    );
    assert_eq!(
        post("/api/v1/users/register?ref=newsletter"),
        Action::Divert
    );
    // An unregistered tag off its targets passes too.
    assert_eq!(post("/cart?ref=newsletter"), Action::Pass);
}

#[test]
fn an_overlong_or_unprintable_tag_counts_as_invalid_and_is_kept_cut() {
    let c = campaigns(UnregisteredAction::Divert);
    let long = "x".repeat(65);
    let got = class(&c, &format!("/x?ref={long}"), &[], IN).unwrap();
    assert_eq!(
        (got.0.as_str(), got.3.as_str()),
        ("unregistered", INVALID_TAG)
    );
    assert_eq!(
        got.1,
        Action::Divert,
        "an invalid tag follows the unregistered policy"
    );
    let ok = "y".repeat(64);
    assert_eq!(class(&c, &format!("/x?ref={ok}"), &[], IN).unwrap().3, ok);
    // Encoded, it is judged by its decoded length; control characters are never a tag.
    let encoded = "%79".repeat(64);
    assert_eq!(
        class(&c, &format!("/x?ref={encoded}"), &[], IN).unwrap().3,
        ok
    );
    for bad in ["a%0Db", "a%00", "x%0Ay"] {
        assert_eq!(
            class(&c, &format!("/x?ref={bad}"), &[], IN).unwrap().3,
            INVALID_TAG,
            "{bad}"
        );
    }
    // A megabyte cookie: not decoded, kept as 64 bytes for the log.
    let huge = format!("utm_campaign={}", "z".repeat(1 << 20));
    let r = req("/x", &[("cookie", &huge)]);
    let got = classify(&c, &r, "/x", at(IN)).unwrap();
    assert_eq!(got.tag.value, INVALID_TAG);
    assert_eq!(got.tag.raw, "z".repeat(MAX_TAG_LEN));
}

/// Found by `fuzz/fuzz_targets/campaign_tag.rs`: the raw tag logs show was cut to 64 bytes
/// before invalid UTF-8 became U+FFFD (three bytes each), so it could reach 192 bytes.
#[test]
fn the_raw_tag_shown_stays_within_64_bytes_whatever_its_bytes() {
    let c = campaigns(UnregisteredAction::Pass);
    let mut cookie = b"sid=1; utm_campaign=%0d%0a".to_vec();
    cookie.extend([0xff; 36]);
    let mut r = RequestHeader::build("POST", b"/p", None).unwrap();
    r.append_header("cookie", http::HeaderValue::from_bytes(&cookie).unwrap())
        .unwrap();
    let tag = read_tag(&c, &r).expect("a tag");
    assert_eq!(tag.value, INVALID_TAG);
    assert!(tag.raw.len() <= MAX_TAG_LEN, "{} bytes", tag.raw.len());
    assert!(tag.raw.starts_with("%0d%0a\u{fffd}"), "{:?}", tag.raw);
}
