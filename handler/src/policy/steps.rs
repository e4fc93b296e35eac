//! How long each step of an apply attempt took, for `status.lastApply.steps`: the render and
//! the slot claim timed by the reconcile (`mod.rs`), the Progressing write and the probes'
//! selection, the apply, the probes and the commit timed around the transaction (`apply.rs`).

use std::time::{Duration, Instant};

use knmstate_api::shared::ApplySteps;
use knmstate_nm_backend::Backend;

use super::Run;

impl<B: Backend> Run<B> {
    /// The steps of an attempt: those before it, the probes' selection `selected_in` (with the
    /// Progressing write), and the transaction that began at `started` (with the slot fence's
    /// check before it), whose probes ran between the instants of `probed` (none: they did not
    /// run); it ends now.
    pub(super) fn steps_of(
        &self,
        selected_in: Duration,
        started: Instant,
        probed: Option<&(Instant, Instant)>,
    ) -> ApplySteps {
        let [apply, probes, commit] = transaction_steps(started, probed.copied(), Instant::now());
        ApplySteps {
            progressing_seconds: self.steps.progressing_seconds + selected_in.as_secs_f64(),
            apply_seconds: apply,
            probes_seconds: probes,
            commit_seconds: commit,
            ..self.steps.clone()
        }
    }
}

/// The apply, probes and commit seconds of a transaction from `started` to `ended` whose probes
/// ran between the instants of `probed`: without probes (the apply failed) it was all apply.
fn transaction_steps(
    started: Instant,
    probed: Option<(Instant, Instant)>,
    ended: Instant,
) -> [f64; 3] {
    let (began, probes_ended) = probed.unwrap_or((ended, ended));
    let seconds = |from: Instant, to: Instant| to.saturating_duration_since(from).as_secs_f64();
    [
        seconds(started, began),
        seconds(began, probes_ended),
        seconds(probes_ended, ended),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_close(got: [f64; 3], want: [f64; 3]) {
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-9, "{got:?} != {want:?}");
        }
    }

    #[test]
    fn a_transaction_splits_at_its_probes_and_is_all_apply_without_them() {
        let t0 = Instant::now();
        let at = |millis| t0 + Duration::from_millis(millis);
        assert_close(
            transaction_steps(t0, Some((at(300), at(450))), at(500)),
            [0.3, 0.15, 0.05],
        );
        assert_close(transaction_steps(t0, None, at(200)), [0.2, 0.0, 0.0]);
    }
}
