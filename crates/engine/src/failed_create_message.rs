//! What a controller's `FailedCreate` Event says, when a sidecar or its injector is the reason
//! the controller cannot create a Pod: a webhook of a known injector could not be called or
//! denied the Pod, an admission plugin (PodSecurity) rejected a container the catalog knows,
//! or the Pod is invalid because of such a container. Anything else is not ours: `None`.
//!
//! The formats, read in Kubernetes v1.33.13, v1.34.12 and v1.37.2 (the same in all three
//! unless noted):
//!
//! | who | message | where |
//! | --- | --- | --- |
//! | ReplicaSet, ReplicationController, DaemonSet, Job (`RealPodControl.createPods`) | `Error creating: <error>` | pkg/controller/controller_utils.go |
//! | StatefulSet (`recordPodEvent("create", …)`) | `create Pod <pod> in StatefulSet <set> failed error: <error>` (v1.33, v1.34: `strings.ToLower(verb)`); `Create Pod …` (v1.35 on: `cases.Title`) | pkg/controller/statefulset/stateful_pod_control.go |
//! | CronJob | `Error creating job: <error>` | pkg/controller/cronjob/cronjob_controllerv2.go |
//! | the Event aggregator | `(combined from similar events): <message>` | client-go tools/record/events_cache.go |
//!
//! and the API server's errors, `<error>` above:
//!
//! | cause | error | where |
//! | --- | --- | --- |
//! | a webhook failing closed could not be called | `Internal error occurred: failed calling webhook "<name>": failed to call webhook: Post "<url>": <net error>` | apiserver pkg/admission/plugin/webhook/mutating/dispatcher.go (`NewInternalError`), pkg/util/webhook/error.go (`ErrCallingWebhook`) |
//! | …or answered nonsense | `…failed calling webhook "<name>": received invalid webhook response: …` (or `received undecodable patch…`) | the same |
//! | a webhook denied the Pod | `admission webhook "<name>" denied the request: <its message>` (or `… denied the request without explanation`) | apiserver pkg/admission/plugin/webhook/errors/statuserror.go |
//! | PodSecurity | `pods "<pod>" is forbidden: violates PodSecurity "<level>:<version>": <reason> (<detail>), <reason> (<detail>)…`; a detail names `container "a"` or `containers "a", "b"` | pod-security-admission admission/admission.go, policy/checks.go (`ForbiddenDetail`), policy/check_*.go |
//! | an invalid Pod | `Pod "<pod>" is invalid: <field error>` or `…: [<field error>, …]`; a native sidecar without `restartPolicy: Always`: `spec.initContainers[<i>].<lifecycle\|livenessProbe\|readinessProbe\|startupProbe>: Forbidden: may not be set for init containers without restartPolicy=Always` | apimachinery pkg/api/errors/errors.go (`NewInvalid`); kubernetes pkg/apis/core/validation/validation.go (`validateInitContainers`) |
//!
//! An invalid Pod's field errors name an init container by its index in the Pod the webhooks
//! produced, not in the controller's template (an injector inserts its own), so the index is
//! mapped to no name: the container is named only where the message quotes it.
//!
//! Messages are anyone's to write (any user who may create Events can forge one) and may be
//! huge: only the first [`FAILED_CREATE_READ_LIMIT`] bytes are read, every step is one pass,
//! and what is copied into the result is cut to a line.

use sidecar_watch_api::byte_prefix;

use super::catalog::{CatalogId, CATALOG};
use super::injection::{Injector, GENERIC_ADMISSION_FIX, INJECTORS};

#[cfg(test)]
mod tests;

/// How much of a `FailedCreate` message is read: the formats above put everything they name
/// in the first few hundred bytes, and a longer message is cut (on a character boundary).
pub const FAILED_CREATE_READ_LIMIT: usize = 4096;

/// The longest webhook or object name Kubernetes accepts (a DNS subdomain); a longer quoted
/// "name" is not one.
const MAX_NAME: usize = 253;

/// How much of a webhook's own words or a field error goes into a summary.
const MAX_QUOTED: usize = 300;

