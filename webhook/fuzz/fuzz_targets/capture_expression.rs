//! nmpolicy capture expressions as a user writes them in `spec.capture`: parsing one never
//! panics, and a refused one names its field.
#![no_main]

use knmstate_webhook::capture::{capture_problems, parse_expression};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|expression: &str| {
    let _ = parse_expression("fuzz", &serde_json::Value::from(expression));
    let capture = serde_json::json!({ "fuzz": expression });
    for problem in capture_problems(&capture) {
        assert_eq!(problem.field, "spec.capture.fuzz");
    }
});
