//! Status conditions shared by every `nmstate.io` kind, with upstream's `set` semantics.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Whether a condition holds: `True`, `False` or `Unknown`, as in core Kubernetes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema, Default)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// Nobody has decided yet.
    #[default]
    Unknown,
}

impl ConditionStatus {
    /// The wire spelling: `True`, `False` or `Unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }
}

impl fmt::Display for ConditionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One observation about an object, as upstream's `shared.Condition`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type, e.g. `Available`, `Degraded`, `Progressing`, `Failing`, `Pending`, `Aborted`, `Ignored`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Status of the condition: `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// Machine-readable, CamelCase reason for the status, e.g. `SuccessfullyConfigured`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Human-readable detail for the status.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Last time this condition was written, whether or not it changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat_time: Option<Time>,
    /// Last time `status` changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
}

/// A list of conditions with at most one entry per type.
///
/// ```
/// use knmstate_api::condition::{ConditionList, ConditionStatus};
/// use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
/// use k8s_openapi::jiff::Timestamp;
///
/// let t0 = Time(Timestamp::from_second(1_000).unwrap());
/// let t1 = Time(Timestamp::from_second(2_000).unwrap());
/// let mut list = ConditionList::default();
/// list.set("Available", ConditionStatus::False, "FailedToConfigure", "boom", t0.clone());
/// list.set("Available", ConditionStatus::False, "FailedToConfigure", "boom again", t1.clone());
/// let c = list.find("Available").unwrap();
/// assert_eq!(c.last_transition_time, Some(t0)); // status did not change
/// assert_eq!(c.last_heartbeat_time, Some(t1)); // heartbeat always moves
/// assert_eq!(c.message, "boom again");
/// ```
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(transparent)]
pub struct ConditionList(pub Vec<Condition>);

impl ConditionList {
    /// Whether the list holds no condition.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The condition of this type, if present.
    pub fn find(&self, type_: &str) -> Option<&Condition> {
        self.0.iter().find(|c| c.type_ == type_)
    }

    /// Whether a condition of this type is present with this status.
    pub fn is(&self, type_: &str, status: ConditionStatus) -> bool {
        self.find(type_).is_some_and(|c| c.status == status)
    }

    /// Whether a condition of this type is present and `True`.
    pub fn is_true(&self, type_: &str) -> bool {
        self.is(type_, ConditionStatus::True)
    }

    /// The first condition whose status is `True`, as `kubectl get` shows it.
    pub fn first_true(&self) -> Option<&Condition> {
        self.0.iter().find(|c| c.status == ConditionStatus::True)
    }

    /// Upstream's `ConditionList.Set`: append a missing type with both timestamps at `now`;
    /// otherwise always refresh the heartbeat, move `lastTransitionTime` only when `status`
    /// changes, and overwrite reason and message.
    pub fn set(
        &mut self,
        type_: &str,
        status: ConditionStatus,
        reason: &str,
        message: &str,
        now: Time,
    ) {
        match self.0.iter_mut().find(|c| c.type_ == type_) {
            None => self.0.push(Condition {
                type_: type_.to_owned(),
                status,
                reason: reason.to_owned(),
                message: message.to_owned(),
                last_heartbeat_time: Some(now.clone()),
                last_transition_time: Some(now),
            }),
            Some(c) => {
                if c.status != status {
                    c.status = status;
                    c.last_transition_time = Some(now.clone());
                }
                c.last_heartbeat_time = Some(now);
                if c.reason != reason {
                    reason.clone_into(&mut c.reason);
                }
                if c.message != message {
                    message.clone_into(&mut c.message);
                }
            }
        }
    }

    /// Whether `other` holds the same (type, status, reason, message) set, ignoring timestamps
    /// and order. Writers use it to skip status writes that would only move heartbeats.
    pub fn same_meaning(&self, other: &ConditionList) -> bool {
        let key = |c: &Condition| {
            (
                c.type_.clone(),
                c.status,
                c.reason.clone(),
                c.message.clone(),
            )
        };
        let mut a: Vec<_> = self.0.iter().map(key).collect();
        let mut b: Vec<_> = other.0.iter().map(key).collect();
        a.sort_by(|x, y| x.0.cmp(&y.0));
        b.sort_by(|x, y| x.0.cmp(&y.0));
        a == b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn t(s: i64) -> Time {
        Time(Timestamp::from_second(s).unwrap())
    }

    #[test]
    fn set_appends_missing_type_with_both_timestamps() {
        let mut l = ConditionList::default();
        l.set("Available", ConditionStatus::True, "R", "m", t(1));
        assert_eq!(l.0.len(), 1);
        assert_eq!(l.0[0].last_heartbeat_time, Some(t(1)));
        assert_eq!(l.0[0].last_transition_time, Some(t(1)));
    }

    #[test]
    fn transition_time_moves_only_on_status_change() {
        let mut l = ConditionList::default();
        l.set("Available", ConditionStatus::Unknown, "", "", t(1));
        l.set("Available", ConditionStatus::Unknown, "X", "y", t(2));
        let c = l.find("Available").unwrap();
        assert_eq!(c.last_transition_time, Some(t(1)));
        assert_eq!(c.last_heartbeat_time, Some(t(2)));
        assert_eq!((c.reason.as_str(), c.message.as_str()), ("X", "y"));
        l.set("Available", ConditionStatus::True, "X", "y", t(3));
        let c = l.find("Available").unwrap();
        assert_eq!(c.last_transition_time, Some(t(3)));
        assert_eq!(l.0.len(), 1);
    }

    #[test]
    fn same_meaning_ignores_time_and_order() {
        let mut a = ConditionList::default();
        a.set("A", ConditionStatus::True, "r", "m", t(1));
        a.set("B", ConditionStatus::False, "r", "m", t(1));
        let mut b = ConditionList::default();
        b.set("B", ConditionStatus::False, "r", "m", t(9));
        b.set("A", ConditionStatus::True, "r", "m", t(9));
        assert!(a.same_meaning(&b));
        b.set("A", ConditionStatus::False, "r", "m", t(10));
        assert!(!a.same_meaning(&b));
    }

    #[test]
    fn wire_format_matches_upstream() {
        let mut l = ConditionList::default();
        l.set("Pending", ConditionStatus::False, "", "", t(0));
        let v = serde_json::to_value(&l).unwrap();
        assert_eq!(
            v,
            serde_json::json!([{
                "type": "Pending", "status": "False",
                "lastHeartbeatTime": "1970-01-01T00:00:00Z",
                "lastTransitionTime": "1970-01-01T00:00:00Z"
            }])
        );
    }
}