/// What a controller's `FailedCreate` Event says, when a sidecar or its injector is the cause.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InjectionFailure {
    /// The sidecar: the injector's, or the container's catalog entry; `None` for an invalid
    /// native sidecar the message names only by its index.
    pub catalog: Option<CatalogId>,
    /// What went wrong.
    pub cause: InjectionCause,
    /// The container named in the failure, or for a webhook the injector's sidecar (the
    /// catalog entry's first name: `istio-proxy`); empty when the message names none.
    pub container: String,
    /// The webhook, for [`InjectionCause::WebhookUnreachable`] and
    /// [`InjectionCause::WebhookDenied`].
    pub webhook: Option<String>,
    /// One line: the webhook or container and the cause.
    pub summary: String,
    /// The advice.
    pub fix: String,
}

/// Why the controller could not create the Pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InjectionCause {
    /// The injector's webhook fails closed and could not be called (refused, timed out, TLS,
    /// no endpoints) or answered with something the API server could not use.
    WebhookUnreachable,
    /// The injector's webhook denied the Pod.
    WebhookDenied,
    /// An admission plugin (PodSecurity) rejected a sidecar's or its injector's container.
    AdmissionRejected,
    /// The Pod is invalid because of a sidecar's container.
    InvalidPod,
}

/// What the `FailedCreate` Event of an object of kind `involved_kind` (its `involvedObject` or
/// `regarding`: ReplicaSet, ReplicationController, Job, StatefulSet, DaemonSet, CronJob) with
/// `message` says, when the cause is a sidecar's; `None` for any other cause, kind or format.
pub fn classify_failed_create(involved_kind: &str, message: &str) -> Option<InjectionFailure> {
    let message = byte_prefix(message, FAILED_CREATE_READ_LIMIT);
    let message = message.strip_prefix("(combined from similar events): ").unwrap_or(message);
    classify_error(controller_error(involved_kind, message)?)
}

/// The API server's error inside a controller's message.
fn controller_error<'a>(kind: &str, message: &'a str) -> Option<&'a str> {
    match kind {
        "ReplicaSet" | "ReplicationController" | "DaemonSet" | "Job" => message.strip_prefix("Error creating: "),
        "CronJob" => message.strip_prefix("Error creating job: "),
        "StatefulSet" => {
            let rest = message.strip_prefix("create Pod ").or_else(|| message.strip_prefix("Create Pod "))?;
            // Pod and StatefulSet names are DNS labels: no spaces.
            let (_pod, rest) = rest.split_once(' ')?;
            let (_set, rest) = rest.strip_prefix("in StatefulSet ")?.split_once(' ')?;
            rest.strip_prefix("failed error: ")
        }
        _ => None,
    }
}

/// The API server's error, classified.
fn classify_error(error: &str) -> Option<InjectionFailure> {
    let body = error.strip_prefix("Internal error occurred: ").unwrap_or(error);
    if let Some(rest) = body.strip_prefix("failed calling webhook ") {
        let (name, rest) = quoted(rest)?;
        return webhook_failure(name, InjectionCause::WebhookUnreachable, call_failure(rest));
    }
    if let Some(rest) = body.strip_prefix("admission webhook ") {
        let (name, rest) = quoted(rest)?;
        let rest = rest.strip_prefix(" denied the request")?;
        let said = rest.strip_prefix(": ").map_or_else(|| "without explanation".to_string(), one_line);
        return webhook_failure(name, InjectionCause::WebhookDenied, format!("denied the Pod: {said}"));
    }
    if let Some(rest) = body.strip_prefix("pods ") {
        let (_pod, rest) = quoted(rest)?;
        let (level, details) = quoted(rest.strip_prefix(" is forbidden: violates PodSecurity ")?)?;
        return pod_security(level, details.strip_prefix(": ")?);
    }
    if let Some(rest) = body.strip_prefix("Pod ") {
        let (_pod, rest) = quoted(rest)?;
        return invalid_pod(rest.strip_prefix(" is invalid: ")?);
    }
    None
}

/// A failure of webhook `name`: ours when it is a known injector's.
fn webhook_failure(name: &str, cause: InjectionCause, what: String) -> Option<InjectionFailure> {
    let injector = INJECTORS.iter().find(|i| i.webhooks.iter().any(|w| webhook_matches(w, name)))?;
    let catalog = CatalogId::by_id(injector.catalog_id)?;
    let entry = catalog.entry();
    let fix = match cause {
        InjectionCause::WebhookUnreachable => injector.unreachable_fix.to_string(),
        _ => format!(
            "do what the webhook's reason asks of the Pod template (an annotation, a service account) or of {}'s configuration; an unexpected reason is in the injector's logs",
            entry.product
        ),
    };
    Some(InjectionFailure {
        catalog: Some(catalog),
        cause,
        container: entry.names.first().copied().unwrap_or_default().to_string(),
        webhook: Some(name.to_string()),
        summary: format!("{}'s injector webhook \"{name}\" {what}", entry.product),
        fix,
    })
}

