//! A node's current state as nmstate might report it, filtered for its NodeNetworkState under a
//! size cap taken from the input: never panics, always yields a JSON object.
#![no_main]

use knmstate_state_engine::filter::{FilterOptions, filter_state};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((cap, json)) = data.split_at_checked(2) else {
        return;
    };
    let Ok(current) = serde_json::from_slice::<serde_json::Value>(json) else {
        return;
    };
    let max_bytes = usize::from(u16::from_le_bytes([cap[0], cap[1]]));
    let out = filter_state(&current, &FilterOptions { max_bytes });
    assert!(out.state.is_object());
});
