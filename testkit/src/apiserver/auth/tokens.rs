//! Bearer tokens: minted by the stand-in, shaped like JWTs (`header.claims.signature`, HMAC-SHA256
//! with a key kept beside the data file so tokens survive a restart), and read back into the
//! user they name. A ServiceAccount token is only valid while its ServiceAccount (and, for a
//! bound token, its Pod with the same uid) exists, as on a real API server.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::hmac;
use serde::{Deserialize, Serialize};

use super::{AUTHENTICATED_GROUP, UserInfo};
use crate::apiserver::object;
use crate::apiserver::storage::Store;

/// The audience of tokens meant for the API server itself (what requests must carry).
pub const API_AUDIENCE: &str = "https://kubernetes.default.svc";

/// The pod-name extra of a bound service-account token.
pub const POD_NAME_EXTRA: &str = "authentication.kubernetes.io/pod-name";
/// The pod-uid extra of a bound service-account token.
pub const POD_UID_EXTRA: &str = "authentication.kubernetes.io/pod-uid";
/// The node-uid extra of a bound service-account token.
pub const NODE_UID_EXTRA: &str = "authentication.kubernetes.io/node-uid";
/// The credential-id extra (`JTI=<token id>`) of a service-account token.
pub const CREDENTIAL_ID_EXTRA: &str = "authentication.kubernetes.io/credential-id";

/// Whom a token authenticates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Subject {
    /// The administrator (group `system:masters`).
    Admin,
    /// A plain user and its groups (`system:authenticated` is added).
    User {
        /// User name.
        name: String,
        /// Groups.
        #[serde(default)]
        groups: Vec<String>,
    },
    /// A ServiceAccount, with an unbound token.
    ServiceAccount {
        /// Namespace of the ServiceAccount.
        namespace: String,
        /// Name of the ServiceAccount.
        name: String,
    },
    /// A ServiceAccount token bound to a Pod (what a kubelet mounts): it carries the pod and
    /// the node the pod runs on.
    Pod(BoundPod),
}

/// The pod (and its node) a bound service-account token names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BoundPod {
    /// Namespace of the pod and its ServiceAccount.
    pub namespace: String,
    /// The ServiceAccount.
    pub service_account: String,
    /// The pod's name.
    pub pod_name: String,
    /// The pod's uid (checked against the stored pod when not empty).
    #[serde(default)]
    pub pod_uid: String,
    /// The node the pod runs on.
    #[serde(default)]
    pub node_name: String,
    /// The node's uid.
    #[serde(default)]
    pub node_uid: String,
}

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Token id.
    pub jti: String,
    /// Audiences.
    pub aud: Vec<String>,
    /// Expiry, seconds since the epoch; none for tokens that do not expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Whom it authenticates.
    pub subject: Subject,
}

/// Mints and checks tokens.
#[derive(Debug)]
pub struct TokenIssuer {
    key: hmac::Key,
}

/// Why a token does not authenticate (the text `TokenReview` reports as `status.error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token of this server (format or signature).
    #[error("invalid bearer token")]
    Invalid,
    /// Expired.
    #[error("token has expired")]
    Expired,
    /// Not meant for the audiences asked for.
    #[error("token audiences {token:?} is invalid for the target audiences {wanted:?}")]
    Audience {
        /// The token's audiences.
        token: Vec<String>,
        /// The audiences asked for.
        wanted: Vec<String>,
    },
    /// The object the token was issued for is gone (or was replaced).
    #[error("{0}")]
    SubjectGone(String),
}

impl TokenError {
    /// Stable name of the failure class.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Invalid => "invalid-token",
            Self::Expired => "token-expired",
            Self::Audience { .. } => "token-audience-mismatch",
            Self::SubjectGone(_) => "token-subject-gone",
        }
    }
}

