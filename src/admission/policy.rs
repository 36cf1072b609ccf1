//! The ValidatingAdmissionPolicy: which objects it reads, how it finds their sidecars (the
//! engine's identification, with the parameters of a `ClusterSidecarPolicy` when the binding
//! names one), the findings it reports, and how many of them fit in one response's warnings.

use k8s_openapi::api::admissionregistration::v1::{
    MatchResources, NamedRuleWithOperations, ParamKind, ValidatingAdmissionPolicy, ValidatingAdmissionPolicySpec,
    Validation, Variable,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::cel::{self, variable, Message};
use super::labels;
use crate::api::{ClusterSidecarPolicy, GROUP, VERSION};
use crate::engine::DEFAULT_SIDECAR_PATTERN;
use crate::engine::{check_texts, DEFAULT_MAX_SIDECARS, JOB_NEVER_COMPLETES, SPRAWL_THRESHOLD};

/// The policy's name (its binding has the same name).
pub(crate) const POLICY_NAME: &str = "sidecar-watch";

/// Findings shown one per warning: as many as the API server's warning budget can hold at
/// the shortest message (4,096 characters / (prefix + 65) ≈ 25); more are summed up in one.
pub(crate) const MAX_FINDINGS_SHOWN: usize = 25;

/// The API server writes at most this many characters of warnings per response; past it, it
/// cuts every warning to 256 characters and drops the rest (k8s.io/apiserver
/// `pkg/endpoints/filters/warning.go`). The policy keeps its warnings within it, so every
/// warning arrives whole.
const WARNING_BUDGET: usize = 4096;

/// The text before each message in a warning: `"Validation failed for ValidatingAdmissionPolicy
/// '<policy>' with binding '<binding>': "`, counted for names of up to 63 characters each, so a
/// renamed copy (kustomize `namePrefix`) still fits.
const WARNING_PREFIX: usize = "Validation failed for ValidatingAdmissionPolicy '' with binding '': ".len() + 2 * 63;

/// The summary for findings that do not fit, after `"Pod <namespace>/<name> has <n>"`.
const MORE_FINDINGS: &str =
    " more sidecar findings than one response's warnings can hold (4 KiB); sidecar-watch audit lists them all";

/// Which objects the policy reads: Pods when they are created, workloads when they are created
/// or changed (`kubectl apply`). A Pod's spec is immutable but for its images, and controllers
/// update Pods' metadata and status often; its sidecars were checked when it was created.
fn match_constraints() -> MatchResources {
    let rule = |group: &str, resources: &[&str], operations: &[&str]| NamedRuleWithOperations {
        api_groups: Some(vec![group.to_string()]),
        api_versions: Some(vec!["v1".to_string()]),
        operations: Some(operations.iter().map(|o| o.to_string()).collect()),
        resources: Some(resources.iter().map(|r| r.to_string()).collect()),
        scope: Some("Namespaced".to_string()),
        ..Default::default()
    };
    MatchResources {
        resource_rules: Some(vec![
            rule("", &["pods"], &["CREATE"]),
            rule("apps", &["deployments", "statefulsets", "daemonsets", "replicasets"], &["CREATE", "UPDATE"]),
            rule("batch", &["jobs", "cronjobs"], &["CREATE", "UPDATE"]),
        ]),
        ..Default::default()
    }
}

/// `[0, 1, …, n - 1]`: CEL of Kubernetes 1.30 has no `range` or `slice`, so the first `n`
/// elements of a list are taken through a constant list of indices.
pub(super) fn indices(n: usize) -> String {
    let items: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    format!("[{}]", items.join(", "))
}

/// `"Sidecar <name> in Pod <namespace>/<pod> <text>"`: every per-sidecar check's message.
pub(super) fn sidecar_message(text: &str) -> Message {
    Message::default()
        .text("Sidecar ")
        .cel("s.container.name")
        .text(" in Pod ")
        .cel("variables.podKey")
        .text(" ")
        .text(text)
}

/// The remediation for a Job held open by sidecar `s`: its catalog entry's, or the generic one.
pub(crate) const JOB_REMEDIATION: &str = "variables.jobRemediations[s.catalog]";

/// What `legacy-sidecar` says after `"Sidecar <name> in Pod <key> "`, as the engine words it for
/// the object's workload: a Job's Pod (or a Job or CronJob) never completes, any other Pod's
/// sidecar starts and stops in no guaranteed order.
pub(crate) fn legacy_sidecar_text() -> String {
    format!(
        "(variables.inJob ? {} + {JOB_REMEDIATION} : {} + {NATIVE_REMEDIATION})",
        cel::string(check_texts::LEGACY_SIDECAR_IN_JOB),
        cel::string(check_texts::LEGACY_SIDECAR)
    )
}

/// How to make sidecar `s` native: its catalog entry's advice, or the generic one.
const NATIVE_REMEDIATION: &str = "variables.nativeRemediations[s.catalog]";

/// The message of a legacy sidecar in a Job or CronJob template (`JobBlockedBySidecar`).
pub(crate) fn job_message() -> Message {
    Message::default()
        .cel("variables.podName")
        .text(" runs sidecar ")
        .cel("s.container.name")
        .text(" ")
        .text(JOB_NEVER_COMPLETES)
        .cel(JOB_REMEDIATION)
}

/// The per-sidecar checks the policy reports, in the engine's order: (check label, the list of
/// sidecars it looks at, the CEL condition on sidecar `s`, the message). A sidecar is a record
/// `{'container': <the container>, 'catalog': <its catalog id, '' for none>}`.
pub(crate) fn sidecar_checks() -> Vec<(&'static str, &'static str, String, Message)> {
    vec![
        (
            "no-readiness-probe",
            "variables.sidecarsShown",
            "!has(s.container.readinessProbe)".to_string(),
            sidecar_message(check_texts::NO_READINESS_PROBE),
        ),
        (
            "no-startup-probe",
            "variables.nativesShown",
            "!has(s.container.startupProbe) && !(has(s.container.lifecycle) && has(s.container.lifecycle.postStart))"
                .to_string(),
            sidecar_message(check_texts::NO_STARTUP_PROBE),
        ),
        (
            "legacy-sidecar",
            "variables.legaciesShown",
            "true".to_string(),
            sidecar_message("").cel(&legacy_sidecar_text()),
        ),
        (
            "latest-image",
            "variables.sidecarsShown",
            format!("has(s.container.image) && {}", cel::latest_image("s.container.image")),
            sidecar_message(check_texts::LATEST_IMAGE),
        ),
        (
            "no-resources",
            "variables.sidecarsShown",
            "!(has(s.container.resources) && (size(s.container.resources.?requests.orValue({})) > 0 || \
             size(s.container.resources.?limits.orValue({})) > 0))"
                .to_string(),
            sidecar_message(check_texts::NO_RESOURCES),
        ),
        (
            "init-before-proxy",
            "variables.nativesShown",
            format!("{} in variables.redirects && size(variables.blackholed) > 0", cel::catalog_id("s.container")),
            init_before_proxy_message(),
        ),
    ]
    .into_iter()
    .chain(super::signals::checks())
    .collect()
}

/// The plain init containers a native mesh proxy's traffic redirection reaches are looked for
/// among the first this many init containers: what a hostile Pod may cost the API server stays
/// constant, and an injected Pod has a handful (Istio: 2). A proxy declared after more is not
/// reported at admission; `audit` and the operator, linear in containers, read them all.
const INIT_BEFORE_PROXY_SCAN: usize = 64;

/// `init-before-proxy` on native mesh proxy `s`: `"Init container(s) <names> in Pod <key> run(s)
/// before native sidecar <s>, while the mesh …; <the mesh's remedy>"`.
pub(crate) fn init_before_proxy_message() -> Message {
    let one = "size(variables.blackholed) == 1";
    Message::default()
        .text("Init container")
        .cel(&format!("({one} ? '' : 's')"))
        .text(" ")
        .cel("variables.blackholed.join(', ')")
        .text(" in Pod ")
        .cel("variables.podKey")
        .text(" ")
        .cel(&format!("({one} ? 'runs' : 'run')"))
        .text(check_texts::INIT_BEFORE_PROXY)
        .cel("s.container.name")
        .text(check_texts::PROXY_REDIRECTS)
        .cel(&format!("({one} ? 'it runs' : 'they run')"))
        .text(check_texts::NO_NETWORK)
        .cel(&format!("variables.redirects[{}].remediation", cel::catalog_id("s.container")))
}

/// The variables of `init-before-proxy`, as the engine's `inits_without_network` (crates/engine/src/relations.rs)
/// decides it: the first native mesh proxy among the scanned init containers, and the plain init
/// containers before it that run after the mesh's iptables init (or all of them when the mesh's
/// CNI validator runs: the rules were installed with the sandbox), except the mesh's own and
/// those running as the proxy's user.
fn init_before_proxy_variables() -> Vec<Variable> {
    let user = |c: &str| format!("{c}.?securityContext.?runAsUser.orValue(variables.podRunAsUser)");
    vec![
        variable("redirects", "the meshes that redirect the Pod's traffic to their proxy, by catalog id", cel::redirects()),
        variable(
            "initsScanned",
            &format!("the positions of the first {INIT_BEFORE_PROXY_SCAN} init containers"),
            format!("{}.filter(i, i < size(variables.inits))", indices(INIT_BEFORE_PROXY_SCAN)),
        ),
        variable(
            "proxyPositions",
            "the positions of native mesh proxies among them",
            format!(
                "variables.initsScanned.filter(i, variables.inits[i].?restartPolicy.orValue('') == 'Always' && {} in variables.redirects)",
                cel::catalog_id("variables.inits[i]")
            ),
        ),
        variable(
            "proxyAt",
            "the first native mesh proxy's position (-1: none)",
            "size(variables.proxyPositions) == 0 ? -1 : variables.proxyPositions[0]",
        ),
        variable(
            "redirect",
            "how its mesh redirects the traffic",
            format!(
                "variables.proxyAt < 0 ? {{'iptablesInit': '', 'cniValidator': '', 'remediation': ''}} : variables.redirects[{}]",
                cel::catalog_id("variables.inits[variables.proxyAt]")
            ),
        ),
        variable(
            "plainBeforeProxy",
            "the positions of the plain init containers declared before it",
            "variables.initsScanned.filter(i, i < variables.proxyAt && variables.inits[i].?restartPolicy.orValue('') != 'Always')",
        ),
        variable(
            "redirectFrom",
            "where the redirection starts: 0 with the mesh's CNI validator, after its iptables init otherwise (-1: neither)",
            "variables.plainBeforeProxy.exists(i, variables.inits[i].name == variables.redirect.cniValidator) ? 0 : \
             [variables.plainBeforeProxy.filter(i, variables.inits[i].name == variables.redirect.iptablesInit)].map(l, size(l) == 0 ? -1 : l[0] + 1)[0]",
        ),
        variable(
            "podRunAsUser",
            "the Pod's runAsUser (-1: none)",
            "variables.template.spec.?securityContext.?runAsUser.orValue(-1)",
        ),
        variable(
            "blackholed",
            "the plain init containers that run with the traffic redirected to a proxy not started yet",
            format!(
                "variables.redirectFrom < 0 ? [] : variables.plainBeforeProxy.filter(i, i >= variables.redirectFrom && \
                 !(variables.inits[i].name in [variables.redirect.iptablesInit, variables.redirect.cniValidator]) && \
                 !({u} >= 0 && {u} == {p})).map(i, variables.inits[i].name)",
                u = user("variables.inits[i]"),
                p = user("variables.inits[variables.proxyAt]")
            ),
        ),
    ]
}

/// `sidecar-sprawl` on the Pod, as the engine words it with and without sidecars left out.
pub(crate) fn sprawl_messages() -> (Message, Message) {
    let start = || {
        Message::default()
            .text("Pod ")
            .cel("variables.podKey")
            .text(" runs ")
            .cel("string(variables.sidecarCount)")
            .text(" sidecars (")
            .cel("variables.sidecarsShown.map(s, s.container.name).join(', ')")
    };
    let all = start().text("); consider consolidating them");
    let capped = start()
        .text(", …); only the first ")
        .cel("string(size(variables.sidecarsShown))")
        .text(" are evaluated (--max-sidecars-per-pod)");
    (all, capped)
}

/// The summary of the findings that do not fit in the warnings.
fn more_findings_message() -> Message {
    Message::default()
        .text("Pod ")
        .cel("variables.podKey")
        .text(" has ")
        .cel("string(size(variables.findings) - variables.shownCount)")
        .text(MORE_FINDINGS)
}

/// The policy's variables, each computed once per request and only when a validation needs
/// it (so an object the parameters do not select costs almost nothing).
fn variables() -> Vec<Variable> {
    let max = DEFAULT_MAX_SIDECARS;
    let pattern = |name: &str| format!("(variables.pattern != '' && {name}.matches(variables.pattern))");
    let checks: Vec<String> = sidecar_checks()
        .into_iter()
        .map(|(check, list, condition, message)| {
            let filtered =
                if condition == "true" { list.to_string() } else { format!("{list}.filter(s, {condition})") };
            format!("// {check}\n{filtered}.map(s, {})", message.to_cel())
        })
        .collect();
    let (sprawl, sprawl_capped) = sprawl_messages();
    // What is left for the findings shown beside the summary: the budget less the summary's
    // warning, whose count has at most 5 digits (a request body holds fewer findings).
    let room = WARNING_BUDGET - WARNING_PREFIX - "Pod  has 99999".len() - MORE_FINDINGS.len();
    vec![
        variable(
            "podName",
            "what audit calls the object: the Pod's name, or <Kind>/<name> for a workload's Pod template",
            "request.kind.kind == 'Pod' ? object.metadata.name : request.kind.kind + '/' + object.metadata.name",
        ),
        variable("podKey", "<namespace>/<podName>, as in audit's messages", "request.namespace + '/' + variables.podName"),
        variable(
            "inJob",
            "a Job or CronJob, or a Pod a batch Job owns: a legacy sidecar holds it open",
            "request.kind.kind in ['Job', 'CronJob'] || request.kind.kind == 'Pod' && \
             object.metadata.?ownerReferences.orValue([]).exists(o, o.kind == 'Job' && o.apiVersion.startsWith('batch/'))",
        ),
        variable(
            "template",
            "the Pod, or the workload's Pod template",
            "request.kind.kind == 'Pod' ? object : request.kind.kind == 'CronJob' ? object.spec.jobTemplate.spec.template : object.spec.template",
        ),
        variable("inits", "spec.initContainers", "variables.template.spec.?initContainers.orValue([])"),
        variable("containers", "spec.containers", "variables.template.spec.?containers.orValue([])"),
        variable(
            "policy",
            "the ClusterSidecarPolicy's spec when the binding names one (paramRef), else the built-in policy ({})",
            "params == null ? {} : params.?spec.orValue({})",
        ),
        variable("native", "spec.sidecars.native (default true)", "variables.policy.?sidecars.?native.orValue(true)"),
        variable("catalog", "spec.sidecars.catalog (default true)", "variables.policy.?sidecars.?catalog.orValue(true)"),
        variable("names", "spec.sidecars.names", "variables.policy.?sidecars.?names.orValue([])"),
        variable(
            "pattern",
            "spec.sidecars.pattern anchored to whole names ('' for none); the built-in one without a sidecars block. The pattern is first tried on its own, so one that does not compile (or would escape its anchors, like x)|( ) fails the evaluation, as the operator refuses the policy",
            format!(
                "!has(variables.policy.sidecars) ? {default} : !has(variables.policy.sidecars.pattern) ? '' : \
                 [variables.policy.sidecars.pattern].map(p, ''.matches(p) ? '^(?:' + p + ')$' : '^(?:' + p + ')$')[0]",
                default = cel::string(&format!("^(?:{DEFAULT_SIDECAR_PATTERN})$"))
            ),
        ),
        variable(
            "misconfiguration",
            "spec.rules.misconfiguration.enabled (default true)",
            "variables.policy.?rules.?misconfiguration.?enabled.orValue(true)",
        ),
        variable(
            "jobBlocked",
            "spec.rules.jobBlocked.enabled (default true)",
            "variables.policy.?rules.?jobBlocked.?enabled.orValue(true)",
        ),
        variable("labels", "the Pod's (or template's) labels", "variables.template.?metadata.?labels.orValue({})"),
        variable(
            "namespaceLabels",
            "the namespace's labels",
            "namespaceObject == null ? {} : namespaceObject.metadata.?labels.orValue({})",
        ),
        variable(
            "selected",
            "the ClusterSidecarPolicy's namespaceSelector and selector select the object",
            format!(
                "params == null || ({}) && ({})",
                cel::selector_matches("variables.policy.?namespaceSelector.orValue({})", "variables.namespaceLabels"),
                cel::selector_matches("variables.policy.?selector.orValue({})", "variables.labels")
            ),
        ),
        variable("catalogNames", "the catalog's container names and their entries", cel::catalog_names()),
        variable("jobRemediations", "how to keep each catalog sidecar from holding a Job open", cel::job_remediations()),
        variable(
            "nativeRemediations",
            "how to make each catalog sidecar a native one (a legacy sidecar outside a Job)",
            cel::native_remediations(),
        ),
        variable(
            "catalogImages",
            "the last segments of the catalog's image repositories, and the entry each decides ('' where the rest of the image does)",
            cel::catalog_images(),
        ),
        variable(
            "catalogApplies",
            "the catalog names regular containers only beside one it does not know (a standalone proxy is the Pod's main container)",
            format!("variables.catalog && variables.containers.exists(c, {} == '')", cel::catalog_id("c")),
        ),
        variable(
            "natives",
            "native sidecars: init containers with restartPolicy Always that the policy selects (no message needs their catalog entry)",
            format!(
                "variables.inits.filter(c, c.?restartPolicy.orValue('') == 'Always' && (variables.native || c.name in variables.names || \
                 (variables.catalog && {} != '') || {})).map(c, {{'container': c, 'catalog': dyn('')}})",
                cel::catalog_id("c"),
                pattern("c.name")
            ),
        ),
        variable(
            "legacies",
            "legacy sidecars: regular containers the policy's names, the catalog or the pattern select",
            format!(
                "variables.containers.filter(c, c.name in variables.names || {} || (variables.catalogApplies && {} != ''))",
                pattern("c.name"),
                cel::catalog_id("c")
            ),
        ),
        variable(
            "nativesShown",
            &format!("the sidecars evaluated are the first {max}, natives first (the operator's --max-sidecars-per-pod)"),
            format!("{}.filter(i, i < size(variables.natives)).map(i, variables.natives[i])", indices(max)),
        ),
        variable(
            "legaciesShown",
            "the legacy sidecars among them, with their catalog entries (for the remediation)",
            format!(
                "{}.filter(i, i < size(variables.legacies) && i + size(variables.nativesShown) < {max})\n\
                 .map(i, variables.legacies[i]).map(c, {{'container': c, 'catalog': dyn({})}})",
                indices(max),
                cel::catalog_id("c")
            ),
        ),
        variable("sidecarsShown", "every sidecar evaluated", "variables.nativesShown + variables.legaciesShown"),
    ]
    .into_iter()
    .chain(init_before_proxy_variables())
    .chain(super::signals::variables())
    .chain(super::missing::variables())
    .chain([
        variable("sidecarCount", "every sidecar", "size(variables.natives) + size(variables.legacies)"),
        variable(
            "jobFindings",
            "JobBlockedBySidecar: a legacy sidecar in a Job or CronJob template beside a main container",
            format!(
                "request.kind.kind in ['Job', 'CronJob'] && variables.jobBlocked && size(variables.containers) > size(variables.legacies) ? \
                 variables.legaciesShown.map(s, {}) : []",
                job_message().to_cel()
            ),
        ),
        variable(
            "misconfigurations",
            "SidecarMisconfigured: the static checks, by check",
            format!(
                "{}\n+ (variables.sidecarCount < {SPRAWL_THRESHOLD} ? [] : variables.sidecarCount == size(variables.sidecarsShown) ? [{}] : [{}])",
                checks.join("\n+ "),
                sprawl.to_cel(),
                sprawl_capped.to_cel()
            ),
        ),
        variable(
            "findings",
            "every finding's message",
            "!variables.selected ? [] : variables.jobFindings + (variables.misconfiguration ? variables.misconfigurations : []) + variables.missingFindings",
        ),
        variable(
            "sizes",
            "each finding's length in a warning",
            format!("variables.findings.map(m, size(m) + {WARNING_PREFIX})"),
        ),
        variable(
            "shownCount",
            &format!(
                "how many findings get a warning of their own: all when they fit in {WARNING_BUDGET} characters and {MAX_FINDINGS_SHOWN} warnings, else as many as fit beside the summary"
            ),
            format!(
                "size(variables.findings) <= {MAX_FINDINGS_SHOWN} && (size(variables.findings) == 0 || variables.sizes.sum() <= {WARNING_BUDGET}) ? size(variables.findings) : \
                 {all}.filter(i, i < size(variables.sizes) && {all}.filter(j, j <= i).map(j, variables.sizes[j]).sum() <= {room} - size(variables.podKey)).size()",
                all = indices(MAX_FINDINGS_SHOWN)
            ),
        ),
    ])
    .collect()
}

/// Why `Deny` refuses: `Forbidden` (403, "… is forbidden: …"); the default `Invalid` would
/// blame the object's syntax.
const REFUSED: &str = "Forbidden";

/// One validation per finding shown, then the summary of the rest.
fn validations() -> Vec<Validation> {
    let mut out: Vec<Validation> = (0..MAX_FINDINGS_SHOWN)
        .map(|i| Validation {
            expression: format!("variables.shownCount <= {i}"),
            message_expression: Some(format!("variables.findings[{i}]")),
            message: Some("a sidecar finding (sidecar-watch audit explains it)".to_string()),
            reason: Some(REFUSED.to_string()),
        })
        .collect();
    out.push(Validation {
        expression: "variables.shownCount == size(variables.findings)".to_string(),
        message_expression: Some(more_findings_message().to_cel()),
        message: Some("more sidecar findings than one response's warnings can hold".to_string()),
        reason: Some(REFUSED.to_string()),
    });
    out
}

/// The ValidatingAdmissionPolicy.
pub(crate) fn validating_admission_policy() -> ValidatingAdmissionPolicy {
    ValidatingAdmissionPolicy {
        metadata: ObjectMeta { name: Some(POLICY_NAME.to_string()), labels: Some(labels()), ..Default::default() },
        spec: Some(ValidatingAdmissionPolicySpec {
            failure_policy: Some("Ignore".to_string()),
            param_kind: Some(ParamKind {
                api_version: Some(format!("{GROUP}/{VERSION}")),
                kind: Some(<ClusterSidecarPolicy as kube::Resource>::kind(&()).to_string()),
            }),
            match_constraints: Some(match_constraints()),
            variables: Some(variables()),
            validations: Some(validations()),
            ..Default::default()
        }),
        status: None,
    }
}
