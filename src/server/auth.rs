//! Who may read `/metrics`: a bearer token that a `TokenReview` authenticates and a
//! `SubjectAccessReview` authorises for `get` on the non-resource URL `/metrics` — what
//! controller-runtime's `WithAuthenticationAndAuthorization` and kube-rbac-proxy do.
//! Decisions are cached briefly (keyed by a hash of the token, never the token itself), in
//! bounded caches, so that a scrape every few seconds does not cost two API calls each, and
//! the reviews sent are kept within a [`ReviewBudget`] per client and for all clients: a
//! flood of made-up tokens costs the API server at most the budget, is answered 429, and
//! never locks out a token already allowed.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use kube::api::{Api, PostParams};
use lru::LruCache;
use prometheus::IntCounterVec;
use tokio::time::Instant;

use super::budget::ReviewBudget;
use crate::metrics::Metrics;

/// The outcome for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// 200: the user may read `/metrics`.
    Allowed,
    /// 401: no token, or the API server does not know it.
    Unauthenticated,
    /// 403: a known user without `get` on `/metrics`.
    Forbidden { user: String },
    /// 429: the token is not known from the caches and the review budget is spent.
    Throttled { retry_after: Duration },
}

/// An authenticated user, as a `TokenReview` returns it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct User {
    name: String,
    uid: Option<String>,
    groups: Vec<String>,
    extra: BTreeMap<String, Vec<String>>,
}

/// Asks the API server; a trait so that the cache and the HTTP handling are tested without one.
pub(crate) trait Reviewer: Send + Sync + 'static {
    /// The user a token belongs to, `None` for an unknown token.
    fn authenticate(&self, token: &str) -> impl std::future::Future<Output = Result<Option<User>, kube::Error>> + Send;
    /// Whether `user` may `get` the non-resource URL `path`.
    fn authorize(&self, user: &User, path: &str)
        -> impl std::future::Future<Output = Result<bool, kube::Error>> + Send;
}

/// The API server's `TokenReview` and `SubjectAccessReview`.
#[derive(Clone)]
pub(crate) struct KubeReviewer(pub(crate) kube::Client);

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

/// How long an allowed token is served without a review.
const ALLOWED_TTL: Duration = Duration::from_secs(30);
/// How long an unknown token or a user without the grant is refused without a review:
/// briefly, so that a new binding takes effect soon.
const REFUSED_TTL: Duration = Duration::from_secs(10);
/// While the review budget is spent, an allowed token whose decision is older than
/// [`ALLOWED_TTL`] is still served for this long (the kubelet's own TokenReview cache keeps
/// a token this long): a flood of unknown tokens cannot lock Prometheus out.
const ALLOWED_WHILE_SPENT: Duration = Duration::from_secs(120);
/// How long one review may wait for the API server: both of a token's fit in Prometheus'
/// default scrape timeout (10 s), so that a hung API server fails a scrape with 503 (or
/// serves a token allowed lately) rather than leaving it to time out.
const REVIEW_WAIT: Duration = Duration::from_secs(4);

