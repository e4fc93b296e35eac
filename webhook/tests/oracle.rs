//! How much of what nmstate refuses offline does admission refuse? 1,500 mutations of the example
//! policies and fixture reviews (`mutate`), each judged by nmstate's own offline configuration
//! generation (`NetworkState::gen_conf`, the library of `nmstatectl gc`, called here directly as
//! the oracle) and by the webhook's real entry point (`Admission::review`).
//!
//! A refusal of the oracle depends on the node when nmstate accepts the same state once the
//! node's side is supplied (`offline::with_node_supplied`: the interfaces it refers to but does
//! not define, an IP-enabled uplink for DNS, the IP settings a defined interface leaves unsaid);
//! those are left out of the coverage, and refusing one counts as a false refusal. The figures
//! are printed (`cargo test -p knmstate-webhook --test oracle -- --nocapture`).

mod mutate;

use knmstate_webhook::offline::with_node_supplied;
use mutate::{Answer, Rng, base_policies, mutate, render, review, validate};
use serde_json::{Value, json};

/// The oracle: does nmstate generate a configuration for `state`? (`None`: it panicked.)
fn oracle_accepts(state: &Value) -> Option<bool> {
    let Ok(parsed) = serde_json::from_value::<nmstate::NetworkState>(state.clone()) else {
        return Some(false);
    };
    std::panic::catch_unwind(|| parsed.gen_conf().is_ok()).ok()
}

#[derive(Debug, Default)]
struct Figures {
    tried: usize,
    oracle_accepted: usize,
    oracle_refused: usize,
    node_dependent: usize,
    oracle_panics: usize,
    admission_refused_of_refused: usize,
    false_refusals: usize,
    server_errors: usize,
    denials_without_field_path: usize,
    field_exact: usize,
    field_ancestor: usize,
    field_descendant: usize,
    field_elsewhere: usize,
}

const MUTATIONS: usize = 1_500;
const SEED: u64 = 0x6b6e_6d73_7461_7465;

#[test]
fn admission_refuses_what_nmstate_refuses_offline_and_nothing_else() {
    let bases: Vec<Value> = base_policies()
        .into_iter()
        .filter_map(|(_, p)| p.pointer("/spec/desiredState").cloned())
        .filter(|s| s.is_object() && !s.to_string().contains("{{"))
        .collect();
    assert!(bases.len() >= 20, "{} base states", bases.len());
    let mut rng = Rng::new(SEED);
    let mut f = Figures::default();
    let mut misses = Vec::new();
    let mut falses = Vec::new();
    let mut i = 0;
    while f.tried < MUTATIONS {
        i += 1;
        let mut state = rng.pick(&bases).clone();
        let mutated = render(&mutate(&mut state, &mut rng));
        if state.is_null() {
            // `desiredState: null` is no desired state at all (the API server prunes it).
            continue;
        }
        let policy = json!({
            "apiVersion": "nmstate.io/v1", "kind": "NodeNetworkConfigurationPolicy",
            "metadata": {"name": format!("oracle-{i}")},
            "spec": {"desiredState": state},
        });
        f.tried += 1;
        let refused = match oracle_accepts(&state) {
            Some(true) => false,
            Some(false) => true,
            None => {
                f.oracle_panics += 1;
                true
            }
        };
        let node_dependent = refused
            && with_node_supplied(&state)
                .iter()
                .any(|v| oracle_accepts(v) == Some(true));
        match (refused, node_dependent) {
            (false, _) => f.oracle_accepted += 1,
            (true, true) => f.node_dependent += 1,
            (true, false) => f.oracle_refused += 1,
        }
        let must_refuse = refused && !node_dependent;
        match validate(&review("CREATE", &policy, None)) {
            Answer::ServerError(e) => {
                f.server_errors += 1;
                eprintln!("server error on {state}: {e}");
            }
            Answer::Allowed if must_refuse => misses.push(state.to_string()),
            Answer::Allowed => {}
            Answer::Denied { message, fields } => {
                let field = fields.first().cloned().unwrap_or_default();
                if fields.is_empty() || !message.starts_with("spec.") {
                    f.denials_without_field_path += 1;
                }
                if must_refuse {
                    f.admission_refused_of_refused += 1;
                } else {
                    falses.push(format!("{state}: {message}"));
                }
                let named = field.strip_prefix("spec.desiredState").unwrap_or(&field);
                if named == mutated {
                    f.field_exact += 1;
                } else if mutated.starts_with(named) {
                    f.field_ancestor += 1;
                    if std::env::var_os("ORACLE_SHOW_ANCESTOR").is_some() {
                        eprintln!("mutated {mutated}, named {named}: {message}\n  {state}");
                    }
                } else if named.starts_with(&mutated) {
                    f.field_descendant += 1;
                } else {
                    f.field_elsewhere += 1;
                    if std::env::var_os("ORACLE_SHOW_ELSEWHERE").is_some() {
                        eprintln!("mutated {mutated}, named {named}: {message}\n  {state}");
                    }
                }
            }
        }
    }
    f.false_refusals = falses.len();
    // Counts stay far below 2^52: the conversion to f64 is exact.
    #[allow(clippy::cast_precision_loss)]
    let pct = |n: usize, of: usize| 100.0 * n as f64 / of.max(1) as f64;
    println!(
        "oracle harness ({} base states, seed {SEED:#x}):",
        bases.len()
    );
    println!("  mutations tried:                    {}", f.tried);
    println!(
        "  oracle accepted:                    {}",
        f.oracle_accepted
    );
    println!("  oracle refused, node-independent:   {}", f.oracle_refused);
    println!(
        "  oracle refused, node-dependent:     {} (excluded)",
        f.node_dependent
    );
    println!("  oracle panics:                      {}", f.oracle_panics);
    println!(
        "  refused by admission:               {} of {} ({:.1} %)",
        f.admission_refused_of_refused,
        f.oracle_refused,
        pct(f.admission_refused_of_refused, f.oracle_refused)
    );
    println!("  false refusals:                     {}", f.false_refusals);
    println!("  server errors:                      {}", f.server_errors);
    println!(
        "  denials without field path:         {}",
        f.denials_without_field_path
    );
    let denials = f.field_exact + f.field_ancestor + f.field_descendant + f.field_elsewhere;
    println!(
        "  field named vs field mutated:       exact {} ({:.1} %), ancestor {}, inside it {}, elsewhere {}",
        f.field_exact,
        pct(f.field_exact, denials),
        f.field_ancestor,
        f.field_descendant,
        f.field_elsewhere
    );
    assert!(f.tried >= 1_500);
    assert!(f.oracle_refused >= 300 && f.oracle_accepted >= 300, "{f:?}");
    assert_eq!(f.server_errors, 0);
    assert_eq!(f.denials_without_field_path, 0);
    assert!(falses.is_empty(), "false refusals: {falses:#?}");
    assert!(
        misses.is_empty(),
        "admitted although nmstate refuses: {misses:#?}"
    );
    assert_eq!(f.admission_refused_of_refused, f.oracle_refused);
}