/// Whether a webhook name matches a pattern of [`Injector::webhooks`].
fn webhook_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix('*') {
        Some(suffix) => name.len() > suffix.len() && name.ends_with(suffix),
        None => name == pattern,
    }
}

/// Why the call failed, in a few words, from Go's network and TLS errors after
/// `failed calling webhook "<name>"`.
fn call_failure(rest: &str) -> String {
    // `: failed to call webhook: Post "<url>": <net error>`: the URL is the service's or
    // anyone's (`?timeout=10s`), so only what follows it is read.
    let net = rest.find("\": ").map_or(rest, |at| &rest[at + 3..]);
    let why = if rest.starts_with(": received ") || rest.starts_with(": unsupported patch type") {
        "answered with a response the API server could not use"
    } else if net.contains("connection refused") {
        "refused the connection"
    } else if net.contains("no endpoints available") || net.contains("not found") {
        "has no endpoints"
    } else if net.contains("no such host") {
        "has no DNS name"
    } else if net.contains("x509: ") || net.contains("tls: ") {
        "failed the TLS handshake"
    } else if net.contains("timeout") || net.contains("deadline exceeded") {
        "timed out"
    } else {
        "failed"
    };
    format!("could not be called ({why}), and it fails closed")
}

/// A PodSecurity rejection: ours when a reason's detail names a catalog container.
fn pod_security(level: &str, details: &str) -> Option<InjectionFailure> {
    let (catalog, injector, container, item) = split_top_level(details).find_map(|item| {
        named_containers(item).find_map(|name| {
            let (catalog, injector) = container_owner(name)?;
            Some((catalog, injector, name, item))
        })
    })?;
    Some(InjectionFailure {
        catalog: Some(catalog),
        cause: InjectionCause::AdmissionRejected,
        container: container.to_string(),
        webhook: None,
        summary: format!(
            "PodSecurity \"{}\" rejects {}'s container {container}: {}",
            one_line(level),
            catalog.entry().product,
            one_line(item)
        ),
        fix: injector.map_or(GENERIC_ADMISSION_FIX, |i| i.admission_fix).to_string(),
    })
}

/// An invalid Pod: ours when the errors quote a catalog container's name, or when an init
/// container has what only a native sidecar may have.
fn invalid_pod(errors: &str) -> Option<InjectionFailure> {
    let named = quoted_strings(errors).find_map(|name| Some((container_owner(name)?.0, name)));
    if let Some((catalog, name)) = named {
        let duplicate = errors.contains(&format!("Duplicate value: \"{name}\""));
        let fix = if duplicate {
            format!("{name} is added twice (by two injectors, or by an injector to a template that already declares it): remove it from the template or turn one injector off")
        } else {
            NATIVE_SIDECAR_FIX.to_string()
        };
        return Some(InjectionFailure {
            catalog: Some(catalog),
            cause: InjectionCause::InvalidPod,
            container: name.to_string(),
            webhook: None,
            summary: format!(
                "the Pod is invalid because of {}'s container {name}: {}",
                catalog.entry().product,
                one_line(errors)
            ),
            fix,
        });
    }
    let (index, field) = lost_restart_policy(errors)?;
    Some(InjectionFailure {
        catalog: None,
        cause: InjectionCause::InvalidPod,
        container: String::new(),
        webhook: None,
        summary: format!(
            "the Pod is invalid: init container {index} has a {field}, which only a native sidecar (restartPolicy: Always) may have: {}",
            one_line(errors)
        ),
        fix: NATIVE_SIDECAR_FIX.to_string(),
    })
}

/// The advice for a native sidecar that reached the API server without `restartPolicy: Always`.
const NATIVE_SIDECAR_FIX: &str = "a native sidecar reached the API server without restartPolicy: Always: a mutating webhook called after its injector (kubectl get mutatingwebhookconfigurations) rewrote the init containers with a Kubernetes client library older than 1.28, which drops the field; upgrade that webhook or keep it away from these Pods";