/// `review`, failing with an error once it has waited [`REVIEW_WAIT`].
async fn within_review_wait<T>(
    review: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, kube::Error> {
    tokio::time::timeout(REVIEW_WAIT, review)
        .await
        .unwrap_or_else(|elapsed| Err(kube::Error::Service(Box::new(elapsed))))
}

/// Tokens remembered in each cache; the least recently used are forgotten first. Allowed
/// and refused tokens are kept apart, so that unknown tokens never push out an allowed one.
const CACHED_TOKENS: usize = 1024;

/// The cache key: a hash of the path and the token, never the token itself.
type Key = [u8; 32];

/// Authenticates and authorises requests, caching decisions and keeping the reviews it
/// sends within a [`ReviewBudget`].
pub(crate) struct Authorizer<R> {
    reviewer: R,
    /// Allowed tokens, and when they were reviewed.
    allowed: Mutex<LruCache<Key, Instant>>,
    /// Refused tokens (unauthenticated or forbidden), and when.
    refused: Mutex<LruCache<Key, (Decision, Instant)>>,
    budget: ReviewBudget,
    /// `sidecar_watch_reviews_total{kind, result}`.
    reviews: IntCounterVec,
    /// `sidecar_watch_limited_total{limit}`.
    limited: IntCounterVec,
}

impl<R: Reviewer> Authorizer<R> {
    /// An authorizer asking `reviewer` within `budget`, counting in `metrics`.
    pub(crate) fn new(reviewer: R, budget: ReviewBudget, metrics: &Metrics) -> Self {
        let size = NonZeroUsize::new(CACHED_TOKENS).unwrap_or(NonZeroUsize::MIN);
        Authorizer {
            reviewer,
            allowed: Mutex::new(LruCache::new(size)),
            refused: Mutex::new(LruCache::new(size)),
            budget,
            reviews: metrics.reviews.clone(),
            limited: metrics.limited.clone(),
        }
    }

    /// The decision for a request from `client` with this `Authorization` header value (if
    /// any) on `path`. An API error is returned as such (the caller answers 503) and not
    /// cached.
    pub(crate) async fn decide(
        &self,
        authorization: Option<&str>,
        path: &str,
        client: IpAddr,
    ) -> Result<Decision, kube::Error> {
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
        let allowed_at = self.allowed.lock().get(&key).copied();
        if allowed_at.is_some_and(|at| at.elapsed() < ALLOWED_TTL) {
            return Ok(Decision::Allowed);
        }
        if let Some((decision, at)) = self.refused.lock().get(&key) {
            if at.elapsed() < REFUSED_TTL {
                return Ok(decision.clone());
            }
        }
        if let Err(spent) = self.budget.take(client) {
            if allowed_at.is_some_and(|at| at.elapsed() < ALLOWED_WHILE_SPENT) {
                return Ok(Decision::Allowed);
            }
            self.limited.with_label_values(&[spent.limit()]).inc();
            return Ok(Decision::Throttled { retry_after: spent.retry_after() });
        }
        let decision = match self.review(token, path).await {
            Ok(decision) => decision,
            // The API server cannot say (an error, or no answer in time): a token allowed
            // lately is served a while longer, as while the budget is spent.
            Err(_) if allowed_at.is_some_and(|at| at.elapsed() < ALLOWED_WHILE_SPENT) => return Ok(Decision::Allowed),
            Err(e) => return Err(e),
        };
        if decision == Decision::Allowed {
            self.refused.lock().pop(&key);
            self.allowed.lock().put(key, Instant::now());
        } else {
            self.allowed.lock().pop(&key);
            self.refused.lock().put(key, (decision.clone(), Instant::now()));
        }
        Ok(decision)
    }

    /// A `TokenReview`, then for a known user a `SubjectAccessReview`, each counted.
    async fn review(&self, token: &str, path: &str) -> Result<Decision, kube::Error> {
        let count = |kind: &str, result: &str| self.reviews.with_label_values(&[kind, result]).inc();
        let authenticated = within_review_wait(self.reviewer.authenticate(token)).await;
        let result = match &authenticated {
            Ok(Some(_)) => "authenticated",
            Ok(None) => "unauthenticated",
            Err(_) => "error",
        };
        count("TokenReview", result);
        let Some(user) = authenticated? else { return Ok(Decision::Unauthenticated) };
        let allowed = within_review_wait(self.reviewer.authorize(&user, path)).await;
        let result = match allowed {
            Ok(true) => "allowed",
            Ok(false) => "denied",
            Err(_) => "error",
        };
        count("SubjectAccessReview", result);
        Ok(if allowed? { Decision::Allowed } else { Decision::Forbidden { user: user.name } })
    }

    /// Tokens remembered: (allowed, refused).
    #[cfg(test)]
    fn cached(&self) -> (usize, usize) {
        (self.allowed.lock().len(), self.refused.lock().len())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// Tokens "reader" (may read), "other" (may not), anything else unknown; no answer at
    /// all while `hung`.
    #[derive(Default)]
    struct Table {
        calls: AtomicU32,
        hung: std::sync::atomic::AtomicBool,
    }

    impl Reviewer for Table {
        async fn authenticate(&self, token: &str) -> Result<Option<User>, kube::Error> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            if self.hung.load(Ordering::Relaxed) {
                std::future::pending::<()>().await;
            }
            Ok(matches!(token, "reader" | "other").then(|| User { name: token.into(), ..Default::default() }))
        }
        async fn authorize(&self, user: &User, path: &str) -> Result<bool, kube::Error> {
            Ok(user.name == "reader" && path == "/metrics")
        }
    }

    fn authorizer() -> (Authorizer<Table>, Metrics) {
        let metrics = Metrics::new();
        (Authorizer::new(Table::default(), ReviewBudget::default(), &metrics), metrics)
    }

    const PROMETHEUS: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const ATTACKER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 66));

    fn attacker(n: u8) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 1, n))
    }

    async fn decide(auth: &Authorizer<Table>, header: &str, client: IpAddr) -> Decision {
        auth.decide(Some(header), "/metrics", client).await.expect("the table never fails")
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_are_reviewed_then_cached_for_a_while() {
        let (auth, metrics) = authorizer();
        assert_eq!(auth.decide(None, "/metrics", PROMETHEUS).await.unwrap(), Decision::Unauthenticated);
        assert_eq!(decide(&auth, "Basic abc", PROMETHEUS).await, Decision::Unauthenticated);
        assert_eq!(auth.reviewer.calls.load(Ordering::Relaxed), 0, "no token, no review");
        assert_eq!(decide(&auth, "Bearer nobody", PROMETHEUS).await, Decision::Unauthenticated);
        assert_eq!(decide(&auth, "Bearer other", PROMETHEUS).await, Decision::Forbidden { user: "other".into() });
        assert_eq!(decide(&auth, "Bearer reader", PROMETHEUS).await, Decision::Allowed);
        assert_eq!(auth.reviewer.calls.load(Ordering::Relaxed), 3);
        let reviews = |kind: &str, result: &str| metrics.reviews.with_label_values(&[kind, result]).get();
        assert_eq!([reviews("TokenReview", "unauthenticated"), reviews("TokenReview", "authenticated")], [1, 2]);
        assert_eq!([reviews("SubjectAccessReview", "denied"), reviews("SubjectAccessReview", "allowed")], [1, 1]);

        tokio::time::advance(Duration::from_secs(5)).await;
        for header in ["Bearer reader", "Bearer nobody", "Bearer other"] {
            decide(&auth, header, PROMETHEUS).await;
        }
        assert_eq!(auth.reviewer.calls.load(Ordering::Relaxed), 3, "all three served from the caches");
        tokio::time::advance(REFUSED_TTL).await;
        assert_eq!(decide(&auth, "Bearer nobody", PROMETHEUS).await, Decision::Unauthenticated);
        assert_eq!(decide(&auth, "Bearer reader", PROMETHEUS).await, Decision::Allowed);
        assert_eq!(auth.reviewer.calls.load(Ordering::Relaxed), 4, "a refusal is reviewed again after 10 s");
        tokio::time::advance(ALLOWED_TTL - REFUSED_TTL).await;
        assert_eq!(decide(&auth, "Bearer reader", PROMETHEUS).await, Decision::Allowed);
        assert_eq!(auth.reviewer.calls.load(Ordering::Relaxed), 5, "an allowed token after 30 s");
    }

    /// A review the API server never answers fails after [`REVIEW_WAIT`], counted, so the
    /// scrape gets its answer before Prometheus gives up; a token allowed lately is served
    /// meanwhile, for as long as while the budget is spent.
    #[tokio::test(start_paused = true)]
    async fn a_hung_review_fails_in_time_and_a_recent_token_is_still_served() {
        let (auth, metrics) = authorizer();
        assert_eq!(decide(&auth, "Bearer reader", PROMETHEUS).await, Decision::Allowed);
        tokio::time::advance(ALLOWED_TTL).await;
        auth.reviewer.hung.store(true, Ordering::Relaxed);
        let began = Instant::now();
        assert_eq!(decide(&auth, "Bearer reader", PROMETHEUS).await, Decision::Allowed, "allowed 30 s ago");
        assert_eq!(began.elapsed(), REVIEW_WAIT);
        assert!(auth.decide(Some("Bearer other"), "/metrics", PROMETHEUS).await.is_err(), "never allowed: 503");
        assert_eq!(metrics.reviews.with_label_values(&["TokenReview", "error"]).get(), 2);
        tokio::time::advance(ALLOWED_WHILE_SPENT).await;
        assert!(auth.decide(Some("Bearer reader"), "/metrics", PROMETHEUS).await.is_err(), "not for ever");
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_of_made_up_tokens_costs_the_budget_and_nothing_more() {
        let (auth, metrics) = authorizer();
        assert_eq!(decide(&auth, "Bearer reader", PROMETHEUS).await, Decision::Allowed);
        let mut unauthenticated = 0_u32;
        let mut throttled = Vec::new();
        // 2,000 made-up tokens from 20 addresses, 100 every 200 ms for 4 s.
        for i in 0..2000 {
            match decide(&auth, &format!("Bearer random-{i}"), attacker((i % 20) as u8)).await {
                Decision::Unauthenticated => unauthenticated += 1,
                Decision::Throttled { retry_after } => throttled.push(retry_after),
                other => panic!("{other:?}"),
            }
            if i % 100 == 99 {
                tokio::time::advance(Duration::from_millis(200)).await;
            }
        }
        // Every address spends its own burst of 3 at once and gets one more each whole
        // second; the first five of them take the budget for all (a burst of 5) each time:
        // at 0, 1, 2 and 3 s (less the one Prometheus' token took at 0). At most 5 + 5 per
        // second, as the budget says.
        assert_eq!(unauthenticated, 4 * 5 - 1);
        assert!(unauthenticated as f64 <= 5.0 + 5.0 * 3.8);
        assert_eq!(auth.reviewer.calls.load(Ordering::Relaxed), 1 + unauthenticated);
        assert_eq!(throttled.len(), 2000 - unauthenticated as usize);
        assert!(throttled.iter().all(|d| *d <= Duration::from_secs(1)), "Retry-After at most a second");
        let limited = |limit: &str| metrics.limited.with_label_values(&[limit]).get();
        assert_eq!(limited("reviews") + limited("reviews-per-client"), throttled.len() as u64);
        // Prometheus' token is still served from the cache.
        assert_eq!(decide(&auth, "Bearer reader", PROMETHEUS).await, Decision::Allowed);
        // Made-up tokens never pushed it out of the cache.
        assert_eq!(auth.cached().0, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_allowed_token_is_served_a_while_longer_while_the_budget_is_spent() {
        let (auth, _) = authorizer();
        assert_eq!(decide(&auth, "Bearer reader", PROMETHEUS).await, Decision::Allowed);
        tokio::time::advance(ALLOWED_TTL).await;
        // The budget for all clients spent by others.
        for i in 0..10 {
            decide(&auth, &format!("Bearer random-{i}"), attacker(i)).await;
        }
        let calls = auth.reviewer.calls.load(Ordering::Relaxed);
        assert_eq!(decide(&auth, "Bearer reader", PROMETHEUS).await, Decision::Allowed, "served while spent");
        assert_eq!(auth.reviewer.calls.load(Ordering::Relaxed), calls, "without a review");
        tokio::time::advance(ALLOWED_WHILE_SPENT - ALLOWED_TTL).await;
        for i in 0..10 {
            decide(&auth, &format!("Bearer random-more-{i}"), attacker(i)).await;
        }
        assert!(matches!(decide(&auth, "Bearer reader", PROMETHEUS).await, Decision::Throttled { .. }));
        // A client over its own budget, alone.
        tokio::time::advance(Duration::from_secs(10)).await;
        for i in 0..3 {
            decide(&auth, &format!("Bearer mine-{i}"), ATTACKER).await;
        }
        assert_eq!(
            decide(&auth, "Bearer mine-4", ATTACKER).await,
            Decision::Throttled { retry_after: Duration::from_secs(1) }
        );
    }

    #[tokio::test]
    async fn the_caches_are_bounded() {
        let metrics = Metrics::new();
        let unlimited = governor::Quota::per_second(std::num::NonZeroU32::MAX);
        let auth = Authorizer::new(Table::default(), ReviewBudget::new(unlimited, unlimited), &metrics);
        for i in 0..(CACHED_TOKENS + 500) {
            decide(&auth, &format!("Bearer t{i}"), PROMETHEUS).await;
        }
        assert_eq!(auth.cached(), (0, CACHED_TOKENS));
    }
}
