//! The API's routes against a store in a temporary folder, through the router (no socket).

use super::*;
use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use rfidgw_sip2::Secret;
use tower::ServiceExt;

async fn state() -> (tempfile::TempDir, ApiState) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("api.db")).await.unwrap();
    store
        .append(&[
            crate::store::JournalEntry::new("daemon_started", serde_json::json!({})),
            crate::store::JournalEntry::new("tag_arrived", serde_json::json!({"uid": "E0"})),
        ])
        .await
        .unwrap();
    let config: crate::config::Config =
        toml::from_str("[[devices]]\nid = \"gate\"\ndriver = \"sim\"\nsettings = { round_ms = 5 }")
            .unwrap();
    let (controls, _) = mpsc::channel(1);
    let (events, _) = mpsc::channel::<Event>(1);
    let events = events.downgrade();
    let published = broadcast::channel(1).0;
    let token = |name: &str, role| auth::TokenConfig {
        name: name.into(),
        role,
        sha256: Some(hex::encode(auth::token_digest(&format!("{name}-token")))),
        token: None,
        token_file: None,
        rate_limit: None,
    };
    let tokens = [
        token("read", auth::Role::Read),
        token("op", auth::Role::Operate),
        token("admin", auth::Role::Admin),
    ];
    let state = ApiState {
        registry: Registry::from_config(&config),
        store: store.clone(),
        started: Instant::now(),
        peers: std::sync::Arc::new(|| {
            vec![PeerStatus {
                name: "ils".into(),
                state: "online".into(),
                detail: None,
            }]
        }),
        stations: StationsStatus::default(),
        journal_health: JournalHealth::default(),
        controls,
        events,
        published: published.clone(),
        loans: LoansCache::default(),
        outbox: Outbox::new(
            store.clone(),
            published,
            crate::northbound::event::Publishing {
                site: "test".into(),
                patron_ids: false,
            },
        ),
        ils: None,
        handles: Arc::new(HashMap::new()),
        security: rfidgw_tag::SecurityConfig::default(),
        command_within: Duration::from_secs(1),
        auth: Arc::new(Auth::from_config(&tokens, auth::RateLimitConfig::default()).unwrap()),
        metrics: None,
        stop: CancellationToken::new(),
        streams: events::stream_slots(),
        max_body_bytes: 1024,
    };
    (dir, state)
}

async fn get(state: ApiState, uri: &str) -> (StatusCode, serde_json::Value) {
    send(state, "GET", uri, "").await
}

async fn send(
    state: ApiState,
    method: &str,
    uri: &str,
    body: &str,
) -> (StatusCode, serde_json::Value) {
    send_as(state, Some("op-token"), method, uri, body).await
}

async fn send_as(
    state: ApiState,
    token: Option<&str>,
    method: &str,
    uri: &str,
    body: &str,
) -> (StatusCode, serde_json::Value) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request.body(Body::from(body.to_owned())).unwrap();
    let response = router(state).oneshot(request).await.unwrap();
    let code = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        code,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

/// A self-check station `pad` and a return station `returns` (with a sort plan) whose
/// requests a stand-in task answers as the stations would.
fn with_desks(mut state: ApiState) -> ApiState {
    let (controls, mut requests) = mpsc::channel(4);
    state.controls = controls;
    state
        .stations
        .set_selfcheck("pad", SelfCheckStatus::default());
    state.stations.set_return(
        "returns",
        ReturnStatus {
            plan: Some("schedule".into()),
            ..ReturnStatus::default()
        },
    );
    tokio::spawn(async move {
        while let Some(StationControl::Desk { input, .. }) = requests.recv().await {
            match input {
                StationInput::Patron { patron, pin, reply } => {
                    let answer = match (patron.as_str(), pin.as_ref().map(Secret::expose)) {
                        ("P1001", Some("1234")) => Ok("S1-1".to_owned()),
                        ("P1001", _) => Err("wrong_pin".to_owned()),
                        _ => Err("unknown".to_owned()),
                    };
                    let _ = reply.send(answer);
                }
                StationInput::Finish { reply, .. } => {
                    let _ = reply.send(Err("no session at `pad`".into()));
                }
                StationInput::SortPlan { plan, reply } => {
                    let _ = reply.send(match plan.as_deref() {
                        None => Ok("default".into()),
                        Some("evening") => Ok("evening".into()),
                        Some(other) => Err(format!("no plan `{other}`")),
                    });
                }
                StationInput::Report(..) => {}
            }
        }
    });
    state
}

