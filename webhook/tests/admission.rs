//! AdmissionReview fixtures: every review under `fixtures/pass` is allowed, every review under
//! `fixtures/fail` is denied with exactly the message in its `.message` file.
//! `UPDATE_FIXTURES=1` rewrites the `.message` files (review the diff before committing).

use knmstate_api::shared::NodeNetworkConfigurationPolicyStatus;
use knmstate_api::{ConditionList, ConditionStatus};
use knmstate_testkit::{builders, golden};
use knmstate_webhook::admission::{
    Admission, MUTATE_PATH, STATUS_MUTATE_PATH, TIMESTAMP_MUTATE_PATH, VALIDATE_PATH,
};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

fn fixtures(dir: &str) -> Vec<PathBuf> {
    golden::files(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(dir),
        "json",
    )
}

fn respond(path: &str, review: &Value) -> Value {
    Admission::default().review(path, serde_json::to_vec(review).unwrap().as_slice())
}

#[test]
fn pass_fixtures_are_allowed() {
    for f in fixtures("pass") {
        let review = golden::load(&f);
        let resp = respond(VALIDATE_PATH, &review);
        assert_eq!(
            resp["response"]["allowed"],
            true,
            "{}: {}",
            f.display(),
            resp["response"]
        );
        assert_eq!(resp["response"]["uid"], review["request"]["uid"]);
    }
}

#[test]
fn fail_fixtures_are_denied_with_their_message() {
    let update = std::env::var_os("UPDATE_FIXTURES").is_some();
    for f in fixtures("fail") {
        let review = golden::load(&f);
        let resp = respond(VALIDATE_PATH, &review);
        let r = &resp["response"];
        assert_eq!(r["allowed"], false, "{}", f.display());
        assert_eq!(resp["apiVersion"], "admission.k8s.io/v1");
        let got = r["status"]["message"].as_str().unwrap().to_owned();
        let reason = r["status"]["reason"].as_str().unwrap();
        let code = r["status"]["code"].as_u64().unwrap();
        assert!(
            matches!((reason, code), ("Invalid", 422) | ("Forbidden", 403)),
            "{reason} {code}"
        );
        let expected_file = f.with_extension("message");
        if update {
            golden::write(&expected_file, &format!("{got}\n"));
        }
        let expected = golden::text(&expected_file);
        assert_eq!(got, expected.trim_end(), "{}", f.display());
    }
}

#[test]
fn undecodable_body_gets_an_admission_error_not_a_crash() {
    for body in [
        &b"not json"[..],
        b"{}",
        b"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\"}",
        b"",
    ] {
        let out = serde_json::to_value(Admission::default().review(VALIDATE_PATH, body)).unwrap();
        assert_eq!(out["response"]["allowed"], false);
        assert_eq!(out["response"]["status"]["reason"], "InvalidRequest");
        assert!(
            out["response"]["status"]["message"]
                .as_str()
                .unwrap()
                .starts_with("failed to decode")
                || out["response"]["status"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("no request")
        );
    }
}

fn review_of(op: &str, object: Value, old: Option<Value>) -> Value {
    let mut review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "u1",
        "kind": {"group": "nmstate.io", "version": "v1", "kind": "NodeNetworkConfigurationPolicy"},
        "resource": {"group": "nmstate.io", "version": "v1", "resource": "nodenetworkconfigurationpolicies"},
        "name": "br1", "operation": op, "userInfo": {"username": "admin"},
        "dryRun": false
    }});
    review["request"]["object"] = object;
    review["request"]["oldObject"] = old.unwrap_or_default();
    review
}

