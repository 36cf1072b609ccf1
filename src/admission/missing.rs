//! `SidecarMissing` at admission: a Pod that an injector's markers select (on the Pod, or on
//! its namespace through `namespaceObject`) or that the bound `ClusterSidecarPolicy` requires a
//! sidecar of, created without that sidecar. Validation runs after every mutating webhook, so
//! this catches exactly the injection that failed open, without making the injector's own
//! webhook fail closed.
//!
//! The CEL is generated from the engine's injector table ([`INJECTORS`]) and words each finding
//! as the engine does ([`missing_texts`](crate::engine::missing_texts)). Only Pods are checked, only when they are created:
//! templates are written before injection, and a Pod's containers never change.

use k8s_openapi::api::admissionregistration::v1::Variable;

use super::cel::{self, variable, Message};
use crate::engine::missing_texts::{INJECTION_FAILED, REQUIRED, RESTARTABLE_KINDS};
use crate::engine::CATALOG;
use crate::engine::{Inject, Injector, Marker, OptOut, Place, INJECTORS};

/// A marker's decision that opts out, as the decision lists carry it.
const OPTED_OUT: &str = "-";
/// A namespace's opt-out that no Pod marker overrules.
const FINALLY_OPTED_OUT: &str = "!";

/// How a message quotes value `v`, as [`crate::api::quote`] does for printable ASCII (every
/// label value, and the annotation values injectors take): escaped, at most 64 characters and
/// then its length. Any other value is described by its length, since CEL cannot escape it as
/// Rust's `Debug` does.
fn quoted(v: &str) -> String {
    let escaped = |s: &str| format!("{s}.replace('\\\\', '\\\\\\\\').replace('\"', '\\\\\"')");
    format!(
        "(!{v}.matches('^[ -~]*$') ? 'a value of ' + string(size(bytes({v}))) + ' bytes' : \
         size({v}) <= 64 ? '\"' + {whole} + '\"' : '\"' + {cut} + '\"… (' + string(size({v})) + ' bytes)')",
        whole = escaped(v),
        cut = escaped(&format!("{v}.substring(0, 64)")),
    )
}

/// A list of what `marker` decides on an object: empty when it decides nothing, else
/// [`OPTED_OUT`], [`FINALLY_OPTED_OUT`] or the words naming it ("the label k=\"v\" on …").
fn decision(marker: &Marker, on_namespace: bool) -> String {
    let (map, place) = match (marker.place, on_namespace) {
        (Place::Label, true) => ("variables.namespaceLabels", "label"),
        (Place::Annotation, true) => ("variables.namespaceAnnotations", "annotation"),
        (Place::Label, false) => ("variables.labels", "label"),
        (Place::Annotation, false) => ("variables.annotations", "annotation"),
    };
    let key = cel::string(marker.key);
    let value = format!("{map}[{key}]");
    let injects = match marker.inject {
        Inject::Never => "false".to_string(),
        Inject::Any => "true".to_string(),
        Inject::Of(values) => format!("{value} in {}", cel::string_list(values)),
    };
    let opts_out = match marker.opt_out {
        OptOut::Of([]) => "false".to_string(),
        OptOut::Of(values) => format!("{value} in {}", cel::string_list(values)),
        OptOut::Otherwise => format!("!({injects})"),
    };
    let out = if marker.final_opt_out { FINALLY_OPTED_OUT } else { OPTED_OUT };
    let object = if on_namespace { "' on namespace ' + request.namespace" } else { "' on the Pod'" };
    let words = format!("'the {place} ' + {key} + '=' + {} + {object}", quoted(&value));
    format!("(!({key} in {map}) ? [] : ({opts_out}) ? [{}] : ({injects}) ? [{words}] : [])", cel::string(out))
}

/// The first decision of `markers` (`[]` for none).
fn first_decision(markers: &[Marker], on_namespace: bool) -> String {
    if markers.is_empty() {
        return "[]".to_string();
    }
    let all: Vec<String> = markers.iter().map(|m| decision(m, on_namespace)).collect();
    format!("({})", all.join(" + "))
}

/// The words naming the marker by which `injector` selects the Pod, `''` when it does not:
/// as [`Injector::selects`] decides it.
fn selects(injector: &Injector) -> String {
    let mut skips = vec![format!("request.namespace in {}", cel::string_list(injector.skipped_namespaces))];
    if injector.skips_host_network {
        skips.push("object.spec.?hostNetwork.orValue(false)".to_string());
    }
    if injector.skips_bare_pods {
        skips.push("size(variables.owners) == 0".to_string());
    }
    let pod_markers_count = if injector.pod_needs_namespace_key {
        let keys: Vec<String> = injector
            .namespace
            .iter()
            .map(|m| {
                let map = if m.place == Place::Label { "namespaceLabels" } else { "namespaceAnnotations" };
                format!("{} in variables.{map}", cel::string(m.key))
            })
            .collect();
        format!("({})", keys.join(" || "))
    } else {
        "true".to_string()
    };
    format!(
        "({skips}) ? '' : [{ns}].map(ns, [{pod_markers_count} ? {pod} : []].map(p, \
         size(ns) > 0 && ns[0] == '{FINALLY_OPTED_OUT}' ? '' : \
         size(p) > 0 ? (p[0] in ['{OPTED_OUT}', '{FINALLY_OPTED_OUT}'] ? '' : p[0]) : \
         size(ns) > 0 && ns[0] != '{OPTED_OUT}' ? ns[0] : '')[0])[0]",
        skips = skips.join(" || "),
        ns = first_decision(injector.namespace, true),
        pod = first_decision(injector.pod, false),
    )
}

