//! Keeping secrets out of statuses, events and logs, and keeping failure messages small.
//!
//! A desired state may carry secrets: 802.1x passwords, IPsec pre-shared keys, MACsec CAKs,
//! WireGuard private and pre-shared keys. nmstate replaces their values by
//! [`HIDDEN`] when it shows a state; [`hide_secrets`] does the same to any state
//! knmstate writes, and [`scrub`] removes the secret values from free text (error messages).

use serde_json::Value;

/// nmstate's replacement for a hidden secret.
pub const HIDDEN: &str = "<_password_hid_by_nmstate>";

/// Cap of a failure message written to an enactment or an event, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024;

/// Keys whose values are secrets, wherever they appear.
pub const SECRET_KEYS: &[&str] = &[
    "password",
    "private-key-password",
    "phase2-private-key-password",
    "psk",
    "pre-shared-key",
    "preshared-key",
    "mka-cak",
    "private-key",
    "secret",
    "leftprivatekey",
    "rightprivatekey",
];

fn is_secret_key(k: &str) -> bool {
    SECRET_KEYS.iter().any(|s| k.eq_ignore_ascii_case(s))
}

/// Replace every secret value in `v` by [`HIDDEN`], in place.
///
/// ```
/// use serde_json::json;
/// let mut s = json!({"interfaces": [{"name": "eth0", "802.1x": {"identity": "me", "password": "hunter2"}}]});
/// knmstate_state_engine::secrets::hide_secrets(&mut s);
/// assert_eq!(s["interfaces"][0]["802.1x"]["password"], "<_password_hid_by_nmstate>");
/// assert_eq!(s["interfaces"][0]["802.1x"]["identity"], "me");
/// ```
pub fn hide_secrets(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, child) in m.iter_mut() {
                if is_secret_key(k) && !child.is_null() && !child.is_object() {
                    *child = Value::String(HIDDEN.to_owned());
                } else {
                    hide_secrets(child);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(hide_secrets),
        _ => {}
    }
}

/// [`hide_secrets`] on a copy.
pub fn hidden(v: &Value) -> Value {
    let mut v = v.clone();
    hide_secrets(&mut v);
    v
}

/// The secret values found in `v` (strings and numbers under secret keys), longest first.
pub fn secret_values(v: &Value) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, child) in m {
                    match child {
                        Value::String(s) if is_secret_key(k) && !s.is_empty() && s != HIDDEN => {
                            out.push(s.clone());
                        }
                        Value::Number(n) if is_secret_key(k) => out.push(n.to_string()),
                        _ => walk(child, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|c| walk(c, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, &mut out);
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}

/// Remove every secret of `state` from `text` (e.g. an nmstate error that quotes the state).
///
/// ```
/// use serde_json::json;
/// let s = json!({"ipsec": {"psk": "s3cr3t"}});
/// let m = knmstate_state_engine::secrets::scrub("apply failed: psk s3cr3t rejected", &s);
/// assert_eq!(m, "apply failed: psk <_password_hid_by_nmstate> rejected");
/// ```
pub fn scrub(text: &str, state: &Value) -> String {
    let mut out = text.to_owned();
    for secret in secret_values(state) {
        out = out.replace(&secret, HIDDEN);
    }
    out
}

/// Cut `text` to at most `max` bytes on a character boundary, saying how much was cut.
///
/// ```
/// let m = knmstate_state_engine::secrets::cap_message(&"x".repeat(100), 60);
/// assert!(m.len() <= 60 && m.starts_with("xxxxxxxxxx"));
/// assert!(m.ends_with("bytes cut]"));
/// ```
pub fn cap_message(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    // The suffix is at most this long ("… [" + up to 20 digits + " bytes cut]").
    let reserve = 40;
    let mut end = max.saturating_sub(reserve).min(text.len());
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [{} bytes cut]", &text[..end], text.len() - end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hides_ipsec_wireguard_and_macsec_secrets() {
        let mut s = json!({"interfaces": [
            {"name": "hosta_conn", "type": "ipsec", "libreswan": {"psk": "abc", "right": "198.18.0.9"}},
            {"name": "wg0", "type": "wireguard", "wireguard": {"private-key": "k1",
                "peers": [{"public-key": "pub", "preshared-key": "k2"}]}},
            {"name": "macsec0", "type": "macsec", "macsec": {"mka-cak": "50b71a8ef34bd1aef", "mka-ckn": "f2b4"}}
        ]});
        let secrets = secret_values(&s);
        assert_eq!(secrets.len(), 4);
        hide_secrets(&mut s);
        let text = s.to_string();
        for secret in ["abc", "k1", "k2", "50b71a8ef34bd1aef"] {
            assert!(
                !text.contains(&format!("\"{secret}\"")),
                "{secret} leaked: {text}"
            );
        }
        assert_eq!(
            s["interfaces"][1]["wireguard"]["peers"][0]["public-key"],
            "pub"
        );
        assert_eq!(s["interfaces"][2]["macsec"]["mka-ckn"], "f2b4");
        assert!(
            secret_values(&s).is_empty(),
            "hidden values are not secrets"
        );
    }

    #[test]
    fn cap_keeps_the_head_and_respects_utf8() {
        let text = format!("decisive error first\n{}", "é".repeat(20_000));
        let m = cap_message(&text, MAX_MESSAGE_BYTES);
        assert!(m.len() <= MAX_MESSAGE_BYTES, "{}", m.len());
        assert!(m.starts_with("decisive error first"));
        assert_eq!(cap_message("short", 10), "short");
    }
}