fn patch_of(resp: &Value) -> Vec<Value> {
    use base64::Engine as _;
    assert_eq!(resp["response"]["allowed"], true, "{resp}");
    assert_eq!(resp["response"]["patchType"], "JSONPatch");
    let raw = resp["response"]["patch"].as_str().unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(raw)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// The policy `br1` as the webhook receives it, with `annotations` and, when given, a status
/// holding `conditions`.
fn policy(annotations: &[(&str, &str)], conditions: Option<ConditionList>) -> Value {
    let mut p = builders::policy("br1", &[], json!({}));
    p.metadata.annotations = (!annotations.is_empty()).then(|| builders::labels(annotations));
    p.status = conditions.map(|conditions| NodeNetworkConfigurationPolicyStatus {
        conditions,
        ..Default::default()
    });
    serde_json::to_value(p).unwrap()
}

/// A condition list whose only condition is `Available: True`.
fn available() -> ConditionList {
    let mut c = ConditionList::default();
    c.set("Available", ConditionStatus::True, "", "", builders::at(0));
    c
}

#[test]
fn timestamp_is_strictly_increasing_even_with_a_stuck_clock() {
    let admission = Admission::with_clock(|| 1_000);
    let mut last = 0i64;
    for _ in 0..3 {
        let out = admission.review(
            TIMESTAMP_MUTATE_PATH,
            &serde_json::to_vec(&review_of("CREATE", policy(&[], None), None)).unwrap(),
        );
        let ops = patch_of(&serde_json::to_value(out).unwrap());
        assert_eq!(ops[0]["op"], "add");
        assert_eq!(ops[0]["path"], "/metadata/annotations");
        let v: i64 = ops[0]["value"]["nmstate.io/webhook-mutating-timestamp"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(v > last, "{v} <= {last}");
        last = v;
    }
    // and later than the stamp already on the object (another replica, a skewed clock)
    let old = policy(
        &[("nmstate.io/webhook-mutating-timestamp", "5000000")],
        None,
    );
    let new = policy(&[("team", "net")], None);
    let out = admission.review(
        TIMESTAMP_MUTATE_PATH,
        &serde_json::to_vec(&review_of("UPDATE", new, Some(old))).unwrap(),
    );
    let ops = patch_of(&serde_json::to_value(out).unwrap());
    assert_eq!(
        ops[0]["path"],
        "/metadata/annotations/nmstate.io~1webhook-mutating-timestamp"
    );
    assert_eq!(ops[0]["value"], "5000001");
}

/// The stamp after an UPDATE whose old object carries `annotation`, with the clock at
/// `clock` and a fresh admission handler.
#[rstest::rstest]
#[case::i64_max(i64::MAX.to_string(), 1_000, i64::MAX.to_string())]
#[case::just_below_max((i64::MAX - 1).to_string(), 1_000, i64::MAX.to_string())]
#[case::u64_max_is_not_a_stamp(u64::MAX.to_string(), 1_000, "1000".to_owned())]
#[case::past_u64_max("99999999999999999999999".to_owned(), 1_000, "1000".to_owned())]
#[case::negative(i64::MIN.to_string(), 1_000, "1000".to_owned())]
#[case::clock_at_max("7".to_owned(), i64::MAX, i64::MAX.to_string())]
fn timestamp_at_the_integer_boundary_does_not_overflow(
    #[case] annotation: String,
    #[case] clock: i64,
    #[case] want: String,
) {
    let admission = Admission::with_clock(move || clock);
    let old = policy(
        &[("nmstate.io/webhook-mutating-timestamp", annotation.as_str())],
        None,
    );
    let new = policy(&[("team", "net")], None);
    let body = serde_json::to_vec(&review_of("UPDATE", new, Some(old))).unwrap();
    let out = admission.review(TIMESTAMP_MUTATE_PATH, &body);
    let ops = patch_of(&serde_json::to_value(out).unwrap());
    assert_eq!(ops[0]["value"], want.as_str());
}

#[test]
fn timestamps_from_concurrent_requests_are_unique() {
    let clock = Arc::new(AtomicI64::new(0));
    let c = clock.clone();
    let admission = Arc::new(Admission::with_clock(move || c.load(Ordering::SeqCst)));
    let body = serde_json::to_vec(&review_of("CREATE", policy(&[], None), None)).unwrap();
    let stamps: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    (0..50)
                        .map(|_| {
                            let ops = patch_of(
                                &serde_json::to_value(
                                    admission.review(TIMESTAMP_MUTATE_PATH, &body),
                                )
                                .unwrap(),
                            );
                            ops[0]["value"]["nmstate.io/webhook-mutating-timestamp"]
                                .as_str()
                                .unwrap()
                                .to_owned()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let unique: std::collections::BTreeSet<_> = stamps.iter().collect();
    assert_eq!(unique.len(), 400);
}

#[test]
fn status_mutation_initialises_four_unknown_conditions_only_when_empty() {
    let out = Admission::with_clock(|| 0).review(
        STATUS_MUTATE_PATH,
        &serde_json::to_vec(&review_of(
            "UPDATE",
            policy(&[], None),
            Some(policy(&[], None)),
        ))
        .unwrap(),
    );
    let ops = patch_of(&serde_json::to_value(out).unwrap());
    assert_eq!(ops[0]["path"], "/status");
    let types: Vec<_> = ops[0]["value"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["type"].as_str().unwrap().to_owned(),
                c["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        types,
        [
            ("Available", "Unknown"),
            ("Degraded", "Unknown"),
            ("Progressing", "Unknown"),
            ("Ignored", "Unknown")
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    let with = policy(&[], Some(available()));
    let out = serde_json::to_value(Admission::default().review(
        STATUS_MUTATE_PATH,
        &serde_json::to_vec(&review_of("UPDATE", with.clone(), Some(with))).unwrap(),
    ))
    .unwrap();
    assert_eq!(out["response"]["allowed"], true);
    assert!(out["response"].get("patch").is_none());
}

#[test]
fn main_mutation_clears_status_conditions() {
    let with = policy(&[], Some(available()));
    let out = Admission::default().review(
        MUTATE_PATH,
        &serde_json::to_vec(&review_of("CREATE", with, None)).unwrap(),
    );
    let ops = patch_of(&serde_json::to_value(out).unwrap());
    assert_eq!(
        ops,
        vec![json!({"op": "remove", "path": "/status/conditions"})]
    );
}

#[test]
fn unknown_path_is_denied_by_name() {
    let out = serde_json::to_value(Admission::default().review(
        "/nope",
        &serde_json::to_vec(&review_of("CREATE", policy(&[], None), None)).unwrap(),
    ))
    .unwrap();
    assert_eq!(out["response"]["allowed"], false);
    assert_eq!(
        out["response"]["status"]["message"],
        "no admission hook is served at /nope"
    );
}
