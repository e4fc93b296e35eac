//! Which field of a desired state nmstate refused.
//!
//! nmstate's validation errors carry a message but no field path. [`locate`] finds the field by
//! taking the state apart: it walks down from the root, and at each level removes one child at
//! a time and asks nmstate again. A child whose removal makes the state acceptable holds the
//! fault (of several, the one whose value the message quotes, else the first that holds fields,
//! else the one whose key it quotes); failing that, the one child whose removal changes the
//! message (nmstate now complains that something it needs is missing); failing that, the child
//! the message quotes (its value, the longest if several, or its key spelled with spaces). The
//! walk stops where no child is to blame: the denial then names the smallest object that holds
//! the fault. The walk has a budget ([`BUDGET_PROBES`], [`BUDGET_TIME`]); spent, it names the
//! field reached so far.

use serde_json::Value;
use std::time::{Duration, Instant};

/// At most this many probes per refusal: a huge state (the API server sends up to 3 MiB) must
/// not keep the webhook busy; the denial then names a less precise field.
const BUDGET_PROBES: usize = 256;
/// And at most this long, well inside the API server's webhook timeout.
const BUDGET_TIME: Duration = Duration::from_millis(1_500);

/// What nmstate says about a state with one part removed, next to the refusal being located.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// The state is accepted: the removed part held the fault.
    Accepted,
    /// The same refusal: the fault is elsewhere.
    Same,
    /// Another refusal: the removed part was needed, maybe the fault itself.
    Other,
}

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// The path of the field at fault in `state`, as `.routes.config[0].destination` (empty for the
/// whole state). `message` is nmstate's refusal; `probe` judges a state with a part removed.
pub fn locate(state: &Value, message: &str, probe: impl Fn(&Value) -> Probe) -> String {
    let deadline = Instant::now() + BUDGET_TIME;
    let mut left = BUDGET_PROBES;
    // Out of budget, a probe tells nothing: the walk stops at the field found so far.
    let mut probe = |s: &Value| {
        if left == 0 || Instant::now() > deadline {
            left = 0;
            return None;
        }
        left -= 1;
        Some(probe(s))
    };
    let mut path: Vec<Step> = Vec::new();
    // A desired state is a shallow tree; the bound only guards against a pathological one.
    for _ in 0..32 {
        let Some(node) = at(state, &path) else { break };
        let children = children(node);
        if children.is_empty() {
            break;
        }
        let mut other = Vec::new();
        let mut accepted = Vec::new();
        for step in &children {
            let mut trial = state.clone();
            remove(&mut trial, &path, step);
            match probe(&trial) {
                Some(Probe::Accepted) => accepted.push(step.clone()),
                Some(Probe::Other) => other.push(step.clone()),
                Some(Probe::Same) => {}
                None => return render(&path),
            }
        }
        let next = pick_accepted(node, &accepted, message)
            .or_else(|| (other.len() == 1).then(|| other[0].clone()))
            .or_else(|| {
                let candidates = if other.is_empty() { &children } else { &other };
                quoted(node, candidates, message)
            });
        match next {
            Some(step) => path.push(step),
            None => break,
        }
    }
    render(&path)
}

/// Of the children whose removal makes the state acceptable, the one to blame: the only one;
/// else the one the message quotes; else the first that holds more fields (removing an
/// interface's `type` also "cures" a fault inside its `ipv4`, since nmstate then reads the
/// interface leniently).
fn pick_accepted(node: &Value, accepted: &[Step], message: &str) -> Option<Step> {
    match accepted {
        [] => None,
        [one] => Some(one.clone()),
        several => quoted_value(node, several, message)
            .or_else(|| {
                several
                    .iter()
                    .find(|s| child(node, s).is_some_and(|c| c.is_object() || c.is_array()))
                    .cloned()
            })
            .or_else(|| quoted_key(several, message))
            .or_else(|| several.first().cloned()),
    }
}

fn children(node: &Value) -> Vec<Step> {
    match node {
        Value::Object(m) => m.keys().cloned().map(Step::Key).collect(),
        Value::Array(a) => (0..a.len()).map(Step::Index).collect(),
        _ => Vec::new(),
    }
}

fn child<'a>(node: &'a Value, step: &Step) -> Option<&'a Value> {
    match step {
        Step::Key(k) => node.get(k),
        Step::Index(i) => node.get(i),
    }
}

fn at<'a>(state: &'a Value, path: &[Step]) -> Option<&'a Value> {
    path.iter().try_fold(state, child)
}

fn remove(state: &mut Value, path: &[Step], step: &Step) {
    let mut node = state;
    for s in path {
        let next = match s {
            Step::Key(k) => node.get_mut(k),
            Step::Index(i) => node.get_mut(i),
        };
        match next {
            Some(n) => node = n,
            None => return,
        }
    }
    match (node, step) {
        (Value::Object(m), Step::Key(k)) => {
            m.remove(k);
        }
        (Value::Array(a), Step::Index(i)) if *i < a.len() => {
            a.remove(*i);
        }
        _ => {}
    }
}

