//! The management API through its framework-neutral entry point: auth,
//! validation (never a partial change), the CRUD round trip, status and
//! reset on a fake clock.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use ratelimit_core::Rules;
use std::sync::Arc;
use std::time::Duration;

use ratelimit_core::admin::{AdminApi, AdminRequest, AdminResponse, Operation};
use ratelimit_core::{
    DistributedRateLimiter, Identity, LimiterConfig, MemoryStore, Quota, Rule, Target,
    clock::FakeClock,
};
use serde_json::{Value, json};

const TOKEN: &str = "t0ken-for-tests";

fn setup() -> (AdminApi, DistributedRateLimiter, FakeClock) {
    let clock = FakeClock::new();
    let store = MemoryStore::with_clock(clock.clone());
    let limiter = DistributedRateLimiter::new(
        LimiterConfig::new(Arc::new(store))
            .rule(Rule::new("default", Target::Each, Quota::per_second(10).unwrap()).unwrap())
            .rule(Rule::new("everyone", Target::Global, Quota::per_second(3).unwrap()).unwrap()),
    );
    (
        AdminApi::new(limiter.clone(), TOKEN).unwrap(),
        limiter,
        clock,
    )
}

async fn call(api: &AdminApi, operation: Operation<'_>) -> (u16, Value) {
    let header = format!("Bearer {TOKEN}");
    let response = api
        .handle(AdminRequest::new(Some(header.as_bytes()), operation))
        .await;
    decode(&response)
}

fn decode(response: &AdminResponse) -> (u16, Value) {
    assert!(response.body().ends_with('\n'));
    (
        response.status(),
        serde_json::from_str(response.body()).unwrap(),
    )
}

#[tokio::test]
async fn only_the_token_opens_the_api() {
    let (api, limiter, _) = setup();
    let body = br#"{"target":"*","limit":1,"window_ms":1000}"#;
    let put = Operation::PutRule { id: "new", body };
    let tampered = format!("Bearer {TOKEN}x");
    let short = &TOKEN[..TOKEN.len() - 1];
    let short = format!("Bearer {short}");
    for header in [
        None,
        Some(&b""[..]),
        Some(TOKEN.as_bytes()),
        Some(format!("Basic {TOKEN}").into_bytes().leak()),
        Some(format!("Bearer{TOKEN}").into_bytes().leak()),
        Some(tampered.as_bytes()),
        Some(short.as_bytes()),
        Some(b"Bearer "),
    ] {
        let response = api.handle(AdminRequest::new(header, put)).await;
        let (status, body) = decode(&response);
        assert_eq!(status, 401, "{header:?}");
        assert_eq!(body["error"], "unauthorized");
        assert!(
            response
                .headers()
                .any(|h| h == ("www-authenticate", "Bearer"))
        );
    }
    assert!(
        limiter.rules().get("new").cloned().is_none(),
        "a refused request changed nothing"
    );
    assert_eq!(limiter.rules().version(), 2);

    // The scheme is case-insensitive.
    let lower = format!("bearer {TOKEN}");
    let response = api
        .handle(AdminRequest::new(Some(lower.as_bytes()), put))
        .await;
    assert_eq!(response.status(), 201);
    assert!(AdminApi::new(limiter.clone(), "").is_err());
    assert!(AdminApi::new(limiter, "has space").is_err());
}

