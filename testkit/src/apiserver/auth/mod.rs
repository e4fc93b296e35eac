//! Who is asking: the identity a request authenticates as, which authorization (RBAC) and
//! admission (`request.userInfo` of ValidatingAdmissionPolicies and AdmissionReviews) see.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// An authenticated user, shaped like Kubernetes' `authentication.k8s.io/v1` `UserInfo`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    /// The user name, e.g. `system:serviceaccount:nmstate:nmstate-handler`.
    pub username: String,
    /// A unique id of the user, when the authenticator knows one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    /// The groups the user belongs to, e.g. `system:serviceaccounts`, `system:authenticated`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Extra attributes, e.g. `authentication.kubernetes.io/node-name` of a bound
    /// service-account token of a pod on a node.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Vec<String>>,
}

/// The extra key a bound service-account token of a pod carries its node's name under.
pub const NODE_NAME_EXTRA: &str = "authentication.kubernetes.io/node-name";

/// The group whose members may do everything (Kubernetes' privileged group).
pub const MASTERS_GROUP: &str = "system:masters";

/// The group every authenticated user is in.
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";

/// The user name of the stand-in's administrator (kubectl, tests, and every request while
/// authentication is not enforced).
pub const ADMIN_USER: &str = "kubernetes-admin";

impl UserInfo {
    /// The administrator: member of `system:masters`, allowed everything.
    pub fn admin() -> Self {
        Self {
            username: ADMIN_USER.to_owned(),
            groups: vec![MASTERS_GROUP.to_owned(), AUTHENTICATED_GROUP.to_owned()],
            ..Self::default()
        }
    }

    /// The node a bound service-account token names, if any.
    pub fn node_name(&self) -> Option<&str> {
        self.extra
            .get(NODE_NAME_EXTRA)
            .and_then(|v| v.first())
            .map(String::as_str)
    }
}