async fn queue_checkout(store: &Store, patron: &str) -> i64 {
    store
        .enqueue(&crate::store::NewQueued {
            station: "pad".into(),
            kind: crate::store::QueuedKind::Checkout,
            item_id: "I0001".into(),
            patron: Some(patron.into()),
            at: std::time::SystemTime::now(),
            due: Some(std::time::SystemTime::now()),
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn status_lists_devices_peers_and_the_journal_size() {
    let (_dir, state) = state().await;
    let (code, body) = get(state, "/api/v1/status").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(body["devices"][0]["id"], "gate");
    assert_eq!(body["devices"][0]["state"], "starting");
    assert_eq!(body["peers"][0]["state"], "online");
    assert_eq!(body["journal_events"], 2);
}

#[tokio::test]
async fn journal_returns_newest_rows_filtered_by_kind() {
    let (_dir, state) = state().await;
    let (code, body) = get(state.clone(), "/api/v1/journal?limit=1").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(body.as_array().unwrap().len(), 1);
    assert_eq!(body[0]["kind"], "tag_arrived");
    let (_, body) = get(state, "/api/v1/journal?kind=daemon_started").await;
    assert_eq!(body[0]["kind"], "daemon_started");
}

#[tokio::test]
async fn a_bad_limit_or_unknown_parameter_is_a_400_that_says_why() {
    let (_dir, state) = state().await;
    let (code, body) = get(state.clone(), "/api/v1/journal?limit=0").await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["message"].as_str().unwrap().contains("limit"),
        "{body}"
    );
    let (code, _) = get(state, "/api/v1/journal?limt=5").await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn status_counts_what_circulation_has_left_to_do() {
    let (_dir, state) = state().await;
    queue_checkout(&state.store, "P1001").await;
    let owed = state
        .store
        .owe_pending("pad", "E0", None, false, "loan")
        .await
        .unwrap();
    state
        .store
        .set_owed_state(owed, OwedState::Owed, None)
        .await
        .unwrap();
    let state = with_desks(state);
    let (code, body) = get(state, "/api/v1/status").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        body["circulation"],
        serde_json::json!({ "offline_queue": 1, "owed_writes": 1, "worklist_open": 0 })
    );
    assert_eq!(body["stations"]["selfchecks"]["pad"]["sessions"], 0);
    assert_eq!(body["stations"]["returns"]["returns"]["plan"], "schedule");
    assert!(body["stations"]["gates"].is_object(), "{body}");
}

#[tokio::test]
async fn the_offline_queue_lists_open_transactions_without_the_patron() {
    let (_dir, state) = state().await;
    let done = queue_checkout(&state.store, "P-SECRET-77").await;
    let open = queue_checkout(&state.store, "P-SECRET-77").await;
    state
        .store
        .finish_queued(done, QueueState::Done, "{\"ok\":true}")
        .await
        .unwrap();
    let (code, body) = get(state.clone(), "/api/v1/offline-queue").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(body.as_array().unwrap().len(), 1);
    assert_eq!(
        (body[0]["id"].as_i64(), &body[0]["state"]),
        (Some(open), &"queued".into())
    );
    let (_, body) = get(state.clone(), "/api/v1/offline-queue?state=done,queued").await;
    assert_eq!(body.as_array().unwrap().len(), 2);
    assert_eq!(body[0]["outcome"]["ok"], true);
    assert!(!body.to_string().contains("P-SECRET-77"), "{body}");
    let (_, body) = get(state, "/api/v1/offline-queue?state=all&limit=1").await;
    assert_eq!(body.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn listings_refuse_a_bad_state_or_limit_naming_the_parameter() {
    let (_dir, state) = state().await;
    for uri in [
        "/api/v1/offline-queue?state=lost",
        "/api/v1/owed-writes?state=owed,lost",
        "/api/v1/offline-queue?limit=5000",
        "/api/v1/owed-writes?limit=0",
        "/api/v1/worklist?limit=-1",
        "/api/v1/worklist?limit=many",
        "/api/v1/worklist?all=perhaps",
        "/api/v1/worklist?everything=true",
    ] {
        let (code, body) = get(state.clone(), uri).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{uri}");
        let error = body["error"]["message"].as_str().unwrap_or_default();
        let parameter = uri.split(['?', '=']).nth(1).unwrap();
        assert!(error.contains(parameter), "{uri}: {body}");
    }
}

#[tokio::test]
async fn resolving_a_worklist_entry_answers_with_it_once_and_only_once() {
    let (_dir, state) = state().await;
    let id = state
        .store
        .add_work(&crate::store::NewWork {
            kind: "not_diverted",
            station: "returns".into(),
            item_id: Some("I0001".into()),
            uid: None,
            reason: "jam".into(),
            ref_id: None,
        })
        .await
        .unwrap();
    let uri = format!("/api/v1/worklist/{id}/resolve");
    let good = r#"{"by": "anna", "resolution": "put in bin 2 by hand"}"#;
    let cases = [
        ("", StatusCode::BAD_REQUEST, "JSON body"),
        ("{\"by\": ", StatusCode::BAD_REQUEST, "not JSON"),
        (
            r#"{"by": "anna"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "resolution",
        ),
        (
            r#"{"by": 7, "resolution": "x"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "by",
        ),
        (
            r#"{"by": " ", "resolution": "x"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "by",
        ),
    ];
    for (body, code, says) in cases {
        let (got, answer) = send(state.clone(), "POST", &uri, body).await;
        assert_eq!(got, code, "{body}: {answer}");
        assert!(
            answer["error"]["message"].as_str().unwrap().contains(says),
            "{body}: {answer}"
        );
    }
    let (code, row) = send(state.clone(), "POST", &uri, good).await;
    assert_eq!(code, StatusCode::OK, "{row}");
    assert_eq!(
        (&row["id"], &row["resolved_by"]),
        (&id.into(), &"anna".into())
    );
    let (code, _) = send(state.clone(), "POST", &uri, good).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (code, _) = send(state.clone(), "POST", "/api/v1/worklist/x/resolve", good).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    let (_, open) = get(state.clone(), "/api/v1/worklist").await;
    assert_eq!(open, serde_json::json!([]));
    let (_, all) = get(state, "/api/v1/worklist?all=true").await;
    assert_eq!(all[0]["resolution"], "put in bin 2 by hand");
}

#[tokio::test]
async fn a_kiosk_opens_a_session_and_a_refusal_carries_the_stations_reason() {
    let (_dir, state) = state().await;
    let state = with_desks(state);
    let uri = "/api/v1/stations/pad/patron";
    let (code, body) = send(
        state.clone(),
        "POST",
        uri,
        r#"{"patron": "P1001", "pin": "1234"}"#,
    )
    .await;
    assert_eq!((code, &body["session"]), (StatusCode::OK, &"S1-1".into()));
    let (code, body) = send(
        state.clone(),
        "POST",
        uri,
        r#"{"patron": "P1001", "pin": "9876"}"#,
    )
    .await;
    assert_eq!(
        (code, &body["error"]["code"], &body["error"]["reason"]),
        (StatusCode::CONFLICT, &"refused".into(), &"wrong_pin".into())
    );
    assert!(!body.to_string().contains("9876"));
    // A PIN of the wrong type is refused without being echoed.
    let (code, body) = send(
        state.clone(),
        "POST",
        uri,
        r#"{"patron": "P1001", "pin": 98765}"#,
    )
    .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(!body.to_string().contains("98765"), "{body}");
    let (code, _) = send(state.clone(), "POST", uri, r#"{"pin": "1234"}"#).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    let (code, _) = send(
        state.clone(),
        "POST",
        "/api/v1/stations/nowhere/patron",
        r#"{"patron": "P1001"}"#,
    )
    .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (code, _) = send(
        state.clone(),
        "POST",
        "/api/v1/stations/returns/patron",
        r#"{"patron": "P1001"}"#,
    )
    .await;
    assert_eq!(code, StatusCode::CONFLICT);
    let (code, body) = send(state, "POST", "/api/v1/stations/pad/finish", "").await;
    assert_eq!(
        (code, &body["error"]["message"]),
        (StatusCode::CONFLICT, &"no session at `pad`".into())
    );
}

#[tokio::test]
async fn staff_switch_a_return_stations_sort_plan_and_back_to_the_schedule() {
    let (_dir, state) = state().await;
    let state = with_desks(state);
    let uri = "/api/v1/stations/returns/sort-plan";
    let (code, body) = send(state.clone(), "PUT", uri, r#"{"plan": "evening"}"#).await;
    assert_eq!((code, &body["plan"]), (StatusCode::OK, &"evening".into()));
    let (code, body) = send(state.clone(), "PUT", uri, r#"{"plan": null}"#).await;
    assert_eq!(
        (code, &body["plan"], &body["selection"]),
        (StatusCode::OK, &"default".into(), &"schedule".into())
    );
    let (code, body) = send(state.clone(), "PUT", uri, r#"{"plan": "summer"}"#).await;
    assert_eq!(
        (code, &body["error"]["reason"]),
        (StatusCode::CONFLICT, &"no plan `summer`".into())
    );
    let (code, _) = send(state.clone(), "PUT", uri, "{}").await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    let (code, _) = send(
        state.clone(),
        "PUT",
        "/api/v1/stations/pad/sort-plan",
        r#"{"plan": null}"#,
    )
    .await;
    assert_eq!(code, StatusCode::CONFLICT);
    let (code, _) = send(
        state,
        "PUT",
        "/api/v1/stations/nowhere/sort-plan",
        r#"{"plan": null}"#,
    )
    .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
}

/// A response's status, headers and JSON body.
async fn raw(state: ApiState, request: Request<Body>) -> axum::response::Response {
    router(state).oneshot(request).await.unwrap()
}

fn error_code(body: &serde_json::Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

#[tokio::test]
#[allow(clippy::too_many_lines)] // one scenario, read top to bottom
async fn every_route_but_health_needs_a_token_of_the_role_its_documentation_names() {
    let (_dir, state) = state().await;
    let document = openapi_document();
    assert_eq!(document["openapi"], "3.1.0");
    let mut checked = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        // Path parameters as any value: the token check comes first.
        let uri: String = path
            .split('/')
            .map(|s| if s.starts_with('{') { "x" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        for (method, operation) in item.as_object().unwrap() {
            let method = method.to_ascii_uppercase();
            let needs = operation["security"][0]["bearer"][0].as_str();
            let Some(needs) = needs else {
                assert!(
                    [
                        "/healthz",
                        "/api/v1",
                        "/api/v1/health",
                        "/api/v1/openapi.json"
                    ]
                    .contains(&path.as_str()),
                    "{method} {path} is public but not a health route"
                );
                let (code, _) = send_as(state.clone(), None, &method, &uri, "").await;
                assert_eq!(code, StatusCode::OK, "{method} {path}");
                continue;
            };
            checked += 1;
            for token in [None, Some("wrong-token"), Some("")] {
                let (code, body) = send_as(state.clone(), token, &method, &uri, "{}").await;
                assert_eq!(code, StatusCode::UNAUTHORIZED, "{method} {path} {token:?}");
                assert_eq!(error_code(&body), "unauthorized", "{body}");
            }
            let below: &[&str] = match needs {
                "read" => &[],
                "operate" => &["read-token"],
                "admin" => &["read-token", "op-token"],
                other => panic!("{method} {path}: unknown role {other}"),
            };
            for token in below {
                let (code, body) = send_as(state.clone(), Some(token), &method, &uri, "{}").await;
                assert_eq!(code, StatusCode::FORBIDDEN, "{method} {path} {token}");
                assert_eq!(error_code(&body), "forbidden", "{body}");
                assert!(
                    body["error"]["message"].as_str().unwrap().contains(needs),
                    "{body}"
                );
            }
        }
    }
    assert!(checked > 30, "only {checked} secured operations");
    // The role table, as documented, for the routes that change things.
    let role = |path: &str, method: &str| {
        document["paths"][path][method]["security"][0]["bearer"][0]
            .as_str()
            .unwrap_or("public")
            .to_owned()
    };
    for (path, method, want) in [
        ("/api/v1/events", "get", "read"),
        ("/api/v1/alarms/{alarm_id}/ack", "post", "operate"),
        ("/api/v1/stations/{station}/silence", "delete", "operate"),
        ("/api/v1/devices/{device}/outputs", "post", "operate"),
        ("/api/v1/worklist/{id}/resolve", "post", "operate"),
        ("/api/v1/ils/checkout", "post", "operate"),
        ("/api/v1/auth/tokens", "get", "admin"),
        ("/metrics", "get", "read"),
        ("/api/v1/health", "get", "public"),
    ] {
        assert_eq!(role(path, method), want, "{method} {path}");
    }
}

#[tokio::test]
async fn a_token_is_accepted_case_insensitively_and_never_echoed() {
    let (_dir, state) = state().await;
    let request = Request::get("/api/v1/auth/whoami")
        .header("authorization", "bearer   read-token ")
        .body(Body::empty())
        .unwrap();
    let response = raw(state.clone(), request).await;
    assert_eq!(response.status(), StatusCode::OK);
    let request = Request::get("/api/v1/version")
        .header("authorization", "Bearer secret-guess-123")
        .body(Body::empty())
        .unwrap();
    let response = raw(state.clone(), request).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(
        response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(!String::from_utf8_lossy(&body).contains("secret-guess-123"));
    let (code, tokens) =
        send_as(state, Some("admin-token"), "GET", "/api/v1/auth/tokens", "").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        tokens[1],
        serde_json::json!({"name": "op", "role": "operate"})
    );
    assert!(!tokens.to_string().contains("token\""), "{tokens}");
}

#[tokio::test]
#[allow(clippy::too_many_lines)] // a table of cases
async fn errors_share_one_shape_and_a_stable_code_and_change_nothing() {
    let (_dir, state) = state().await;
    let cases = [
        (
            "GET",
            "/api/v1/nowhere".to_owned(),
            "",
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "GET",
            "/api/v1/events?limit=100000".to_owned(),
            "",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "GET",
            "/api/v1/events?after=-1".to_owned(),
            "",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "GET",
            "/api/v1/events?since=yesterday".to_owned(),
            "",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "GET",
            format!("/api/v1/events?kind={}", "k".repeat(5000)),
            "",
            StatusCode::BAD_REQUEST,
            "uri_too_long",
        ),
        (
            "POST",
            "/api/v1/worklist/1/resolve".to_owned(),
            "{\"by\": ",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "POST",
            "/api/v1/worklist/1/resolve".to_owned(),
            "{\"by\": 1}",
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable",
        ),
        (
            "POST",
            "/api/v1/worklist/1/resolve".to_owned(),
            "[\"anna\", \"by hand\"]",
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable",
        ),
        (
            "POST",
            "/api/v1/alarms/A1/ack".to_owned(),
            "[null]",
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable",
        ),
        (
            "DELETE",
            "/api/v1/events".to_owned(),
            "",
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            "POST",
            "/api/v1/ils/checkin".to_owned(),
            "{\"item\": \"I1\"}",
            StatusCode::SERVICE_UNAVAILABLE,
            "ils_not_configured",
        ),
    ];
    for (method, uri, body, status, code) in cases {
        let (got, answer) = send(state.clone(), method, &uri, body).await;
        assert_eq!(
            (got, error_code(&answer)),
            (status, code),
            "{method} {uri}: {answer}"
        );
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    // A body larger than api.max_body_bytes (1 KiB here).
    let big = format!(
        "{{\"by\": \"{}\", \"resolution\": \"x\"}}",
        "a".repeat(2000)
    );
    let (got, answer) = send(state.clone(), "POST", "/api/v1/worklist/1/resolve", &big).await;
    assert_eq!(
        (got, error_code(&answer)),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );
    // A method the route does not take says which it does.
    let request = Request::delete("/api/v1/events")
        .header("authorization", "Bearer op-token")
        .body(Body::empty())
        .unwrap();
    let response = raw(state.clone(), request).await;
    assert_eq!(response.headers()["allow"], "GET,HEAD");
    assert_eq!(
        state.store.journal_len().await.unwrap(),
        2,
        "nothing journaled"
    );
}

#[tokio::test]
async fn a_token_over_its_budget_is_told_when_to_come_back() {
    let (_dir, mut state) = state().await;
    let tight = auth::TokenConfig {
        name: "kiosk".into(),
        role: auth::Role::Read,
        sha256: None,
        token: Some(rfidgw_sip2::Secret::new("kiosk-token")),
        token_file: None,
        rate_limit: Some(auth::RateLimitConfig {
            per_second: 0.2,
            burst: 2,
        }),
    };
    state.auth = Arc::new(Auth::from_config(&[tight], auth::RateLimitConfig::default()).unwrap());
    for _ in 0..2 {
        let (code, _) = send_as(
            state.clone(),
            Some("kiosk-token"),
            "GET",
            "/api/v1/version",
            "",
        )
        .await;
        assert_eq!(code, StatusCode::OK);
    }
    let request = Request::get("/api/v1/version")
        .header("authorization", "Bearer kiosk-token")
        .body(Body::empty())
        .unwrap();
    let response = raw(state.clone(), request).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=5).contains(&wait), "{wait}");
    // Health is never limited.
    let (code, _) = send_as(state, None, "GET", "/api/v1/health", "").await;
    assert_eq!(code, StatusCode::OK);
}

#[tokio::test]
async fn events_are_paged_by_id_oldest_first_with_a_cursor_and_filters() {
    let (_dir, state) = state().await;
    let at = |s: u64| std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s);
    let entry = |kind: &str, station: &str, s| crate::store::JournalEntry {
        at: at(s),
        station: Some(station.into()),
        ..crate::store::JournalEntry::new(kind, serde_json::json!({"item": "I1", "patron": "P9"}))
    };
    state
        .store
        .append(&[
            entry("gate_alarm", "exit", 10),
            entry("item_returned", "returns", 20),
            entry("gate_alarm", "exit", 30),
        ])
        .await
        .unwrap();
    let (code, tail) = get(state.clone(), "/api/v1/events?limit=2").await;
    assert_eq!(code, StatusCode::OK, "{tail}");
    let ids = |page: &serde_json::Value| {
        page["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_i64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!((ids(&tail), &tail["next"]), (vec![4, 5], &5.into()));
    assert_eq!(tail["events"][1]["v"], 1);
    assert_eq!(tail["events"][1]["item"], "I1");
    assert!(
        !tail.to_string().contains("P9"),
        "patron ids stay in: {tail}"
    );
    let (_, first) = get(state.clone(), "/api/v1/events?after=0&limit=2").await;
    assert_eq!((ids(&first), &first["next"]), (vec![1, 2], &2.into()));
    let (_, rest) = get(state.clone(), "/api/v1/events?after=2").await;
    assert_eq!((ids(&rest), &rest["next"]), (vec![3, 4, 5], &5.into()));
    let (_, none) = get(state.clone(), "/api/v1/events?after=5").await;
    assert_eq!((ids(&none), &none["next"]), (vec![], &5.into()));
    let (_, alarms) = get(
        state.clone(),
        "/api/v1/events?after=0&kind=gate_alarm&station=exit",
    )
    .await;
    assert_eq!(ids(&alarms), [3, 5]);
    let window = "/api/v1/events?after=0&since=2027-01-15T08:00:20Z&until=2027-01-15T08:00:30.000Z";
    let (code, window) = get(state, window).await;
    assert_eq!((code, ids(&window)), (StatusCode::OK, vec![4]), "{window}");
    assert_eq!(window["events"][0]["time"], "2027-01-15T08:00:20.000Z");
}

/// A library system that answers from a script: item `I-OFF` is offline, `I-LOST` loses
/// its answer, `I-BAD` answers garbage, `I-NO` is refused; everything else goes.
struct ScriptedIls;

fn scripted<T: Send + 'static>(
    item: &str,
    ok: impl FnOnce(bool) -> T + Send + 'static,
) -> futures::future::BoxFuture<'static, Result<T, crate::ils::connector::IlsCallError>> {
    use crate::ils::connector::IlsCallError;
    let result = match item {
        "I-OFF" => Err(IlsCallError::Offline("no connection".into())),
        "I-LOST" => Err(IlsCallError::OutcomeUnknown("timed out".into())),
        "I-BAD" => Err(IlsCallError::Failed("bad frame".into())),
        other => Ok(ok(other != "I-NO")),
    };
    Box::pin(async move { result })
}

impl IlsConnector for ScriptedIls {
    fn checkout<'a>(
        &'a self,
        _patron: &'a str,
        item: &'a str,
        pin: Option<&'a rfidgw_sip2::Secret>,
    ) -> futures::future::BoxFuture<
        'a,
        Result<crate::ils::connector::CheckoutOutcome, crate::ils::connector::IlsCallError>,
    > {
        let wrong_pin = pin.is_some_and(|p| p.expose() != "1234");
        let item_id = item.to_owned();
        scripted(item, move |ok| crate::ils::connector::CheckoutOutcome {
            ok: ok && !wrong_pin,
            item: item_id,
            title: Some("Dune".into()),
            due_date: Some("20270201".into()),
            desensitize: Some(ok),
            renewal: false,
            screen_message: vec![if ok {
                "Enjoy".into()
            } else {
                "Not for loan".into()
            }],
            print_line: vec![],
            learned: crate::ils::connector::Learned::Answered,
        })
    }

    fn checkin<'a>(
        &'a self,
        item: &'a str,
    ) -> futures::future::BoxFuture<
        'a,
        Result<crate::ils::connector::CheckinOutcome, crate::ils::connector::IlsCallError>,
    > {
        let item_id = item.to_owned();
        scripted(item, move |ok| crate::ils::connector::CheckinOutcome {
            ok,
            item: item_id,
            title: None,
            resensitize: Some(true),
            alert: false,
            alert_type: None,
            sort_bin: Some("2".into()),
            permanent_location: None,
            destination: None,
            media_type: None,
            screen_message: vec![],
            learned: crate::ils::connector::Learned::Answered,
            response: None,
        })
    }

    fn checkout_offline<'a>(
        &'a self,
        patron: &'a str,
        item: &'a str,
        _at: std::time::SystemTime,
        _due: std::time::SystemTime,
    ) -> futures::future::BoxFuture<
        'a,
        Result<crate::ils::connector::CheckoutOutcome, crate::ils::connector::IlsCallError>,
    > {
        self.checkout(patron, item, None)
    }

    fn checkin_offline<'a>(
        &'a self,
        item: &'a str,
        _at: std::time::SystemTime,
    ) -> futures::future::BoxFuture<
        'a,
        Result<crate::ils::connector::CheckinOutcome, crate::ils::connector::IlsCallError>,
    > {
        self.checkin(item)
    }

    fn is_online(&self) -> bool {
        true
    }

    fn renew<'a>(
        &'a self,
        _patron: &'a str,
        item: &'a str,
        _pin: Option<&'a rfidgw_sip2::Secret>,
    ) -> futures::future::BoxFuture<
        'a,
        Result<crate::ils::connector::RenewOutcome, crate::ils::connector::IlsCallError>,
    > {
        let item_id = item.to_owned();
        scripted(item, move |ok| crate::ils::connector::RenewOutcome {
            ok,
            item: item_id,
            due_date: Some("20270301".into()),
            screen_message: vec![],
        })
    }

    fn item_information<'a>(
        &'a self,
        item: &'a str,
    ) -> futures::future::BoxFuture<
        'a,
        Result<crate::ils::connector::ItemInfo, crate::ils::connector::IlsCallError>,
    > {
        let item_id = item.to_owned();
        scripted(item, move |_| crate::ils::connector::ItemInfo {
            item: item_id,
            title: Some("Dune".into()),
            circulation: crate::ils::connector::Circulation::Other(12),
            due_date: None,
            media_type: Some("001".into()),
            permanent_location: None,
        })
    }

    fn validate_patron<'a>(
        &'a self,
        patron: &'a str,
        pin: Option<&'a rfidgw_sip2::Secret>,
    ) -> futures::future::BoxFuture<
        'a,
        Result<crate::ils::connector::PatronCheck, crate::ils::connector::IlsCallError>,
    > {
        use crate::ils::connector::{PatronBlock, PatronProblem};
        let problem = match (patron, pin.map(rfidgw_sip2::Secret::expose)) {
            ("P1", Some("1234") | None) => None,
            ("P1", Some(_)) => Some(PatronProblem::WrongPin),
            ("P2", _) => Some(PatronProblem::Blocked {
                blocks: vec![PatronBlock::CardLost],
            }),
            _ => Some(PatronProblem::Unknown),
        };
        let check = crate::ils::connector::PatronCheck {
            patron: patron.to_owned(),
            problem,
            screen_message: vec![],
        };
        Box::pin(async move { Ok(check) })
    }

    fn patron_account<'a>(
        &'a self,
        patron: &'a str,
        _pin: Option<&'a rfidgw_sip2::Secret>,
    ) -> futures::future::BoxFuture<
        'a,
        Result<crate::ils::connector::PatronAccount, crate::ils::connector::IlsCallError>,
    > {
        let account = crate::ils::connector::PatronAccount {
            patron: patron.to_owned(),
            fee_amount: Some("2.50".into()),
            currency: Some("EUR".into()),
            holds_ready: vec!["I7".into()],
            charged: 3,
            overdue: 1,
        };
        Box::pin(async move { Ok(account) })
    }
}