/// The first init container that has a field only a native sidecar may have (or an
/// unsupported `restartPolicy`): its index and the field.
fn lost_restart_policy(errors: &str) -> Option<(usize, &str)> {
    const PATH: &str = "spec.initContainers[";
    const FORBIDDEN: &str = ": Forbidden: may not be set for init containers without restartPolicy=Always";
    let mut rest = errors;
    while let Some(at) = rest.find(PATH) {
        rest = &rest[at + PATH.len()..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let Ok(index) = rest[..digits].parse::<usize>() else { continue };
        let Some(after) = rest[digits..].strip_prefix("].") else { continue };
        let field_len = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (field, tail) = after.split_at(field_len);
        let lost = matches!(field, "lifecycle" | "livenessProbe" | "readinessProbe" | "startupProbe")
            && tail.starts_with(FORBIDDEN);
        if lost || (field == "restartPolicy" && tail.starts_with(": Unsupported value: ")) {
            return Some((index, field));
        }
    }
    None
}

/// The catalog entry a container name is a sidecar or an injector's helper of, and that
/// injector when one is known.
fn container_owner(name: &str) -> Option<(CatalogId, Option<&'static Injector>)> {
    if let Some(injector) = INJECTORS.iter().find(|i| i.helpers.contains(&name)) {
        return Some((CatalogId::by_id(injector.catalog_id)?, Some(injector)));
    }
    let entry = CATALOG.iter().find(|e| {
        e.names.contains(&name)
            || e.redirect.as_ref().is_some_and(|r| r.iptables_init == name || r.cni_validator == name)
    })?;
    Some((CatalogId::by_id(entry.id)?, INJECTORS.iter().find(|i| i.catalog_id == entry.id)))
}

/// A Go `%q` string at the start of `s` (plain: a name has no escapes), and what follows.
fn quoted(s: &str) -> Option<(&str, &str)> {
    let s = s.strip_prefix('"')?;
    let end = s.find('"')?;
    let inner = &s[..end];
    (end <= MAX_NAME && !inner.contains('\\')).then(|| (inner, &s[end + 1..]))
}

/// Every plain quoted string in `s`, in order.
fn quoted_strings(s: &str) -> impl Iterator<Item = &str> {
    let mut rest = s;
    std::iter::from_fn(move || loop {
        let at = rest.find('"')?;
        match quoted(&rest[at..]) {
            Some((inner, after)) => {
                rest = after;
                return Some(inner);
            }
            // An unterminated or escaped quote: skip past it.
            None => rest = &rest[at + 1..],
        }
    })
}

/// The items of PodSecurity's `reason (detail), reason (detail)` list: split at `, ` outside
/// parentheses and quotes.
fn split_top_level(s: &str) -> impl Iterator<Item = &str> {
    let mut rest = s;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (mut depth, mut in_quote) = (0usize, false);
        let bytes = rest.as_bytes();
        for (i, b) in bytes.iter().enumerate() {
            match b {
                b'"' => in_quote = !in_quote,
                b'(' if !in_quote => depth += 1,
                b')' if !in_quote => depth = depth.saturating_sub(1),
                b',' if !in_quote && depth == 0 && bytes.get(i + 1) == Some(&b' ') => {
                    let item = &rest[..i];
                    rest = &rest[i + 2..];
                    return Some(item);
                }
                _ => {}
            }
        }
        Some(std::mem::take(&mut rest))
    })
}

/// The names of `container "a"` and `containers "a", "b"` in a PodSecurity detail.
fn named_containers(item: &str) -> impl Iterator<Item = &str> {
    let mut rest = item;
    let mut in_list = false;
    std::iter::from_fn(move || loop {
        if in_list {
            if let Some((name, after)) = quoted(rest) {
                rest = after.strip_prefix(", ").filter(|a| a.starts_with('"')).unwrap_or_else(|| {
                    in_list = false;
                    after
                });
                return Some(name);
            }
            in_list = false;
        }
        let at = rest.find("container")?;
        rest = &rest[at + "container".len()..];
        let after = rest.strip_prefix("s ").or_else(|| rest.strip_prefix(' '));
        if let Some(after) = after.filter(|a| a.starts_with('"')) {
            rest = after;
            in_list = true;
        }
    })
}

/// `s` on one line and at most [`MAX_QUOTED`] bytes: what a message says goes into a summary,
/// and a message is anyone's to write.
fn one_line(s: &str) -> String {
    let kept = byte_prefix(s, MAX_QUOTED);
    let mut line: String = kept.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if kept.len() < s.len() {
        line.push('…');
    }
    line
}
