//! Signed deliveries: an endpoint with a `signing_secret` signs every `http` request as the
//! Standard Webhooks specification says, checked with the specification authors' own library
//! (`standardwebhooks`), an implementation independent of the scheduler's.

use std::time::Duration;

use chrono::{SecondsFormat, SubsecRound, TimeDelta, Utc};
use scheduler_client::{NewSchedule, TriggerKind};
use serde_json::json;
use standardwebhooks::Webhook;

use crate::helpers::{Backend, BackendRequest, Daemon, StubBackend, TestDb, http_post};

const SECRET: &str = "whsec_vYQ5K9cnvaudqVlw5K3mr2kYEG2suqRGkbyJPNul+wE=";

/// The headers of `request` as the verifier takes them.
fn header_map(request: &BackendRequest) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    for (name, value) in &request.headers {
        headers.insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    headers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_to_a_signing_endpoint_verify_with_the_standard_library() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let backend = StubBackend::start().await;
    let env = [
        ("SCHEDULER__ENDPOINTS__HOOKS__URL", backend.url.as_str()),
        ("SCHEDULER__ENDPOINTS__HOOKS__SIGNING_SECRET", SECRET),
        ("SCHEDULER__ENDPOINTS__PLAIN__URL", backend.url.as_str()),
    ];
    let daemon = Daemon::start_with(&db, "http://127.0.0.1:9/", &env).await;
    let client = daemon.client();
    let at = Utc::now().trunc_subsecs(0) + TimeDelta::seconds(2);
    let body = json!({"report": "daily", "note": "é ✓", "n": 1});
    for (id, target) in [
        ("signed", http_post("hooks", "/signed", body.clone())),
        (
            "signed-empty",
            http_post("hooks", "/signed-empty", json!(null)),
        ),
        ("plain", http_post("plain", "/plain", body.clone())),
    ] {
        let mut new = NewSchedule::new("alice", TriggerKind::Once { at }.into(), target);
        new.id = Some(id.into());
        client.create_schedule(new).await.unwrap();
    }
    let wait = Duration::from_secs(30);
    let signed = backend.wait_for("/signed", 1, wait).await;
    let empty = backend.wait_for("/signed-empty", 1, wait).await;
    let plain = backend.wait_for("/plain", 1, wait).await;
    assert_eq!((signed.len(), empty.len(), plain.len()), (1, 1, 1));

    let webhook = Webhook::new(SECRET).unwrap();
    let key = format!("signed@{}", at.to_rfc3339_opts(SecondsFormat::Secs, true));
    let request = &signed[0];
    assert_eq!(request.body, body, "the body signed is the body sent");
    assert_eq!(request.header("webhook-id"), Some(key.as_str()));
    assert_eq!(request.header("idempotency-key"), Some(key.as_str()));
    let stamped: i64 = request
        .header("webhook-timestamp")
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (stamped - request.received_at.timestamp()).abs() <= 5,
        "the attempt's time: {stamped}"
    );
    webhook
        .verify(&request.raw_body, &header_map(request))
        .unwrap();
    webhook
        .verify(&empty[0].raw_body, &header_map(&empty[0]))
        .unwrap();
    assert!(empty[0].raw_body.is_empty());

    // What the receiver rejects: another body, another id, another secret, an old delivery.
    let mut tampered = request.raw_body.clone();
    tampered.extend_from_slice(b" ");
    assert!(webhook.verify(&tampered, &header_map(request)).is_err());
    let mut other_id = header_map(request);
    other_id.insert("webhook-id", "signed@1999-01-01T00:00:00Z".parse().unwrap());
    assert!(webhook.verify(&request.raw_body, &other_id).is_err());
    let stranger = Webhook::new("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
    assert!(
        stranger
            .verify(&request.raw_body, &header_map(request))
            .is_err()
    );
    let mut replayed = header_map(request);
    replayed.insert(
        "webhook-timestamp",
        (stamped - 3600).to_string().parse().unwrap(),
    );
    assert!(webhook.verify(&request.raw_body, &replayed).is_err());

    // An endpoint without a secret sends no signature.
    assert_eq!(plain[0].header("webhook-signature"), None);
    assert_eq!(plain[0].body, body);
}

#[test]
fn a_secret_that_is_not_one_stops_start_up_and_a_good_one_is_never_printed() {
    let check = |secret: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_scheduler"))
            .env_remove("DATABASE_URL")
            .env_remove("DIRECT_URL")
            .env("SCHEDULER__ENDPOINTS__HOOKS__URL", "http://127.0.0.1:9/")
            .env("SCHEDULER__ENDPOINTS__HOOKS__SIGNING_SECRET", secret)
            .arg("--check-config")
            .output()
            .unwrap()
    };
    let refused = check("vYQ5K9cnvaudqVlw5K3mr2kYEG2suqRGkbyJPNul+wE=");
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("endpoints.hooks.signing_secret must be whsec_"),
        "{stderr}"
    );
    let printed = check(SECRET);
    assert!(printed.status.success());
    let stdout = String::from_utf8_lossy(&printed.stdout);
    assert!(stdout.contains("signing_secret"), "{stdout}");
    assert!(!stdout.contains(SECRET), "{stdout}");
}