/// The one candidate the message quotes: by its scalar value, else by its key.
fn quoted(node: &Value, candidates: &[Step], message: &str) -> Option<Step> {
    quoted_value(node, candidates, message).or_else(|| quoted_key(candidates, message))
}

/// The candidate whose scalar value the message quotes.
fn quoted_value(node: &Value, candidates: &[Step], message: &str) -> Option<Step> {
    let lower = message.to_lowercase();
    // By value, the longest quoted one: `2001:db8::1/64` quotes the address and its prefix,
    // the address is the more specific match.
    let mut by_value: Vec<(usize, &Step)> = candidates
        .iter()
        .filter_map(|s| {
            let v = child(node, s).and_then(scalar)?.to_lowercase();
            (!v.is_empty() && quotes(&lower, &v)).then_some((v.len(), s))
        })
        .collect();
    by_value.sort_by_key(|(len, _)| std::cmp::Reverse(*len));
    match by_value.as_slice() {
        [(_, one)] => Some((*one).clone()),
        [(a, one), (b, _), ..] if a > b => Some((*one).clone()),
        _ => None,
    }
}

/// The one candidate whose key the message quotes (as written, or with spaces for dashes).
/// Weaker than a value: serde's "invalid type" quotes `type` in every type error.
fn quoted_key(candidates: &[Step], message: &str) -> Option<Step> {
    let lower = message.to_lowercase();
    let by_key: Vec<&Step> = candidates
        .iter()
        .filter(|s| match s {
            Step::Key(k) => {
                let k = k.to_lowercase();
                quotes(&lower, &k) || quotes(&lower, &k.replace('-', " "))
            }
            Step::Index(_) => false,
        })
        .collect();
    match by_key.as_slice() {
        [one] => Some((*one).clone()),
        _ => None,
    }
}

/// Whether `needle` occurs in `hay` as a whole word (not inside a longer word or number).
fn quotes(hay: &str, needle: &str) -> bool {
    let word = |c: char| c.is_alphanumeric() || c == '_';
    hay.match_indices(needle).any(|(i, _)| {
        let before = hay[..i].chars().next_back();
        let after = hay[i + needle.len()..].chars().next();
        !before.is_some_and(word) && !after.is_some_and(word)
    })
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn render(path: &[Step]) -> String {
    path.iter()
        .map(|s| match s {
            Step::Key(k) => format!(".{k}"),
            Step::Index(i) => format!("[{i}]"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A fake nmstate that refuses any `bad` string anywhere and needs every `need` key.
    fn fake(state: &Value) -> Probe {
        let text = state.to_string();
        if !text.contains("\"need\"") {
            Probe::Other
        } else if text.contains("\"bad\"") {
            Probe::Same
        } else {
            Probe::Accepted
        }
    }

    #[test]
    fn walks_down_to_the_removed_leaf() {
        let state = json!({"a": {"need": 1}, "b": [{"x": "ok"}, {"x": "bad"}]});
        assert_eq!(locate(&state, "x is bad", fake), ".b[1].x");
    }

    #[test]
    fn a_needed_sibling_does_not_draw_the_blame() {
        let state = json!({"a": [{"need": 1, "x": "bad"}]});
        assert_eq!(locate(&state, "bad value", fake), ".a[0].x");
    }

    #[test]
    fn picks_the_quoted_key_when_removals_do_not_tell() {
        let state = json!({"addr": {"ip": "1.2.3.4", "prefix-length": 33}});
        let probe = |s: &Value| {
            let a = &s["addr"];
            match (a.get("ip"), a.get("prefix-length")) {
                (Some(_), Some(_)) => Probe::Same,
                (None, None) => Probe::Accepted,
                _ => Probe::Other,
            }
        };
        assert_eq!(
            locate(&state, "Invalid IPv4 network prefix length '33'", probe),
            ".addr.prefix-length"
        );
    }

    #[test]
    fn a_huge_state_spends_the_budget_and_names_what_it_reached() {
        let mut items: Vec<Value> = (0..1_000).map(|i| json!({"x": i})).collect();
        items.push(json!({"x": "bad"}));
        let state = json!({"need": 1, "items": items});
        let calls = std::cell::Cell::new(0);
        let path = locate(&state, "bad", |s| {
            calls.set(calls.get() + 1);
            fake(s)
        });
        assert_eq!(path, ".items");
        // the probe budget, or fewer when the time budget ran out first (a loaded machine)
        assert!(calls.get() <= BUDGET_PROBES, "{} probes", calls.get());
    }

    #[test]
    fn quotes_match_whole_words_only() {
        assert!(quotes("invalid prefix 33 here", "33"));
        assert!(!quotes("invalid prefix 133 here", "33"));
        assert!(quotes("server 300.1.1.1", "300.1.1.1"));
    }
}
