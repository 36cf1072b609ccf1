//! `TokenReview` and `SubjectAccessReview`, answered from tables the test sets: which token
//! belongs to which user, and which user may `get` which non-resource path. Only `create`
//! exists for these resources, as on a real API server; nothing is stored.

use std::collections::{BTreeSet, HashMap};

use serde_json::{json, Value};

use super::error::{ApiError, ApiResult};

/// Whether (`group`, `plural`) is one of the review resources served here.
pub fn is_review(group: &str, plural: &str) -> bool {
    matches!(
        (group, plural),
        ("authentication.k8s.io", "tokenreviews") | ("authorization.k8s.io", "subjectaccessreviews")
    )
}

/// What TokenReview and SubjectAccessReview answer: known tokens and granted paths.
#[derive(Debug, Default)]
pub struct Reviews {
    /// token → (username, groups).
    tokens: HashMap<String, (String, Vec<String>)>,
    /// (username, non-resource path) allowed `get`.
    allowed: BTreeSet<(String, String)>,
    /// TokenReviews and SubjectAccessReviews answered so far.
    answered: (u64, u64),
}

impl Reviews {
    /// `token` authenticates as `user` in `groups`.
    pub fn add_token(&mut self, token: &str, user: &str, groups: &[&str]) {
        self.tokens.insert(token.into(), (user.into(), groups.iter().map(|g| g.to_string()).collect()));
    }

    /// `user` may `get` the non-resource URL `path`.
    pub fn allow(&mut self, user: &str, path: &str) {
        self.allowed.insert((user.into(), path.into()));
    }

    /// The answer to a review `create` (`plural` as [`is_review`] accepted it).
    pub fn answer(&mut self, plural: &str, body: &Value) -> ApiResult<Value> {
        match plural {
            "tokenreviews" => {
                self.answered.0 += 1;
                self.token_review(body)
            }
            _ => {
                self.answered.1 += 1;
                self.access_review(body)
            }
        }
    }

    /// TokenReviews answered so far (valid or not).
    pub fn token_reviews(&self) -> u64 {
        self.answered.0
    }

    /// SubjectAccessReviews answered so far (valid or not).
    pub fn access_reviews(&self) -> u64 {
        self.answered.1
    }

    fn token_review(&self, body: &Value) -> ApiResult<Value> {
        let token = body
            .pointer("/spec/token")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::bad_request("spec.token: Required value"))?;
        let status = match self.tokens.get(token) {
            Some((user, groups)) => json!({"authenticated": true, "user": {"username": user, "groups": groups}}),
            None => json!({"authenticated": false, "error": "invalid bearer token"}),
        };
        let mut review = body.clone();
        review["status"] = status;
        Ok(review)
    }

    fn access_review(&self, body: &Value) -> ApiResult<Value> {
        let user = body.pointer("/spec/user").and_then(Value::as_str).unwrap_or_default();
        let attributes = body
            .pointer("/spec/nonResourceAttributes")
            .ok_or_else(|| ApiError::bad_request("spec.nonResourceAttributes: only non-resource reviews are served"))?;
        let path = attributes.get("path").and_then(Value::as_str).unwrap_or_default();
        let verb = attributes.get("verb").and_then(Value::as_str).unwrap_or_default();
        let allowed = verb == "get" && self.allowed.contains(&(user.to_string(), path.to_string()));
        let mut review = body.clone();
        review["status"] = json!({"allowed": allowed});
        Ok(review)
    }
}
