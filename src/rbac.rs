//! The Kubernetes API access the operator needs, in one place.
//!
//! `config/rbac/` and the Helm chart grant exactly these rules; `tests/integration/rbac.rs` fails when
//! they disagree, and the end-to-end test `operator_calls_exactly_what_rbac_grants` (tests/e2e_operator/rbac.rs)
//! fails when the operator's requests, as kube-apiserver's audit log records them, and this
//! list disagree either way. Change this list together with the code that makes the calls.
//! (The one non-resource request, `GET /version` for `--initial-list auto`, is granted to
//! every client by kube-apiserver's default `system:public-info-viewer` role.)

/// One RBAC rule: verbs on resources of an API group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyRule {
    /// The API group ("" for core).
    pub api_group: &'static str,
    /// Resources, with subresources as `resource/subresource`.
    pub resources: &'static [&'static str],
    /// Verbs.
    pub verbs: &'static [&'static str],
}

/// Cluster-wide rules (ClusterRole).
pub const CLUSTER_RULES: &[PolicyRule] = &[
    // Watched: Pods (the subject), Namespaces (labels for namespaceSelector).
    PolicyRule { api_group: "", resources: &["pods", "namespaces"], verbs: &["list", "watch"] },
    // Watched policies.
    PolicyRule {
        api_group: "sidecarwatch.io",
        resources: &["sidecarpolicies", "clustersidecarpolicies"],
        verbs: &["list", "watch"],
    },
    // Policy status, written with server-side apply.
    PolicyRule {
        api_group: "sidecarwatch.io",
        resources: &["sidecarpolicies/status", "clustersidecarpolicies/status"],
        verbs: &["patch"],
    },
    // Events on Pods and policies: created and patched (series) by the recorder; listed at
    // start-up so that alerts announced before a restart are not announced again.
    PolicyRule { api_group: "events.k8s.io", resources: &["events"], verbs: &["create", "patch", "list"] },
    // A Deployment's UID for its workload Events (its Pods name only their ReplicaSet):
    // read once per ReplicaSet, when one of its Pods first fires an alert.
    PolicyRule { api_group: "apps", resources: &["deployments"], verbs: &["get"] },
    // SidecarInjectionFailed: the `FailedCreate` Events of the ReplicaSet, StatefulSet,
    // DaemonSet, Job and CronJob controllers, watched with the server-side field selector
    // `reason=FailedCreate`, never unfiltered. Through core/v1, the API their recorder writes
    // (kubernetes pkg/controller/replicaset/replica_set.go `Run`: `StartRecordingToSink(
    // &v1core.EventSinkImpl{Interface: rsc.kubeClient.CoreV1().Events("")})`): RBAC grants by
    // API group, so the events.k8s.io rule above does not cover it.
    PolicyRule { api_group: "", resources: &["events"], verbs: &["list", "watch"] },
    // The workload a `FailedCreate` Event names, read one at a time (never listed: no
    // workload is held in memory unless it is failing): its Pod template's labels (which
    // policies select it), its owner (a ReplicaSet's Deployment) and whether it still exists
    // (the alert cannot outlive it).
    PolicyRule { api_group: "apps", resources: &["replicasets", "statefulsets", "daemonsets"], verbs: &["get"] },
    // The same for a Job and its CronJob owner (the name users know and route on), and for a
    // CronJob whose own controller reports `FailedCreate`. Also a CronJob's UID and
    // concurrencyPolicy for its workload Events (its Pods name only their Job): the Job is read
    // to prove the CronJob controls it, then the CronJob; once per Job.
    PolicyRule { api_group: "batch", resources: &["jobs", "cronjobs"], verbs: &["get"] },
    // Secure /metrics (--metrics-secure): who the scraper is (TokenReview) and whether it may
    // `get` the non-resource URL /metrics (SubjectAccessReview).
    PolicyRule { api_group: "authentication.k8s.io", resources: &["tokenreviews"], verbs: &["create"] },
    PolicyRule { api_group: "authorization.k8s.io", resources: &["subjectaccessreviews"], verbs: &["create"] },
];

/// Rules in the operator's own namespace (Role): the leader-election Lease.
pub const LEASE_RULES: &[PolicyRule] =
    &[PolicyRule { api_group: "coordination.k8s.io", resources: &["leases"], verbs: &["get", "create", "patch"] }];