/// The state with the scripted ILS and a journal channel the test reads.
async fn bridged() -> (tempfile::TempDir, ApiState, mpsc::Receiver<Event>) {
    let (dir, mut state) = state().await;
    let (events, journal) = mpsc::channel(16);
    state.ils = Some(Arc::new(ScriptedIls));
    // The test holds the strong sender in the journal's place.
    state.events = events.downgrade();
    std::mem::forget(events);
    (dir, state, journal)
}

#[tokio::test]
#[allow(clippy::too_many_lines)] // one scenario, read top to bottom
async fn the_bridge_relays_the_ils_answer_and_keeps_said_no_apart_from_the_line_breaking() {
    let (_dir, state, mut journal) = bridged().await;
    let checkout = "/api/v1/ils/checkout";
    let (code, body) = send(
        state.clone(),
        "POST",
        checkout,
        r#"{"patron": "P1", "item": "I1", "pin": "1234"}"#,
    )
    .await;
    assert_eq!(
        (code, &body["ok"], &body["due_date"]),
        (StatusCode::OK, &true.into(), &"20270201".into()),
        "{body}"
    );
    assert_eq!(body["learned"], "answered");
    let (code, body) = send(
        state.clone(),
        "POST",
        checkout,
        r#"{"patron": "P1", "item": "I-NO"}"#,
    )
    .await;
    assert_eq!(
        (code, &body["ok"], &body["screen_message"][0]),
        (StatusCode::OK, &false.into(), &"Not for loan".into())
    );
    for (item, status, code) in [
        ("I-OFF", StatusCode::SERVICE_UNAVAILABLE, "ils_offline"),
        ("I-LOST", StatusCode::GATEWAY_TIMEOUT, "ils_outcome_unknown"),
        ("I-BAD", StatusCode::BAD_GATEWAY, "ils_failed"),
    ] {
        let body = format!(r#"{{"patron": "P1", "item": "{item}"}}"#);
        let (got, answer) = send(state.clone(), "POST", checkout, &body).await;
        assert_eq!(
            (got, error_code(&answer)),
            (status, code),
            "{item}: {answer}"
        );
    }
    // Each transaction is journaled, without the patron.
    let mut outcomes = Vec::new();
    while let Ok(event) = journal.try_recv() {
        let entry = event.to_journal();
        assert_eq!(entry.kind, "bridge_transaction");
        assert!(
            !entry.payload.to_string().contains("P1"),
            "{}",
            entry.payload
        );
        assert_eq!(entry.payload["by"], "op");
        outcomes.push(entry.payload["outcome"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        outcomes,
        [
            "accepted",
            "refused",
            "ils_offline",
            "ils_outcome_unknown",
            "ils_failed"
        ]
    );
    let (code, body) = send(
        state.clone(),
        "POST",
        "/api/v1/ils/checkin",
        r#"{"item": "I1"}"#,
    )
    .await;
    assert_eq!((code, &body["sort_bin"]), (StatusCode::OK, &"2".into()));
    let (code, body) = send(
        state.clone(),
        "POST",
        "/api/v1/ils/renew",
        r#"{"patron": "P1", "item": "I1"}"#,
    )
    .await;
    assert_eq!(
        (code, &body["due_date"]),
        (StatusCode::OK, &"20270301".into())
    );
    let (code, body) = get(state.clone(), "/api/v1/ils/items/I1").await;
    assert_eq!(
        (code, &body["circulation"], &body["circulation_code"]),
        (StatusCode::OK, &"other".into(), &12.into())
    );
    let (code, body) = send(
        state.clone(),
        "POST",
        "/api/v1/ils/patrons/account",
        r#"{"patron": "P1"}"#,
    )
    .await;
    assert_eq!(
        (code, &body["fee_amount"], &body["holds_ready"][0]),
        (StatusCode::OK, &"2.50".into(), &"I7".into())
    );
    let validate = "/api/v1/ils/patrons/validate";
    for (body, ok, problem) in [
        (
            r#"{"patron": "P1", "pin": "1234"}"#,
            true,
            serde_json::Value::Null,
        ),
        (
            r#"{"patron": "P1", "pin": "9876"}"#,
            false,
            "wrong_pin".into(),
        ),
        (r#"{"patron": "P2"}"#, false, "blocked".into()),
        (r#"{"patron": "P3"}"#, false, "unknown".into()),
    ] {
        let (code, answer) = send(state.clone(), "POST", validate, body).await;
        assert_eq!(
            (code, &answer["ok"], &answer["problem"]),
            (StatusCode::OK, &ok.into(), &problem),
            "{body}"
        );
        assert!(!answer.to_string().contains("9876"), "{answer}");
    }
    let (_, blocked) = send(state.clone(), "POST", validate, r#"{"patron": "P2"}"#).await;
    assert_eq!(blocked["blocks"], serde_json::json!(["card_lost"]));
}

#[tokio::test]
async fn a_bridge_request_of_the_wrong_shape_is_refused_without_echoing_the_pin() {
    let (_dir, state, _journal) = bridged().await;
    for (uri, body, status) in [
        (
            "/api/v1/ils/checkout",
            r#"{"patron": "P1", "item": "I1", "pin": 98765}"#,
            422,
        ),
        (
            "/api/v1/ils/checkout",
            r#"{"patron": "P1", "item": "I1", "pin": ["98765"]}"#,
            422,
        ),
        (
            "/api/v1/ils/patrons/validate",
            r#"{"patron": "P1", "pin": 98765.5}"#,
            422,
        ),
        (
            "/api/v1/ils/patrons/validate",
            r#"{"patron": "P1", "pin": "98765", "x": 1}"#,
            422,
        ),
        (
            "/api/v1/ils/checkout",
            r#"{"patron": "", "item": "I1", "pin": "98765"}"#,
            422,
        ),
        (
            "/api/v1/ils/checkout",
            r#"{"patron": "P1|AC98765", "item": "I1"}"#,
            422,
        ),
        (
            "/api/v1/ils/checkout",
            r#"{"patron": "P1", "pin": "98765"}"#,
            422,
        ),
        (
            "/api/v1/ils/checkout",
            r#"{"patron": "P1", "pin": "98765""#,
            400,
        ),
        (
            "/api/v1/ils/checkout",
            r#"{"patron": "P1", "item": "I1", "pin": "98765\r"}"#,
            422,
        ),
    ] {
        let (code, answer) = send(state.clone(), "POST", uri, body).await;
        assert_eq!(code.as_u16(), status, "{body}: {answer}");
        assert!(!answer.to_string().contains("98765"), "{body}: {answer}");
    }
}

/// A reader `r1` in station `exit` whose commands a task answers: tag `E1` takes writes
/// (read back), `E2` reads back something else, `E3` is not in the field; outputs work.
async fn with_reader(mut state: ApiState) -> ApiState {
    use rfidgw_driver::{
        CommandAnswer, CommandMailbox, DeviceCommand, ReadBack, ReaderRefusal, WriteReport,
    };
    let mailbox = Arc::new(CommandMailbox::new("r1"));
    mailbox.set_running(true);
    let mut handles = HashMap::new();
    handles.insert("r1".to_owned(), mailbox.handle());
    state.handles = Arc::new(handles);
    let mut lease = mailbox.lend().await;
    tokio::spawn(async move {
        let _mailbox = mailbox;
        while let Some(envelope) = lease.recv().await {
            let answer = match &envelope.command {
                DeviceCommand::WriteAfi { uid, .. } | DeviceCommand::WriteEas { uid, .. } => {
                    match uid.to_string().as_str() {
                        "E1" => Ok(CommandAnswer::Written(WriteReport {
                            read_back: ReadBack::Confirmed,
                            attempts: 1,
                        })),
                        "E2" => Ok(CommandAnswer::Written(WriteReport {
                            read_back: ReadBack::Differs {
                                found: "0x07".into(),
                            },
                            attempts: 3,
                        })),
                        _ => Err(ReaderRefusal::NoTransponder),
                    }
                }
                _ => Ok(CommandAnswer::Done),
            };
            envelope.answer(Ok(answer));
        }
    });
    state
}

#[tokio::test]
#[allow(clippy::too_many_lines)] // one scenario, read top to bottom
async fn staff_secure_and_unsecure_a_tag_and_get_the_read_back() {
    let (_dir, state, mut journal) = bridged().await;
    let state = with_reader(state).await;
    let (code, body) = send(
        state.clone(),
        "POST",
        "/api/v1/devices/r1/tags/e1/unsecure",
        "",
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(
        (
            &body["mode"],
            &body["written"],
            &body["confirmed"],
            &body["read_back"]["result"]
        ),
        (
            &"afi".into(),
            &"0xC2".into(),
            &true.into(),
            &"confirmed".into()
        )
    );
    let (_, body) = send(
        state.clone(),
        "POST",
        "/api/v1/devices/r1/tags/E2/secure",
        "",
    )
    .await;
    assert_eq!(
        (
            &body["written"],
            &body["confirmed"],
            &body["read_back"]["found"],
            &body["attempts"]
        ),
        (&"0x07".into(), &false.into(), &"0x07".into(), &3.into())
    );
    let (code, body) = send(
        state.clone(),
        "POST",
        "/api/v1/devices/r1/tags/E3/secure",
        "",
    )
    .await;
    assert_eq!(
        (code, &body["refused"]),
        (StatusCode::OK, &"no transponder".into())
    );
    for (uri, status) in [
        ("/api/v1/devices/r9/tags/E1/secure", StatusCode::NOT_FOUND),
        (
            "/api/v1/devices/r1/tags/XYZ/secure",
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (code, _) = send(state.clone(), "POST", uri, "").await;
        assert_eq!(code, status, "{uri}");
    }
    let outputs = "/api/v1/devices/r1/outputs";
    let (code, body) = send(
        state.clone(),
        "POST",
        outputs,
        r#"{"red": "flash", "beeper": "on", "signal_ms": 1500}"#,
    )
    .await;
    assert_eq!(
        (code, &body["done"]),
        (StatusCode::OK, &true.into()),
        "{body}"
    );
    // Lamps without a time keep it for 3 s; a command that changes nothing sends nothing.
    for fine in [r#"{"red": "flash"}"#, "{}"] {
        let (code, body) = send(state.clone(), "POST", outputs, fine).await;
        assert_eq!(
            (code, &body["done"]),
            (StatusCode::OK, &true.into()),
            "{fine}"
        );
    }
    for bad in [
        r#"{"signal_ms": 0}"#,
        r#"{"relay_ms": 600000}"#,
        r#"{"red": "blue", "signal_ms": 5}"#,
    ] {
        let (code, _) = send(state.clone(), "POST", outputs, bad).await;
        assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
    let (code, _) = send_as(
        state.clone(),
        Some("read-token"),
        "POST",
        outputs,
        r#"{"relay_ms": 5}"#,
    )
    .await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    let mut outcomes = Vec::new();
    while let Ok(event) = journal.try_recv() {
        let entry = event.to_journal();
        assert_eq!(
            (entry.kind.as_str(), entry.device.as_deref()),
            ("device_action", Some("r1"))
        );
        outcomes.push(format!(
            "{} {}",
            entry.payload["action"].as_str().unwrap(),
            entry.payload["outcome"].as_str().unwrap()
        ));
    }
    assert_eq!(
        outcomes,
        [
            "unsecure confirmed",
            "secure not_confirmed",
            "secure refused",
            "outputs done",
            "outputs done"
        ]
    );
    // A device that is down is a 503.
    let mut handles = HashMap::new();
    handles.insert(
        "r2".to_owned(),
        rfidgw_driver::CommandMailbox::new("r2").handle(),
    );
    let down = ApiState {
        handles: Arc::new(handles),
        ..state
    };
    let (code, body) = send(down, "POST", "/api/v1/devices/r2/tags/E1/secure", "").await;
    assert_eq!(
        (code, error_code(&body)),
        (StatusCode::SERVICE_UNAVAILABLE, "device_unavailable")
    );
}

#[tokio::test]
async fn metrics_are_served_to_a_read_token_as_prometheus_text() {
    let (_dir, mut state) = state().await;
    let (code, body) = get(state.clone(), "/metrics").await;
    assert_eq!(
        (code, error_code(&body)),
        (StatusCode::NOT_FOUND, "not_found")
    );
    state.metrics = Some(Arc::new(|| {
        Box::pin(async { "# TYPE rfidgw_up gauge\nrfidgw_up 1\n".to_owned() })
    }));
    let request = Request::get("/metrics")
        .header("authorization", "Bearer read-token")
        .body(Body::empty())
        .unwrap();
    let response = raw(state, request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(body.ends_with(b"rfidgw_up 1\n"));
}

#[tokio::test]
async fn every_error_is_json_with_a_stable_code_whatever_part_of_the_request_was_wrong() {
    let (_dir, state) = state().await;
    let resolve = r#"{"by": "anna", "resolution": "by hand"}"#;
    // (method, target, body, status, code)
    let cases = [
        // Query strings: a value of the wrong type, out of range, unknown.
        ("GET", "/api/v1/journal?limit=abc", "", 400, "bad_request"),
        ("GET", "/api/v1/alarms?limit=-5", "", 400, "bad_request"),
        ("GET", "/api/v1/worklist?all=maybe", "", 400, "bad_request"),
        ("GET", "/api/v1/events?after=abc", "", 400, "bad_request"),
        (
            "GET",
            "/api/v1/owed-writes?state=lost",
            "",
            400,
            "bad_request",
        ),
        // Path parameters: not a number, not UTF-8.
        (
            "POST",
            "/api/v1/worklist/abc/resolve",
            resolve,
            400,
            "bad_request",
        ),
        ("GET", "/api/v1/loans/%FF", "", 400, "bad_request"),
        // Methods a route does not take.
        ("PUT", "/api/v1/status", "", 405, "method_not_allowed"),
        ("DELETE", "/api/v1", "", 405, "method_not_allowed"),
        ("POST", "/api/v1/alarms", "{}", 405, "method_not_allowed"),
        // Routes that do not exist, under /api/v1 and beside it.
        ("GET", "/api/v1/nowhere/deeper", "", 404, "not_found"),
        ("GET", "/api/v1/", "", 404, "not_found"),
        ("GET", "/api/v2/status", "", 404, "not_found"),
        (
            "POST",
            "/api/v1/stations/main-exit/nowhere",
            "",
            404,
            "not_found",
        ),
    ];
    for (method, target, body, status, code) in cases {
        let request = Request::builder()
            .method(method)
            .uri(target)
            .header("authorization", "Bearer op-token")
            .body(Body::from(body))
            .unwrap();
        let response = raw(state.clone(), request).await;
        let got = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let answer: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            panic!(
                "{method} {target}: not JSON ({content_type}): {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        assert_eq!(
            (got, error_code(&answer)),
            (status, code),
            "{method} {target}: {answer}"
        );
        assert!(
            content_type.starts_with("application/json"),
            "{method} {target}"
        );
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{method} {target}: {answer}"
        );
    }
}

#[tokio::test]
async fn the_landing_answer_lists_every_route_with_its_role_without_a_token() {
    let (_dir, state) = state().await;
    let (code, body) = send_as(state, None, "GET", "/api/v1", "").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(body["name"], "rfidgw");
    assert_eq!(body["openapi"], "/api/v1/openapi.json");
    let routes = body["routes"].as_array().unwrap();
    let operations: usize = openapi_document()["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|item| item.as_object().unwrap().len())
        .sum();
    assert_eq!(routes.len(), operations, "every operation is listed");
    // (method, path, role)
    for (method, path, role) in [
        ("GET", "/api/v1", "public"),
        ("GET", "/api/v1/status", "read"),
        ("POST", "/api/v1/alarms/{alarm_id}/ack", "operate"),
        ("GET", "/api/v1/auth/tokens", "admin"),
    ] {
        assert!(
            routes
                .iter()
                .any(|r| r["method"] == method && r["path"] == path && r["role"] == role),
            "{method} {path} {role} missing: {body}"
        );
    }
    assert!(
        routes
            .iter()
            .all(|r| r["summary"].as_str().is_some_and(|s| !s.is_empty())),
        "{body}"
    );
}

#[tokio::test]
async fn listings_show_times_as_rfc3339() {
    let (_dir, state) = state().await;
    let (_, rows) = get(state.clone(), "/api/v1/journal?limit=1").await;
    let time = rows[0]["time"].as_str().unwrap();
    assert!(crate::rfc3339::parse(time).is_some(), "{rows}");
    assert!(time.ends_with('Z'), "UTC: {time}");
    assert!(rows[0].get("at_ms").is_none(), "{rows}");
    queue_checkout(&state.store, "P1001").await;
    let (_, queue) = get(state, "/api/v1/offline-queue").await;
    assert!(
        crate::rfc3339::parse(queue[0]["time"].as_str().unwrap()).is_some(),
        "{queue}"
    );
    assert!(
        crate::rfc3339::parse(queue[0]["due"].as_str().unwrap()).is_some(),
        "{queue}"
    );
}

/// Every body route, given bodies with a PIN that is wrong in each way a client can get
/// it wrong: the error names what is wrong and never holds the PIN's value.
#[test]
fn a_body_error_never_echoes_the_pin() {
    let bodies = [
        r#"{"patron": "P1", "pin": 271828182}"#,
        r#"{"patron": "P1", "pin": 2718.28182}"#,
        r#"{"patron": "P1", "pin": "2718|28182"}"#,
        r#"{"patron": 27182, "pin": "secret-2718"}"#,
        r#"{"pin": "secret-2718", "surplus": "x"}"#,
        r#"{"pin": "secret-2718"}"#,
        r#"["P1", "secret-2718"]"#,
    ];
    for (route, name) in BODY_ROUTES.iter().enumerate() {
        for body in bodies {
            let Err(error) = parse_route_body(route, body.as_bytes()) else {
                continue;
            };
            let message = error.to_string();
            for secret in ["271828182", "2718.28182", "2718|28182", "secret-2718"] {
                assert!(!message.contains(secret), "{name} with {body}: {message}");
            }
            assert!(
                matches!(error.code().1, "bad_request" | "unprocessable"),
                "{name}: {error:?}"
            );
        }
    }
}
