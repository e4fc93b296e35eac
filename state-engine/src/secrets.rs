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
                    if is_secret_key(k) && !child.is_object() {
                        leaves(child, out);
                    } else {
                        walk(child, out);
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|c| walk(c, out)),
            _ => {}
        }
    }
    /// Every value under a secret key (an array of keys is hidden whole by [`hide_secrets`]).
    fn leaves(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) if !s.is_empty() && s != HIDDEN => out.push(s.clone()),
            Value::Number(n) => out.push(n.to_string()),
            Value::Array(a) => a.iter().for_each(|c| leaves(c, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, &mut out);
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}

/// How a secret can appear in free text: as is, escaped as inside a JSON string, escaped as by
/// Rust's `Debug` (`format!("{:?}", s)`), and each escape applied over the other or twice (a
/// JSON document quoted by `Debug`, a JSON string holding JSON). Longest first, no empty form.
///
/// ```
/// let forms = knmstate_state_engine::secrets::secret_forms(r#"a"b"#);
/// assert!(forms.contains(&r#"a"b"#.to_owned()));
/// assert!(forms.contains(&r#"a\"b"#.to_owned()));
/// assert!(forms.contains(&r#"a\\\"b"#.to_owned()));
/// ```
pub fn secret_forms(secret: &str) -> Vec<String> {
    let json = json_escaped(secret);
    let debug = debug_escaped(secret);
    let mut forms = vec![
        json_escaped(&json),
        debug_escaped(&json),
        json_escaped(&debug),
        debug_escaped(&debug),
        json,
        debug,
        secret.to_owned(),
    ];
    forms.retain(|f| !f.is_empty());
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    forms.dedup();
    forms
}

/// `s` as it appears between the quotes of a JSON string.
fn json_escaped(s: &str) -> String {
    let quoted = Value::String(s.to_owned()).to_string();
    unquoted(&quoted).to_owned()
}

/// `s` as it appears between the quotes of its `Debug` form.
fn debug_escaped(s: &str) -> String {
    let quoted = format!("{s:?}");
    unquoted(&quoted).to_owned()
}

fn unquoted(quoted: &str) -> &str {
    quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or(quoted)
}

/// Remove every secret of `state` from `text` (e.g. an nmstate error that quotes the state),
/// in each of its [`secret_forms`].
///
/// ```
/// use serde_json::json;
/// let s = json!({"ipsec": {"psk": "s3cr3t"}});
/// let m = knmstate_state_engine::secrets::scrub("apply failed: psk s3cr3t rejected", &s);
/// assert_eq!(m, "apply failed: psk <_password_hid_by_nmstate> rejected");
/// ```
pub fn scrub(text: &str, state: &Value) -> String {
    let mut forms: Vec<String> = secret_values(state)
        .iter()
        .flat_map(|s| secret_forms(s))
        .collect();
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    forms.dedup();
    let mut out = text.to_owned();
    for form in forms {
        if out.contains(&form) {
            out = out.replace(&form, HIDDEN);
        }
    }
    out
}

/// [`scrub`] `text`, then [`cap_message`] it to `max` bytes: every message knmstate writes
/// (statuses, events, logs) that may quote the desired state goes through here.
///
/// The order matters: once scrubbed, the text holds no secret, so the cut falls in plain text
/// or inside a [`HIDDEN`] marker. Capping first could cut a secret in half and leave a prefix
/// that [`scrub`] no longer recognises.
///
/// ```
/// use serde_json::json;
/// let s = json!({"802.1x": {"password": "hunter2-secret"}});
/// let text = format!("{}hunter2-secret", "x".repeat(60));
/// let m = knmstate_state_engine::secrets::scrub_capped(&text, &s, 70);
/// assert!(!m.contains("hunt"), "{m}");
/// ```
pub fn scrub_capped(text: &str, state: &Value, max: usize) -> String {
    cap_message(&scrub(text, state), max)
}

/// Cut `text` to at most `max` bytes on a character boundary, saying how much was cut.
///
/// It knows no secret: give it text [`scrub`]bed already, or use [`scrub_capped`].
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
    use rstest::rstest;
    use serde_json::json;

    const WITH_QUOTE: &str = r#"pa"ss\wörd"#;

    fn quoted_state() -> Value {
        json!({"interfaces": [{"name": "eth0", "802.1x": {"identity": "me", "password": WITH_QUOTE}}]})
    }

    #[rstest]
    #[case::plain(format!("nmstate refused {WITH_QUOTE} here"))]
    #[case::json(format!("invalid state: {}", quoted_state()))]
    #[case::json_pretty(serde_json::to_string_pretty(&quoted_state()).expect("json"))]
    #[case::debug_of_value(format!("invalid state: {:?}", quoted_state()))]
    #[case::debug_of_str(format!("bad password {WITH_QUOTE:?}"))]
    #[case::debug_of_json(format!("rejected {:?}", quoted_state().to_string()))]
    #[case::json_of_json(json!({"error": quoted_state().to_string()}).to_string())]
    #[case::json_of_debug(json!({"error": format!("{:?}", WITH_QUOTE)}).to_string())]
    #[case::debug_of_debug(format!("{:?}", format!("{WITH_QUOTE:?}")))]
    fn scrub_removes_every_form(#[case] text: String) {
        let escaped = secret_forms(WITH_QUOTE);
        assert!(
            escaped.iter().any(|f| text.contains(f)),
            "case lacks the secret: {text}"
        );
        let out = scrub(&text, &quoted_state());
        for form in &escaped {
            assert!(!out.contains(form.as_str()), "{form} left in {out}");
        }
        assert!(out.contains(HIDDEN), "{out}");
        for fragment in ["pa\\\"ss", "ss\\\\w", "wörd", "pa\"ss"] {
            assert!(!out.contains(fragment), "{fragment} left in {out}");
        }
    }

    #[rstest]
    #[case::cut_before_the_secret(50)]
    #[case::cut_where_the_secret_was(80)]
    #[case::cut_after_the_secret(100)]
    #[case::uncut(1_000)]
    fn scrub_capped_never_leaves_part_of_a_secret(#[case] max: usize) {
        let state = json!({"macsec": {"mka-cak": "50b71a8ef34bd1aef0c2"}});
        let text = format!("{}50b71a8ef34bd1aef0c2 and more text", "x".repeat(30));
        let out = scrub_capped(&text, &state, max);
        assert!(out.len() <= max, "{} > {max}", out.len());
        assert!(!out.contains("50b7"), "{out}");
    }

    #[test]
    fn secrets_in_arrays_under_a_secret_key_are_found() {
        let s = json!({"wireguard": {"private-key": ["k-one", 42]}});
        assert_eq!(secret_values(&s), vec!["k-one".to_owned(), "42".to_owned()]);
        assert_eq!(scrub("k-one", &s), HIDDEN);
    }

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
