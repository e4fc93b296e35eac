//! Who is asking: the identity a request authenticates as, which authorization (RBAC) and
//! admission (`request.userInfo` of `ValidatingAdmissionPolicy` and `AdmissionReview`) see;
//! how a request gets it (bearer tokens, `tokens`), what it may do (`rbac`), and the review
//! APIs that ask the same questions (`reviews`).

pub mod rbac;
pub mod reviews;
pub mod tokens;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use rbac::{Attributes, Decision, ResourceAttributes};
pub use tokens::{BoundPod, Subject, TokenError, TokenIssuer};

use super::error::{ApiError, ApiResult, qualified};
use super::storage::Store;

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

/// The user of requests without credentials, where those are let through (health and version).
pub const ANONYMOUS_USER: &str = "system:anonymous";

/// Paths anyone may read without a token (Kubernetes' `system:public-info-viewer`).
const PUBLIC_PATHS: [&str; 4] = ["/healthz", "/livez", "/readyz", "/version"];

/// Authentication and authorization of requests.
#[derive(Debug)]
pub struct Auth {
    issuer: TokenIssuer,
    enforce: bool,
    admin_token: String,
}

impl Auth {
    /// Tokens signed with the key at `key_file` (made there if missing; a fresh key without
    /// one). With `enforce`, requests without a valid token are refused (401) and RBAC decides
    /// (403); without, they run as the administrator and nothing is refused.
    pub fn new(key_file: Option<&std::path::Path>, enforce: bool) -> std::io::Result<Self> {
        let issuer = TokenIssuer::new(key_file)?;
        let admin_token = issuer.mint(Subject::Admin, Vec::new(), None);
        Ok(Self {
            issuer,
            enforce,
            admin_token,
        })
    }

    /// Whether requests are authenticated and authorized.
    pub fn enforced(&self) -> bool {
        self.enforce
    }

    /// The administrator's token (in the kubeconfig the server writes).
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// The token issuer.
    pub fn issuer(&self) -> &TokenIssuer {
        &self.issuer
    }

    /// The user a request's `Authorization: Bearer` header names. Without enforcement a
    /// missing or unknown token is the administrator; with it, a 401 `Unauthorized` (except on
    /// the public health and version paths, read as `system:anonymous`).
    pub fn authenticate(
        &self,
        store: &Store,
        headers: &http::HeaderMap,
        path: &str,
    ) -> ApiResult<UserInfo> {
        let token = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let user = token.and_then(|t| self.issuer.authenticate(store, t, &[]).ok());
        match user {
            Some((user, _)) => Ok(user),
            None if !self.enforce => Ok(UserInfo::admin()),
            None if token.is_none() && PUBLIC_PATHS.contains(&path) => Ok(UserInfo {
                username: ANONYMOUS_USER.to_owned(),
                groups: vec!["system:unauthenticated".to_owned()],
                ..UserInfo::default()
            }),
            None => {
                tracing::warn!(path, "refused: no valid bearer token (401)");
                Err(ApiError::new(401, "Unauthorized", "Unauthorized"))
            }
        }
    }

    /// Refuses (403 `Forbidden`, Kubernetes' message) what RBAC does not allow, when enforced.
    pub fn authorize(&self, store: &Store, user: &UserInfo, attrs: &Attributes) -> ApiResult<()> {
        if !self.enforce
            || user.username == ANONYMOUS_USER
                && matches!(attrs, Attributes::NonResource { path, .. } if PUBLIC_PATHS.contains(&path.as_str()))
        {
            return Ok(());
        }
        let decision = rbac::authorize(store, user, attrs);
        if decision.allowed {
            return Ok(());
        }
        let refusal = forbidden(user, attrs, &decision.reason);
        // Every refusal in the log, so that a missing permission of a box binary is found there.
        tracing::warn!(user = %user.username, "refused: {}", refusal.message);
        Err(refusal)
    }
}

/// Kubernetes' 403 for a refused request.
fn forbidden(user: &UserInfo, attrs: &Attributes, reason: &str) -> ApiError {
    let mut text = rbac::forbidden_text(&user.username, attrs);
    if !reason.is_empty() {
        text = format!("{text}: {reason}");
    }
    let (message, details) = match attrs {
        Attributes::NonResource { .. } => (format!("forbidden: {text}"), json!({})),
        Attributes::Resource(r) => {
            let gr = qualified(&r.group, &r.resource);
            let mut details = serde_json::Map::new();
            for (k, v) in [
                ("name", &r.name),
                ("group", &r.group),
                ("kind", &r.resource),
            ] {
                if !v.is_empty() {
                    details.insert(k.to_owned(), json!(v));
                }
            }
            let message = if r.name.is_empty() {
                format!("{gr} is forbidden: {text}")
            } else {
                format!("{gr} \"{}\" is forbidden: {text}", r.name)
            };
            (message, Value::Object(details))
        }
    };
    ApiError::new(403, "Forbidden", message).with_details(details)
}
