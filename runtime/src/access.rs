//! Who may scrape `/metrics`: the bearer token is authenticated with a `TokenReview` and its
//! user authorized with a `SubjectAccessReview` for `get` on the non-resource URL `/metrics`,
//! as Kubernetes' own components and kube-rbac-proxy do. Answers are cached for a short time
//! ([`MetricsAccess::ALLOWED_TTL`], [`MetricsAccess::REFUSED_TTL`]) in a bounded table keyed by
//! the token's SHA-256 (the token itself is never kept), so that a scrape every few seconds
//! costs the API server two requests a minute; an API error is never cached.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

use crate::admin::{Gate, Verdict};

/// The path and verb a scraper must be allowed.
const PATH: &str = "/metrics";
const VERB: &str = "get";

type Key = [u8; 32];

/// Authenticates and authorizes scrapes through the API server (see the module page).
#[derive(Clone)]
pub struct MetricsAccess {
    client: kube::Client,
    cache: Arc<Mutex<HashMap<Key, (Instant, Verdict)>>>,
}

impl std::fmt::Debug for MetricsAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsAccess").finish_non_exhaustive()
    }
}

impl MetricsAccess {
    /// How long an allowed token stays allowed without asking again.
    pub const ALLOWED_TTL: Duration = Duration::from_mins(1);
    /// How long a refused (401 or 403) token stays refused without asking again.
    pub const REFUSED_TTL: Duration = Duration::from_secs(10);
    /// Most tokens remembered at once.
    pub const CAPACITY: usize = 1024;

    /// Reviews with `client` (its identity needs `create` on `tokenreviews` and
    /// `subjectaccessreviews`).
    pub fn new(client: kube::Client) -> Self {
        Self {
            client,
            cache: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The gate for [`crate::Admin::metrics_access`].
    pub fn gate(self) -> Gate {
        Arc::new(move |token| {
            let access = self.clone();
            Box::pin(async move { access.verdict(token).await })
        })
    }

    /// The verdict on a scrape carrying `token` (none: 401).
    pub async fn verdict(&self, token: Option<String>) -> Verdict {
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return Verdict::Unauthenticated;
        };
        let key = key(&token);
        let now = Instant::now();
        if let Some(known) = self.cached(&key, now) {
            return known;
        }
        let verdict = self.review(token).await;
        if !matches!(verdict, Verdict::Unavailable(_)) {
            self.remember(key, now, verdict.clone());
        }
        verdict
    }

    fn cached(&self, key: &Key, now: Instant) -> Option<Verdict> {
        let cache = self.cache.lock().ok()?;
        let (at, verdict) = cache.get(key)?;
        let ttl = if *verdict == Verdict::Allowed {
            Self::ALLOWED_TTL
        } else {
            Self::REFUSED_TTL
        };
        (now.duration_since(*at) < ttl).then(|| verdict.clone())
    }

    fn remember(&self, key: Key, now: Instant, verdict: Verdict) {
        let Ok(mut cache) = self.cache.lock() else {
            return;
        };
        if cache.len() >= Self::CAPACITY {
            cache.retain(|_, (at, _)| now.duration_since(*at) < Self::ALLOWED_TTL);
        }
        if cache.len() >= Self::CAPACITY
            && let Some(oldest) = cache.iter().min_by_key(|(_, (at, _))| *at).map(|(k, _)| *k)
        {
            cache.remove(&oldest);
        }
        cache.insert(key, (now, verdict));
    }

    /// Asks the API server: `TokenReview`, then `SubjectAccessReview`.
    async fn review(&self, token: String) -> Verdict {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token,
                audiences: None,
            },
            ..TokenReview::default()
        };
        let reviewed = match Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
        {
            Ok(r) => r,
            Err(e) => return unavailable("failed to review the token", &e),
        };
        let status = reviewed.status.unwrap_or_default();
        let Some(user) = status.user.filter(|_| status.authenticated == Some(true)) else {
            return Verdict::Unauthenticated;
        };
        let name = user.username.clone().unwrap_or_default();
        let access = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: user.username,
                groups: user.groups,
                uid: user.uid,
                extra: user.extra,
                non_resource_attributes: Some(NonResourceAttributes {
                    path: Some(PATH.to_owned()),
                    verb: Some(VERB.to_owned()),
                }),
                resource_attributes: None,
            },
            ..SubjectAccessReview::default()
        };
        match Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &access)
            .await
        {
            Ok(r) if r.status.as_ref().is_some_and(|s| s.allowed) => Verdict::Allowed,
            Ok(_) => Verdict::Forbidden(format!(
                "forbidden: User \"{name}\" cannot {VERB} path \"{PATH}\""
            )),
            Err(e) => unavailable("failed to review the access", &e),
        }
    }
}

fn unavailable(what: &str, error: &kube::Error) -> Verdict {
    tracing::warn!(%error, "{what} of a metrics scrape");
    Verdict::Unavailable(what.to_owned())
}

fn key(token: &str) -> Key {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut key = [0; 32];
    key.copy_from_slice(digest.as_ref());
    key
}