impl TokenIssuer {
    /// An issuer with the key kept at `key_file` (made there when missing), or a fresh key.
    pub fn new(key_file: Option<&Path>) -> std::io::Result<Self> {
        let stored = key_file
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|s| B64.decode(s.trim()).ok())
            .filter(|k| k.len() >= 32);
        let key = if let Some(k) = stored {
            k
        } else {
            let k: Vec<u8> = (0..2)
                .flat_map(|_| uuid::Uuid::new_v4().into_bytes())
                .collect();
            if let Some(p) = key_file {
                std::fs::write(p, B64.encode(&k))?;
            }
            k
        };
        Ok(Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &key),
        })
    }

    /// A token for `subject`, for `audiences` (the API server's when empty), expiring at
    /// `exp` (seconds since the epoch) if given.
    pub fn mint(&self, subject: Subject, audiences: Vec<String>, exp: Option<i64>) -> String {
        let aud = if audiences.is_empty() {
            vec![API_AUDIENCE.to_owned()]
        } else {
            audiences
        };
        let claims = Claims {
            jti: uuid::Uuid::new_v4().to_string(),
            aud,
            exp,
            subject,
        };
        let header = B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let body = B64.encode(serde_json::to_vec(&claims).unwrap_or_default());
        let signed = format!("{header}.{body}");
        let tag = hmac::sign(&self.key, signed.as_bytes());
        format!("{signed}.{}", B64.encode(tag.as_ref()))
    }

    /// The claims of a token this issuer signed (signature only; see [`TokenIssuer::authenticate`]).
    pub fn claims(&self, token: &str) -> Result<Claims, TokenError> {
        let (signed, tag) = token.rsplit_once('.').ok_or(TokenError::Invalid)?;
        let tag = B64.decode(tag).map_err(|_| TokenError::Invalid)?;
        hmac::verify(&self.key, signed.as_bytes(), &tag).map_err(|_| TokenError::Invalid)?;
        let body = signed.split_once('.').ok_or(TokenError::Invalid)?.1;
        let body = B64.decode(body).map_err(|_| TokenError::Invalid)?;
        serde_json::from_slice(&body).map_err(|_| TokenError::Invalid)
    }

    /// The user a token authenticates, for one of `audiences` (the API server's when empty),
    /// with the audiences it was accepted for.
    pub fn authenticate(
        &self,
        store: &Store,
        token: &str,
        audiences: &[String],
    ) -> Result<(UserInfo, Vec<String>), TokenError> {
        let claims = self.claims(token)?;
        if claims
            .exp
            .is_some_and(|exp| exp <= jiff::Timestamp::now().as_second())
        {
            return Err(TokenError::Expired);
        }
        let wanted = if audiences.is_empty() {
            vec![API_AUDIENCE.to_owned()]
        } else {
            audiences.to_vec()
        };
        let accepted: Vec<String> = wanted
            .iter()
            .filter(|a| claims.aud.contains(a))
            .cloned()
            .collect();
        if accepted.is_empty() {
            return Err(TokenError::Audience {
                token: claims.aud,
                wanted,
            });
        }
        Ok((user_of(store, &claims)?, accepted))
    }
}

/// The user of verified claims; a ServiceAccount (and a bound pod) must still exist.
fn user_of(store: &Store, claims: &Claims) -> Result<UserInfo, TokenError> {
    let (namespace, sa, pod) = match &claims.subject {
        Subject::Admin => return Ok(UserInfo::admin()),
        Subject::User { name, groups } => {
            let mut groups = groups.clone();
            if !groups.iter().any(|g| g == AUTHENTICATED_GROUP) {
                groups.push(AUTHENTICATED_GROUP.to_owned());
            }
            return Ok(UserInfo {
                username: name.clone(),
                groups,
                ..UserInfo::default()
            });
        }
        Subject::ServiceAccount { namespace, name } => (namespace, name, None),
        Subject::Pod(p) => (&p.namespace, &p.service_account, Some(p)),
    };
    let account = store
        .get("", "serviceaccounts", namespace, sa)
        .ok_or_else(|| {
            TokenError::SubjectGone(format!(
                "serviceaccounts \"{sa}\" not found in namespace \"{namespace}\""
            ))
        })?;
    let mut user = service_account_user(namespace, sa);
    object::uid(&account).clone_into(&mut user.uid);
    user.extra.insert(
        CREDENTIAL_ID_EXTRA.to_owned(),
        vec![format!("JTI={}", claims.jti)],
    );
    if let Some(p) = pod {
        let stored = store.get("", "pods", namespace, &p.pod_name);
        if stored
            .as_ref()
            .is_none_or(|o| !p.pod_uid.is_empty() && object::uid(o) != p.pod_uid)
        {
            return Err(TokenError::SubjectGone(format!(
                "pods \"{}\" not found in namespace \"{namespace}\" (or its uid changed)",
                p.pod_name
            )));
        }
        let extras = [
            (POD_NAME_EXTRA, &p.pod_name),
            (POD_UID_EXTRA, &p.pod_uid),
            (super::NODE_NAME_EXTRA, &p.node_name),
            (NODE_UID_EXTRA, &p.node_uid),
        ];
        for (k, v) in extras.into_iter().filter(|(_, v)| !v.is_empty()) {
            user.extra.insert(k.to_owned(), vec![v.clone()]);
        }
    }
    Ok(user)
}

/// A ServiceAccount's user: `system:serviceaccount:<ns>:<name>` and its three groups.
pub fn service_account_user(namespace: &str, name: &str) -> UserInfo {
    UserInfo {
        username: format!("system:serviceaccount:{namespace}:{name}"),
        groups: vec![
            "system:serviceaccounts".to_owned(),
            format!("system:serviceaccounts:{namespace}"),
            AUTHENTICATED_GROUP.to_owned(),
        ],
        ..UserInfo::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_reads_back_and_a_changed_one_does_not() {
        let issuer = TokenIssuer::new(None).unwrap();
        let t = issuer.mint(Subject::Admin, vec![], None);
        assert_eq!(issuer.claims(&t).unwrap().subject, Subject::Admin);
        assert_eq!(issuer.claims(&t).unwrap().aud, vec![API_AUDIENCE]);
        let mut forged = t.clone();
        forged.insert(10, 'x');
        assert_eq!(issuer.claims(&forged), Err(TokenError::Invalid));
        let other = TokenIssuer::new(None).unwrap();
        assert_eq!(other.claims(&t), Err(TokenError::Invalid));
    }

    #[test]
    fn a_kept_key_reads_tokens_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        let t = TokenIssuer::new(Some(&file))
            .unwrap()
            .mint(Subject::Admin, vec![], None);
        let again = TokenIssuer::new(Some(&file)).unwrap();
        assert!(again.claims(&t).is_ok());
    }
}