#[tokio::test]
async fn rules_round_trip_through_the_api() {
    let (api, limiter, _) = setup();
    let (status, body) = call(&api, Operation::ListRules).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"version": 2, "rules": [
            {"id": "default", "target": "*", "limit": 10, "window_ms": 1000, "burst": 10,
             "priority": 0, "shadow": false, "failure_policy": null},
            {"id": "everyone", "target": "global", "limit": 3, "window_ms": 1000, "burst": 3,
             "priority": 0, "shadow": false, "failure_policy": null},
        ]})
    );

    // Create.
    let body = br#"{"target":"user:42","limit":100,"window_ms":60000,"burst":150,
                    "priority":20,"shadow":true,"failure_policy":"fail_closed"}"#;
    let (status, created) = call(&api, Operation::PutRule { id: "vip", body }).await;
    assert_eq!(status, 201);
    let vip = json!({"id": "vip", "target": "user:42", "limit": 100, "window_ms": 60000,
                     "burst": 150, "priority": 20, "shadow": true,
                     "failure_policy": "fail_closed"});
    assert_eq!(created, json!({"version": 3, "rule": vip}));
    assert_eq!(
        call(&api, Operation::GetRule { id: "vip" }).await,
        (200, json!({"version": 3, "rule": vip}))
    );

    // Replace.
    let body = br#"{"target":"user:42","limit":5,"window_ms":1000}"#;
    let (status, replaced) = call(&api, Operation::PutRule { id: "vip", body }).await;
    assert_eq!(status, 200);
    assert_eq!(replaced["rule"]["limit"], 5);
    assert_eq!(replaced["rule"]["shadow"], false);
    assert_eq!(replaced["version"], 4);

    // Patch: the limit changes, the rest stays.
    let body = br#"{"limit":7}"#;
    let (status, patched) = call(&api, Operation::PatchRule { id: "vip", body }).await;
    assert_eq!(status, 200);
    assert_eq!(patched["rule"]["limit"], 7);
    assert_eq!(patched["rule"]["window_ms"], 1000);
    assert_eq!(patched["rule"]["target"], "user:42");
    assert_eq!(
        limiter.rules().get("vip").cloned().unwrap().quota().limit(),
        7
    );

    // Delete, then it is gone.
    let (status, deleted) = call(&api, Operation::DeleteRule { id: "vip" }).await;
    assert_eq!((status, &deleted["rule"]["id"]), (200, &json!("vip")));
    for operation in [
        Operation::GetRule { id: "vip" },
        Operation::DeleteRule { id: "vip" },
        Operation::PatchRule {
            id: "vip",
            body: br#"{"limit":1}"#,
        },
    ] {
        let (status, body) = call(&api, operation).await;
        assert_eq!((status, &body["error"]), (404, &json!("not_found")));
    }
    assert!(limiter.rules().get("vip").cloned().is_none());
}

#[tokio::test]
async fn a_rule_counting_client_addresses_is_added_and_enforced() {
    let (api, limiter, _) = setup();
    let body = br#"{"target":"ip:*","limit":2,"window_ms":60000}"#;
    let (status, answer) = call(&api, Operation::PutRule { id: "login", body }).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["rule"]["target"], "ip:*");
    let login = ratelimit_core::Rules::route(["login", "default"]);
    let from = "203.0.113.9".parse().unwrap();
    let mut admitted = 0;
    for user in ["a", "b", "c", "d"] {
        let who = ratelimit_core::Identity::user(user).with_ip(from);
        admitted += usize::from(limiter.check(&who, &login, 1).await.unwrap().allowed());
    }
    assert_eq!(admitted, 2, "the address's limit, whatever the user");
}

