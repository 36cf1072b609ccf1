//! API errors rendered as Kubernetes `Status` objects.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// An error returned by the simulated API server; rendered as a `meta/v1` `Status`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    pub code: u16,
    /// Machine-readable reason (`NotFound`, `Conflict`, ...).
    pub reason: String,
    pub message: String,
    /// Optional `details` object of the Status.
    pub details: Option<Value>,
}

impl ApiError {
    /// Builds an error with the given code, reason and message.
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        Self { code, reason: reason.to_string(), message: message.into(), details: None }
    }

    /// Adds a `details` object (name/group/kind/causes).
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// 404 NotFound for `resource "name"`.
    pub fn not_found(resource: &str, name: &str) -> Self {
        Self::new(404, "NotFound", format!("{resource} \"{name}\" not found"))
            .with_details(json!({"name": name, "kind": resource_kind(resource), "group": resource_group(resource)}))
    }

    /// 404 for a path that is not served.
    pub fn no_route(path: &str) -> Self {
        Self::new(404, "NotFound", format!("the server could not find the requested resource ({path})"))
    }

    /// 409 AlreadyExists.
    pub fn already_exists(resource: &str, name: &str) -> Self {
        Self::new(409, "AlreadyExists", format!("{resource} \"{name}\" already exists"))
            .with_details(json!({"name": name, "kind": resource_kind(resource), "group": resource_group(resource)}))
    }

    /// 409 Conflict for an update with a stale resourceVersion.
    pub fn conflict(resource: &str, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {resource} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
        )
        .with_details(json!({"name": name, "kind": resource_kind(resource), "group": resource_group(resource)}))
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 422 Invalid.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(422, "Invalid", message)
    }

    /// 422 Invalid for query parameters, as kube-apiserver reports them: each
    /// `(field, detail)` a `FieldValueForbidden` cause of a `ListOptions.meta.k8s.io` error.
    pub fn invalid_list_options(forbidden: &[(&str, String)]) -> Self {
        let errors: Vec<String> =
            forbidden.iter().map(|(field, detail)| format!("{field}: Forbidden: {detail}")).collect();
        let joined = match errors.as_slice() {
            [one] => one.clone(),
            many => format!("[{}]", many.join(", ")),
        };
        let causes: Vec<Value> = forbidden
            .iter()
            .map(|(field, detail)| json!({"reason": "FieldValueForbidden", "message": format!("Forbidden: {detail}"), "field": field}))
            .collect();
        Self::invalid(format!("ListOptions.meta.k8s.io \"\" is invalid: {joined}"))
            .with_details(json!({"group": "meta.k8s.io", "kind": "ListOptions", "causes": causes}))
    }

    /// 410 Expired (Gone).
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// 405 MethodNotAllowed.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    /// 415 UnsupportedMediaType, naming the patch types the simulator serves (`strategic`:
    /// strategic merge patches too, for built-in kinds).
    pub fn unsupported_media_type(ct: &str, strategic: bool) -> Self {
        let smp = if strategic { ", application/strategic-merge-patch+json" } else { "" };
        Self::new(415, "UnsupportedMediaType", format!("the body of the request was in an unknown format - accepted media types include: application/merge-patch+json, application/apply-patch+yaml{smp} (got {ct:?})"))
    }

    /// 500 InternalError.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// The error as a `Status` JSON object.
    pub fn to_status(&self) -> Value {
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "code": self.code,
        });
        // An error with no reason (`StatusReasonUnknown`) has none in the Status.
        if !self.reason.is_empty() {
            v["reason"] = json!(self.reason);
        }
        if let Some(d) = &self.details {
            v["details"] = d.clone();
        }
        v
    }
}

fn resource_kind(resource: &str) -> &str {
    resource.split('.').next().unwrap_or(resource)
}

fn resource_group(resource: &str) -> &str {
    resource.split_once('.').map(|(_, g)| g).unwrap_or("")
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self.to_status()).unwrap_or_default();
        (code, [(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