/// "restart the workload: …", "create the Pod again: …" or "delete the Pod so that …": how to
/// get the sidecar in, as the engine says it for the Pod's workload.
fn replace_pod() -> String {
    let lower: Vec<String> =
        RESTARTABLE_KINDS.iter().map(|k| format!("{}: {}", cel::string(k), cel::string(&k.to_lowercase()))).collect();
    format!(
        "(variables.workload.kind in {kinds} ? 'restart the workload: kubectl rollout restart ' + {{{lower}}}[variables.workload.kind] + '/' + variables.workload.name + ' -n ' + request.namespace : \
         variables.workload.kind == 'Pod' ? 'create the Pod again: kubectl replace --force -f <its manifest> (Pod ' + request.namespace + '/' + variables.workload.name + ')' : \
         'delete the Pod so that its ' + variables.workload.kind + ' ' + variables.workload.name + ' creates it again: kubectl delete pod ' + object.metadata.name + ' -n ' + request.namespace)",
        kinds = cel::string_list(RESTARTABLE_KINDS),
        lower = lower.join(", "),
    )
}

/// `"Pod <key> runs no <container> (<product>), which <marker> asks for: …"`, for selection `s`
/// of `variables.selections`.
fn injected_message() -> Message {
    Message::default()
        .text("Pod ")
        .cel("variables.podKey")
        .text(" runs no ")
        .cel("variables.catalogEntries[s.id][0]")
        .text(" (")
        .cel("variables.catalogEntries[s.id][1]")
        .text("), which ")
        .cel("s.by")
        .text(" asks for: ")
        .text(INJECTION_FAILED)
        .text("; once the injector is healthy, ")
        .cel(&replace_pod())
}

/// The message for `spec.sidecars.required` entry `r` that the Pod does not run.
fn required_message() -> Message {
    Message::default()
        .text("Pod ")
        .cel("variables.podKey")
        .text(" runs no ")
        .cel("(r in variables.catalogEntries ? variables.catalogEntries[r][0] + ' (' + variables.catalogEntries[r][1] + ')' : r)")
        .text(", which ClusterSidecarPolicy ")
        .cel("params.metadata.name")
        .text(" ")
        .text(REQUIRED)
        .cel(&replace_pod())
}

/// The variables of the check, after the policy's own (`policy`, `labels`, `namespaceLabels`,
/// `inits`, `containers`, `podKey`, `catalogNames`, `catalogImages`).
pub(crate) fn variables() -> Vec<Variable> {
    let entries: Vec<String> = CATALOG
        .iter()
        .map(|e| format!("{}: {}", cel::string(e.id), cel::string_list([e.names[0], e.product])))
        .collect();
    let selections: Vec<String> = INJECTORS
        .iter()
        .map(|i| format!("// {}\n{{'id': {}, 'by': {}}}", i.catalog_id, cel::string(i.catalog_id), selects(i)))
        .collect();
    vec![
        variable(
            "sidecarMissing",
            "spec.rules.sidecarMissing.enabled (default true); only Pods, when they are created",
            "request.kind.kind == 'Pod' && variables.policy.?rules.?sidecarMissing.?enabled.orValue(true)",
        ),
        variable("annotations", "the Pod's annotations", "object.metadata.?annotations.orValue({})"),
        variable(
            "namespaceAnnotations",
            "the namespace's annotations",
            "namespaceObject == null ? {} : namespaceObject.metadata.?annotations.orValue({})",
        ),
        variable("owners", "the Pod's owner references", "object.metadata.?ownerReferences.orValue([])"),
        variable(
            "workload",
            "the Pod's workload: its controller owner (else its first), a ReplicaSet <deployment>-<pod-template-hash> standing for its Deployment",
            "size(variables.owners) == 0 ? {'kind': 'Pod', 'name': string(object.metadata.name)} : \
             [(variables.owners.filter(o, o.?controller.orValue(false)) + variables.owners)[0]].map(o, \
             ['pod-template-hash' in variables.labels ? variables.labels['pod-template-hash'] : ''].map(h, \
             o.kind == 'ReplicaSet' && h != '' && o.name.endsWith('-' + h) && size(o.name) > size(h) + 1 ? \
             {'kind': 'Deployment', 'name': string(o.name).substring(0, size(o.name) - size(h) - 1)} : {'kind': string(o.kind), 'name': string(o.name)})[0])[0]",
        ),
        variable(
            "catalogEntries",
            "each catalog id's first container name and product",
            format!("{{{}}}", entries.join(", ")),
        ),
        variable(
            "selections",
            "each injector and the words naming the marker that selects the Pod ('' when none does)",
            format!("[{}].filter(s, s.by != '')", selections.join(",\n")),
        ),
        variable(
            "required",
            "spec.sidecars.required of the bound ClusterSidecarPolicy",
            "variables.policy.?sidecars.?required.orValue([])",
        ),
        variable(
            "runningIds",
            "the catalog ids of the Pod's containers, read only when a sidecar is expected",
            format!("(variables.inits + variables.containers).map(c, {})", cel::catalog_id("c")),
        ),
        variable(
            "missingFindings",
            "SidecarMissing: by an injector's markers first, then by spec.sidecars.required (an entry an injector reported is not reported twice)",
            format!(
                "!variables.sidecarMissing || size(variables.selections) + size(variables.required) == 0 ? [] : \
                 variables.selections.filter(s, !(s.id in variables.runningIds)).map(s, {injected})\n\
                 + variables.required.filter(r, !(variables.inits + variables.containers).exists(c, c.name == r) && \
                 !(r in variables.catalogEntries && r in variables.runningIds) && \
                 !variables.selections.exists(s, s.id == r)).map(r, {required})",
                injected = injected_message().to_cel(),
                required = required_message().to_cel(),
            ),
        ),
    ]
}
