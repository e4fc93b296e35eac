//! Errors of the decision core, each with a stable [`Error::category`].

/// Something the decision core refused. Variants are named for the action that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// `maxUnavailable` is neither a count `>= 0` nor a percentage from `"0%"` to `"100%"`.
    #[error("invalid maxUnavailable {value:?}: {problem}")]
    ParseMaxUnavailable {
        /// The value as written.
        value: String,
        /// What is wrong with it.
        problem: crate::concurrency::MaxUnavailableProblem,
    },
    /// A label key is not a qualified name.
    #[error("invalid label key {key:?}: {reason}")]
    ValidateLabelKey {
        /// The key as written.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A label value does not have the label value format.
    #[error("invalid label value {value:?}: {reason}")]
    ValidateLabelValue {
        /// The value as written.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A policy name cannot be used as the `nmstate.io/policy` label value.
    #[error(
        "invalid policy name: {name:?}: must be no more than 63 characters or match label value format"
    )]
    ValidatePolicyName {
        /// The name as written.
        name: String,
    },
    /// A node selector expression has an unknown operator or a value list that does not fit it.
    #[error("invalid node selector expression for key {key:?}: {reason}")]
    ParseSelectorExpression {
        /// The key of the expression.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A state is not shaped as nmstate expects (e.g. `interfaces` is not a list).
    #[error("invalid network state: {reason}")]
    ParseState {
        /// What is wrong with it.
        reason: String,
    },
}

impl Error {
    /// A stable, kebab-case category for condition reasons, event reasons and metric labels.
    ///
    /// ```
    /// use knmstate_state_engine::Error;
    /// use knmstate_state_engine::concurrency::MaxUnavailableProblem;
    /// let e = Error::ParseMaxUnavailable {
    ///     value: "asdf".into(),
    ///     problem: MaxUnavailableProblem::NotCountOrPercent,
    /// };
    /// assert_eq!(e.category(), "invalid-max-unavailable");
    /// ```
    pub fn category(&self) -> &'static str {
        match self {
            Self::ParseMaxUnavailable { .. } => "invalid-max-unavailable",
            Self::ValidateLabelKey { .. } => "invalid-label-key",
            Self::ValidateLabelValue { .. } => "invalid-label-value",
            Self::ValidatePolicyName { .. } => "invalid-policy-name",
            Self::ParseSelectorExpression { .. } => "invalid-node-selector",
            Self::ParseState { .. } => "invalid-state",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_name_message_is_upstreams() {
        let e = Error::ValidatePolicyName {
            name: "Bad_".into(),
        };
        assert_eq!(
            e.to_string(),
            "invalid policy name: \"Bad_\": must be no more than 63 characters or match label value format"
        );
        assert_eq!(e.category(), "invalid-policy-name");
    }
}
