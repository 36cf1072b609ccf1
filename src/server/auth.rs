//! Who may read `/metrics`: a bearer token that a `TokenReview` authenticates and a
//! `SubjectAccessReview` authorises for `get` on the non-resource URL `/metrics` — what
//! controller-runtime's `WithAuthenticationAndAuthorization` and kube-rbac-proxy do.
//! Decisions are cached briefly (keyed by a hash of the token, never the token itself), in
//! a bounded cache, so that a scrape every few seconds does not cost two API calls each.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use kube::api::{Api, PostParams};
use lru::LruCache;
use tokio::time::Instant;

/// The outcome for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// 200: the user may read `/metrics`.
    Allowed,
    /// 401: no token, or the API server does not know it.
    Unauthenticated,
    /// 403: a known user without `get` on `/metrics`.
    Forbidden { user: String },
}

/// An authenticated user, as a `TokenReview` returns it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: Option<String>,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

/// Asks the API server; a trait so that the cache and the HTTP handling are tested without one.
pub trait Reviewer: Send + Sync + 'static {
    /// The user a token belongs to, `None` for an unknown token.
    fn authenticate(&self, token: &str) -> impl std::future::Future<Output = Result<Option<User>, kube::Error>> + Send;
    /// Whether `user` may `get` the non-resource URL `path`.
    fn authorize(&self, user: &User, path: &str)
        -> impl std::future::Future<Output = Result<bool, kube::Error>> + Send;
}

/// The API server's `TokenReview` and `SubjectAccessReview`.
#[derive(Clone)]
pub struct KubeReviewer(pub kube::Client);

impl Reviewer for KubeReviewer {
    async fn authenticate(&self, token: &str) -> Result<Option<User>, kube::Error> {
        let review = TokenReview {
            spec: TokenReviewSpec { token: Some(token.to_string()), ..Default::default() },
            ..Default::default()
        };
        let api: Api<TokenReview> = Api::all(self.0.clone());
        let status = api.create(&PostParams::default(), &review).await?.status.unwrap_or_default();
        if status.authenticated != Some(true) {
            return Ok(None);
        }
        let user = status.user.unwrap_or_default();
        Ok(Some(User {
            name: user.username.unwrap_or_default(),
            uid: user.uid,
            groups: user.groups.unwrap_or_default(),
            extra: user.extra.unwrap_or_default(),
        }))
    }

    async fn authorize(&self, user: &User, path: &str) -> Result<bool, kube::Error> {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.name.clone()),
                uid: user.uid.clone(),
                groups: Some(user.groups.clone()),
                extra: Some(user.extra.clone()),
                non_resource_attributes: Some(NonResourceAttributes {
                    path: Some(path.to_string()),
                    verb: Some("get".into()),
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let api: Api<SubjectAccessReview> = Api::all(self.0.clone());
        let status = api.create(&PostParams::default(), &review).await?.status;
        Ok(status.is_some_and(|s| s.allowed))
    }
}

/// How long a decision is reused.
const TTL: Duration = Duration::from_secs(30);
/// Tokens whose decisions are remembered; the least recently used are forgotten first.
const CACHED_TOKENS: usize = 1024;

/// Authenticates and authorises requests, caching decisions.
pub struct Authorizer<R> {
    reviewer: R,
    cache: Mutex<LruCache<[u8; 32], (Decision, Instant)>>,
}

impl<R: Reviewer> Authorizer<R> {
    /// An authorizer asking `reviewer`.
    pub fn new(reviewer: R) -> Self {
        let size = NonZeroUsize::new(CACHED_TOKENS).unwrap_or(NonZeroUsize::MIN);
        Authorizer { reviewer, cache: Mutex::new(LruCache::new(size)) }
    }

    /// The decision for a request with this `Authorization` header value (if any) on
    /// `path`. An API error is returned as such (the caller answers 503) and not cached.
    pub async fn decide(&self, authorization: Option<&str>, path: &str) -> Result<Decision, kube::Error> {
        let Some(token) = authorization
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
        else {
            return Ok(Decision::Unauthenticated);
        };
        let mut key = [0_u8; 32];
        key.copy_from_slice(
            ring::digest::digest(&ring::digest::SHA256, format!("{path}\n{token}").as_bytes()).as_ref(),
        );
        if let Some((decision, at)) = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            if at.elapsed() < TTL {
                return Ok(decision.clone());
            }
        }
        let decision = match self.reviewer.authenticate(token).await? {
            None => Decision::Unauthenticated,
            Some(user) if self.reviewer.authorize(&user, path).await? => Decision::Allowed,
            Some(user) => Decision::Forbidden { user: user.name },
        };
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).put(key, (decision.clone(), Instant::now()));
        Ok(decision)
    }

    /// Decisions remembered.
    pub fn cached(&self) -> usize {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// Tokens "reader" (may read), "other" (may not), anything else unknown.
    #[derive(Default)]
    struct Table {
        calls: AtomicU32,
    }

    impl Reviewer for Table {
        async fn authenticate(&self, token: &str) -> Result<Option<User>, kube::Error> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            Ok(matches!(token, "reader" | "other").then(|| User { name: token.into(), ..Default::default() }))
        }
        async fn authorize(&self, user: &User, path: &str) -> Result<bool, kube::Error> {
            Ok(user.name == "reader" && path == "/metrics")
        }
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_are_reviewed_then_cached_for_a_while() {
        let auth = Authorizer::new(Table::default());
        assert_eq!(auth.decide(None, "/metrics").await.unwrap(), Decision::Unauthenticated);
        assert_eq!(auth.decide(Some("Basic abc"), "/metrics").await.unwrap(), Decision::Unauthenticated);
        assert_eq!(auth.decide(Some("Bearer nobody"), "/metrics").await.unwrap(), Decision::Unauthenticated);
        assert_eq!(
            auth.decide(Some("Bearer other"), "/metrics").await.unwrap(),
            Decision::Forbidden { user: "other".into() }
        );
        assert_eq!(auth.decide(Some("Bearer reader"), "/metrics").await.unwrap(), Decision::Allowed);
        let calls = auth.reviewer.calls.load(Ordering::Relaxed);
        assert_eq!(auth.decide(Some("Bearer reader"), "/metrics").await.unwrap(), Decision::Allowed);
        assert_eq!(auth.reviewer.calls.load(Ordering::Relaxed), calls, "served from the cache");
        tokio::time::advance(TTL).await;
        assert_eq!(auth.decide(Some("Bearer reader"), "/metrics").await.unwrap(), Decision::Allowed);
        assert_eq!(auth.reviewer.calls.load(Ordering::Relaxed), calls + 1, "reviewed again after the TTL");
    }

    #[tokio::test]
    async fn the_cache_is_bounded() {
        let auth = Authorizer::new(Table::default());
        for i in 0..(CACHED_TOKENS + 500) {
            auth.decide(Some(&format!("Bearer t{i}")), "/metrics").await.unwrap();
        }
        assert_eq!(auth.cached(), CACHED_TOKENS);
    }
}
