//! Property test of `knmstate_state_engine::secrets`: desired states carrying every kind of
//! secret (802.1x password, IPsec psk, MACsec mka-cak, WireGuard private and pre-shared keys),
//! with arbitrary printable secrets (quotes, backslashes, unicode, combining marks), quoted in
//! error text as JSON, pretty JSON, `Debug`, plain text and escaped twice, inside arbitrary
//! text. After `hidden`, `scrub` and `cap_message` no part of four characters or more of any
//! secret, in any of its escaped forms, is left.
//!
//! A case is kept only when the text an ideal scrubber would produce (the same text built
//! from the state with every secret already hidden) holds no such part itself: a secret such
//! as `name` cannot be told from the text around it.

use knmstate_state_engine::secrets::{
    HIDDEN, cap_message, hidden, scrub, scrub_capped, secret_forms,
};
use proptest::prelude::*;
use serde_json::{Value, json};

/// A desired state with the five secrets in their places.
fn state(s: &[String; 5]) -> Value {
    json!({"interfaces": [
        {"name": "eth0", "type": "ethernet", "state": "up",
         "802.1x": {"identity": "node", "eap-methods": ["peap"], "password": s[0]}},
        {"name": "hosta_conn", "type": "ipsec",
         "libreswan": {"right": "198.18.0.9", "psk": s[1]}},
        {"name": "macsec0", "type": "macsec",
         "macsec": {"base-iface": "eth1", "mka-cak": s[2], "mka-ckn": "f2b4"}},
        {"name": "wg0", "type": "wireguard",
         "wireguard": {"private-key": s[3],
                       "peers": [{"public-key": "pub", "preshared-key": s[4]}]}}
    ]})
}

/// How an error message quotes the state (`kind` picks one of them).
fn embed(kind: u8, state: &Value, s: &[String; 5]) -> String {
    match kind % 8 {
        0 => state.to_string(),
        1 => serde_json::to_string_pretty(state).unwrap_or_default(),
        2 => format!("{state:?}"),
        3 => format!("{:?}", state.to_string()),
        4 => json!({"message": state.to_string()}).to_string(),
        5 => format!(
            "802.1x password {} psk {} mka-cak {} private-key {} preshared-key {}",
            s[0], s[1], s[2], s[3], s[4]
        ),
        6 => format!("secrets {s:?}"),
        _ => format!("{:?}", format!("{state:?}")),
    }
}

/// Every run of four characters of every form of `secret`.
fn windows(secret: &str) -> Vec<String> {
    secret_forms(secret)
        .iter()
        .flat_map(|form| {
            let chars: Vec<char> = form.chars().collect();
            chars
                .windows(4)
                .map(|w| w.iter().collect::<String>())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn leaked<'a>(text: &str, parts: &'a [String]) -> Option<&'a String> {
    parts.iter().find(|p| text.contains(p.as_str()))
}

fn secret() -> impl Strategy<Value = String> {
    prop_oneof!["[a-zA-Z0-9\"\\\\'{}:, é€😀ß\u{301}]{4,20}", "\\PC{4,20}",]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn no_part_of_a_secret_survives(
        secrets in [secret(), secret(), secret(), secret(), secret()],
        prefix in "\\PC{0,30}",
        suffix in "\\PC{0,30}",
        kind in 0u8..8,
        max in 0usize..4_000,
    ) {
        let desired = state(&secrets);
        let masked = [(); 5].map(|()| HIDDEN.to_owned());
        let ideal_state = state(&masked);
        let ideal = format!(
            "{prefix}{}{suffix}\n{ideal_state}\n{ideal_state:?}\n… [0123456789 bytes cut]",
            embed(kind, &ideal_state, &masked)
        );
        let parts: Vec<String> = secrets.iter().flat_map(|s| windows(s)).collect();
        prop_assume!(leaked(&ideal, &parts).is_none());

        let shown = hidden(&desired);
        prop_assert_eq!(&shown, &ideal_state);
        for text in [shown.to_string(), format!("{shown:?}")] {
            prop_assert!(leaked(&text, &parts).is_none(), "hidden state leaks: {}", text);
        }

        let text = format!("{prefix}{}{suffix}", embed(kind, &desired, &secrets));
        let scrubbed = scrub(&text, &desired);
        if let Some(part) = leaked(&scrubbed, &parts) {
            prop_assert!(false, "{:?} left in {}", part, scrubbed);
        }
        let capped = cap_message(&scrubbed, max);
        if scrubbed.len() <= max {
            prop_assert_eq!(&capped, &scrubbed);
        } else {
            // Below 40 bytes only the "… [N bytes cut]" note is left.
            prop_assert!(capped.len() <= max.max(40), "{} bytes", capped.len());
        }
        if let Some(part) = leaked(&capped, &parts) {
            prop_assert!(false, "{:?} left in {}", part, capped);
        }
        let both = scrub_capped(&text, &desired, max);
        prop_assert_eq!(&both, &capped);
    }
}