#[tokio::test]
async fn bad_input_names_the_field_and_changes_nothing() {
    let (api, limiter, _) = setup();
    let before = limiter.rules();
    let cases: [(&str, &[u8], &str); 10] = [
        ("default", b"{not json", "body"),
        (
            "default",
            br#"{"target":"ip:203.0.113.9","limit":1,"window_ms":1000}"#,
            "target",
        ),
        (
            "default",
            br#"{"target":"robot:*","limit":1,"window_ms":1000}"#,
            "target",
        ),
        (
            "default",
            br#"{"target":"who","limit":1,"window_ms":1}"#,
            "target",
        ),
        (
            "default",
            br#"{"target":"*","limit":0,"window_ms":1000}"#,
            "limit",
        ),
        (
            "default",
            br#"{"target":"*","limit":1,"window_ms":0}"#,
            "window_ms",
        ),
        (
            "default",
            br#"{"target":"*","limit":1,"window_ms":40000000000}"#,
            "window_ms",
        ),
        (
            "default",
            br#"{"target":"*","limit":1,"window_ms":1000,"extra":1}"#,
            "extra",
        ),
        (
            "a\u{7}b",
            br#"{"target":"*","limit":1,"window_ms":1000}"#,
            "id",
        ),
        (
            "an-id-that-is-far-too-long-to-be-a-rule-id-because-it-goes-on-and-on",
            br#"{"target":"*","limit":1,"window_ms":1000}"#,
            "id",
        ),
    ];
    for (id, body, field) in cases {
        let (status, answer) = call(&api, Operation::PutRule { id, body }).await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["error"], "invalid_request");
        assert_eq!(answer["field"], field, "{answer}");
        assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let (status, answer) = call(
        &api,
        Operation::PatchRule {
            id: "default",
            body: br#"{"limit":5,"window_ms":-1}"#,
        },
    )
    .await;
    assert_eq!((status, &answer["field"]), (400, &json!("window_ms")));
    // Nothing moved: same version, same rules.
    let after = limiter.rules();
    assert_eq!(after.version(), before.version());
    assert_eq!(
        after.iter().collect::<Vec<_>>(),
        before.iter().collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn status_reports_without_charging_and_reset_clears() {
    let (api, limiter, clock) = setup();
    for _ in 0..4 {
        limiter
            .check(&Identity::user("42"), &Rules::one("default"), 1)
            .await
            .unwrap();
    }
    let status = Operation::Status {
        query: "target=user%3A42&rule=default",
    };
    let expected = json!({"target": "user:42", "rule": "default", "allowed": true,
                          "limit": 10, "remaining": 6, "retry_after_ms": 0,
                          "reset_after_ms": 400});
    assert_eq!(call(&api, status).await, (200, expected.clone()));
    // Asking again charged nothing.
    assert_eq!(call(&api, status).await, (200, expected));

    // A global rule: exhausted, then the caller `global` sees it.
    for _ in 0..3 {
        limiter
            .check(&Identity::user("1"), &Rules::one("everyone"), 1)
            .await
            .unwrap();
    }
    let global = Operation::Status {
        query: "target=global&rule=everyone",
    };
    let (_, answer) = call(&api, global).await;
    assert_eq!(answer["allowed"], false);
    assert_eq!(answer["remaining"], 0);
    assert_eq!(answer["retry_after_ms"], 334);

    // Reset clears user 42's counter, and only it.
    clock.advance(Duration::from_millis(100));
    limiter
        .check(&Identity::user("7"), &Rules::one("default"), 1)
        .await
        .unwrap();
    let reset = Operation::Reset {
        query: "target=user:42&rule=default",
    };
    let (code, answer) = call(&api, reset).await;
    assert_eq!(
        (code, answer),
        (
            200,
            json!({"target": "user:42", "rule": "default", "reset": true})
        )
    );
    let (_, answer) = call(&api, status).await;
    assert_eq!(
        (
            answer["remaining"].clone(),
            answer["reset_after_ms"].clone()
        ),
        (json!(10), json!(0))
    );
    let seven = Operation::Status {
        query: "target=user:7&rule=default",
    };
    assert_eq!(call(&api, seven).await.1["remaining"], 9);

    // Refusals: unknown rule 404, bad caller 400 on `target`, `global` on a
    // per-caller rule 400, a rule that does not apply 400.
    limiter
        .add_rule("vip", "user:42".parse().unwrap(), 5, Duration::from_secs(1))
        .await
        .unwrap();
    for (query, status, field) in [
        ("target=user:1&rule=nope", 404, "id"),
        ("target=nobody&rule=default", 400, "target"),
        ("target=ip:999.1.1.1&rule=default", 400, "target"),
        ("target=global&rule=default", 400, "target"),
        ("target=user:1&rule=vip", 400, "target"),
        ("rule=default", 400, "target"),
    ] {
        for operation in [Operation::Status { query }, Operation::Reset { query }] {
            let (got, answer) = call(&api, operation).await;
            assert_eq!((got, &answer["field"]), (status, &json!(field)), "{query}");
        }
    }
}

#[tokio::test]
async fn a_failing_store_is_a_503_not_a_change() {
    let limiter = DistributedRateLimiter::new(
        LimiterConfig::new(Arc::new(ratelimit_test_support::stores::FailingStore))
            .rule(Rule::new("default", Target::Each, Quota::per_second(1).unwrap()).unwrap()),
    );
    let api = AdminApi::new(limiter, TOKEN).unwrap();
    let (status, answer) = call(
        &api,
        Operation::Status {
            query: "target=user:1&rule=default",
        },
    )
    .await;
    assert_eq!(
        (status, &answer["error"]),
        (503, &json!("store_unavailable"))
    );
}
