//! Raw AdmissionReview bytes, as the API server would POST them, to each admission path: the
//! answer is always an AdmissionReview with a response, and a denial of a policy validation
//! names its fields in `status.details.causes`.
#![no_main]

use knmstate_webhook::admission::{
    Admission, MUTATE_PATH, STATUS_MUTATE_PATH, TIMESTAMP_MUTATE_PATH, VALIDATE_PATH,
};
use libfuzzer_sys::fuzz_target;

const PATHS: [&str; 4] = [
    VALIDATE_PATH,
    MUTATE_PATH,
    STATUS_MUTATE_PATH,
    TIMESTAMP_MUTATE_PATH,
];

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let path = PATHS[usize::from(which) % PATHS.len()];
    let out = Admission::with_clock(|| 1).review(path, body);
    let response = out.get("response").expect("every answer has a response");
    assert!(
        response
            .get("allowed")
            .is_some_and(serde_json::Value::is_boolean)
    );
    if path == VALIDATE_PATH
        && response["allowed"] == false
        && response.pointer("/status/reason").and_then(|r| r.as_str()) != Some("InvalidRequest")
    {
        let causes = response
            .pointer("/status/details/causes")
            .and_then(|c| c.as_array())
            .expect("a policy denial lists its causes");
        assert!(!causes.is_empty());
        assert!(
            causes
                .iter()
                .all(|c| c["field"].as_str().is_some_and(|f| !f.is_empty()))
        );
    }
});
