//! Which sidecars an injector is asked to put into a Pod: each well-known injector's
//! documented triggers and opt-outs, read from the labels and annotations of the Pod and its
//! namespace. A Pod they select that lacks the sidecar is `SidecarMissing`: the injector was
//! down, its webhook failed open, or the marker came after the Pod.
//!
//! Each entry cites the project's documentation or injector code it was read from. What an
//! injector decides from cluster-wide settings the API does not show (Consul's
//! `connectInject.default`, Istio's `neverInjectSelector`, Dapr's and Vault's allowed
//! namespaces) is not guessed: only markers a Pod or namespace carries count.

use std::collections::BTreeMap;

use super::catalog::{self, CatalogId};
use super::pod::PodView;

/// What the engine reads of a Namespace: the labels (policies' `namespaceSelector`, injectors)
/// and the annotations injectors read ([`sidecar_watch_api::INJECTION_ANNOTATIONS`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespaceMeta {
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// The injection annotations of `metadata.annotations`, values cut.
    pub annotations: BTreeMap<String, String>,
    /// The values of the exported labels (`--namespace-labels`), in the allowlist's order,
    /// empty for a label the namespace lacks: only these are copied for `/metrics`, so a
    /// namespace with many labels costs a few strings here, not a second map.
    pub exported: Box<[Box<str>]>,
}

impl NamespaceMeta {
    /// Whether anything an injector reads of a namespace differs between `before` (`None`: not
    /// known until now) and `after`.
    pub fn markers_differ(before: Option<&Self>, after: &Self) -> bool {
        let empty = Self::default();
        let before = before.unwrap_or(&empty);
        INJECTORS
            .iter()
            .flat_map(|injector| injector.namespace)
            .any(|m| m.value(&before.labels, &before.annotations) != m.value(&after.labels, &after.annotations))
    }

    /// From a Namespace's labels and all of its annotations (only the injectors' are kept).
    pub fn new(labels: BTreeMap<String, String>, annotations: &BTreeMap<String, String>) -> NamespaceMeta {
        NamespaceMeta {
            labels,
            annotations: sidecar_watch_api::injection_annotations(annotations),
            exported: Box::default(),
        }
    }

    /// The same, with the values of the exported labels ([`NamespaceMeta::exported`]).
    pub fn with_exported(self, exported: Box<[Box<str>]>) -> NamespaceMeta {
        NamespaceMeta { exported, ..self }
    }

    /// The value of the exported label at `position` in the allowlist, empty when the
    /// namespace lacks it (or was read before the allowlist had that many keys).
    pub fn exported(&self, position: usize) -> &str {
        self.exported.get(position).map_or("", |v| v)
    }
}

/// Where a marker is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// A label.
    Label,
    /// An annotation.
    Annotation,
}

/// Which values of a marker ask for the sidecar.
#[derive(Clone, Copy, Debug)]
pub enum Inject {
    /// None: the marker can only opt out.
    Never,
    /// Any value that is not an opt-out (a revision, a collector's name).
    Any,
    /// These values.
    Of(&'static [&'static str]),
}

/// Which values of a marker opt out.
#[derive(Clone, Copy, Debug)]
pub enum OptOut {
    /// These values; others are ignored.
    Of(&'static [&'static str]),
    /// Every value that does not ask for the sidecar (the injector treats an unknown value as
    /// "no").
    Otherwise,
}

/// One label or annotation an injector reads.
#[derive(Debug)]
pub struct Marker {
    /// Label or annotation.
    pub place: Place,
    /// Its key.
    pub key: &'static str,
    /// The values that ask for the sidecar.
    pub inject: Inject,
    /// The values that opt out.
    pub opt_out: OptOut,
    /// On a namespace: an opt-out no Pod marker can overrule (the webhook never sees the
    /// namespace's Pods).
    pub final_opt_out: bool,
}

/// A marker on one object, with the value found there.
#[derive(Clone, Copy, Debug)]
pub struct Found<'a> {
    /// The marker.
    pub marker: &'static Marker,
    /// Its value on the object.
    pub value: &'a str,
    /// Whether the object is the namespace (else the Pod).
    pub on_namespace: bool,
}

impl Marker {
    const fn label(key: &'static str, inject: Inject, opt_out: OptOut) -> Marker {
        Marker { place: Place::Label, key, inject, opt_out, final_opt_out: false }
    }

    const fn annotation(key: &'static str, inject: Inject, opt_out: OptOut) -> Marker {
        Marker { place: Place::Annotation, key, inject, opt_out, final_opt_out: false }
    }

    const fn final_opt_out(self) -> Marker {
        Marker { final_opt_out: true, ..self }
    }

    /// The marker's value on an object with these labels and annotations.
    fn value<'a>(
        &self,
        labels: &'a BTreeMap<String, String>,
        annotations: &'a BTreeMap<String, String>,
    ) -> Option<&'a str> {
        let map = if self.place == Place::Label { labels } else { annotations };
        map.get(self.key).map(String::as_str)
    }

    /// Whether the value asks for the sidecar (`Some(true)`), opts out (`Some(false)`), or
    /// neither (absent, or a value the injector ignores).
    fn decide<'a>(
        &'static self,
        labels: &'a BTreeMap<String, String>,
        annotations: &'a BTreeMap<String, String>,
        on_namespace: bool,
    ) -> Option<(bool, Found<'a>)> {
        let value = self.value(labels, annotations)?;
        let found = Found { marker: self, value, on_namespace };
        let injects = match self.inject {
            Inject::Never => false,
            Inject::Any => true,
            Inject::Of(values) => values.contains(&value),
        };
        let opts_out = match self.opt_out {
            OptOut::Of(values) => values.contains(&value),
            OptOut::Otherwise => !injects,
        };
        if opts_out {
            Some((false, found))
        } else {
            injects.then_some((true, found))
        }
    }
}

/// A sidecar injector: how a Pod asks for its sidecar.
#[derive(Debug)]
pub struct Injector {
    /// The catalog id of the sidecar it injects.
    pub catalog_id: &'static str,
    /// Namespace markers, the first that decides wins.
    pub namespace: &'static [Marker],
    /// Pod markers, the first that decides wins; they overrule the namespace's decision
    /// unless that is a final opt-out.
    pub pod: &'static [Marker],
    /// Pod markers count only in a namespace that carries one of `namespace`'s keys (the
    /// webhook's namespace selector asks for it).
    pub pod_needs_namespace_key: bool,
    /// It never injects `hostNetwork` Pods.
    pub skips_host_network: bool,
    /// It injects only Pods that a controller creates (a Deployment's, a Job's…): a bare Pod
    /// that a person applies is let through without the sidecar.
    pub skips_bare_pods: bool,
    /// Namespaces it never injects into.
    pub skipped_namespaces: &'static [&'static str],
    /// Where its behaviour is documented: the project's docs, then its injector's code.
    pub source: &'static str,
    /// The names of its mutating webhooks on Pods, as its chart or manifests write them; a
    /// leading `*` matches any prefix (Istio's revisions, Consul's release name). What a
    /// controller's `FailedCreate` Event names ([`crate::classify_failed_create`]).
    pub webhooks: &'static [&'static str],
    /// The init containers it adds beside its sidecar (iptables setup, CNI validation, secrets
    /// rendering): an admission plugin that rejects one of them rejects the injector's work.
    pub helpers: &'static [&'static str],
    /// Where `webhooks` and `helpers` were read.
    pub webhooks_source: &'static str,
    /// What to do when its webhook cannot be called.
    pub unreachable_fix: &'static str,
    /// What to do when an admission plugin (PodSecurity) rejects a container it injected.
    pub admission_fix: &'static str,
}

/// The advice for a container an injector added that PodSecurity rejects, where the project
/// has no better one.
pub(crate) const GENERIC_ADMISSION_FIX: &str = "let the namespace's PodSecurity level (label pod-security.kubernetes.io/enforce) admit the container, or configure its injector to give it a securityContext that the level allows";

/// Go's `strconv.ParseBool`, which Consul's and Vault's injectors read their annotations with.
const GO_TRUE: &[&str] = &["1", "t", "T", "TRUE", "true", "True"];
/// The false half of Go's `strconv.ParseBool`.
const GO_FALSE: &[&str] = &["0", "f", "F", "FALSE", "false", "False"];
/// Linkerd's injecting values of `linkerd.io/inject`.
const LINKERD_INJECT: Inject = Inject::Of(&["enabled", "ingress"]);
/// Kuma's values of `kuma.io/sidecar-injection` (`GetBooleanWithDefault`).
const KUMA_INJECT: Inject = Inject::Of(&["enabled", "true", "yes"]);
/// The opt-outs of `kuma.io/sidecar-injection`.
const KUMA_OPT_OUT: OptOut = OptOut::Of(&["disabled", "false", "no"]);

/// Every injector whose markers are known.
/// The fields an injector leaves at "none" (no namespace markers, no skipped namespaces, no
/// helpers…) and the generic PodSecurity advice; each entry below states only what is its own.
const NO_INJECTOR: Injector = Injector {
    catalog_id: "",
    namespace: &[],
    pod: &[],
    pod_needs_namespace_key: false,
    skips_host_network: false,
    skips_bare_pods: false,
    skipped_namespaces: &[],
    source: "",
    webhooks: &[],
    helpers: &[],
    webhooks_source: "",
    unreachable_fix: "",
    admission_fix: GENERIC_ADMISSION_FIX,
};

pub static INJECTORS: &[Injector] = &[
    Injector {
        catalog_id: "istio",
        namespace: &[
            // Any other value matches none of the webhooks: final.
            Marker::label("istio-injection", Inject::Of(&["enabled"]), OptOut::Otherwise).final_opt_out(),
            // The revision must be installed; a Pod of a revision that is not is missing its
            // proxy just the same.
            Marker::label("istio.io/rev", Inject::Any, OptOut::Of(&[])),
        ],
        pod: &[
            Marker::label("sidecar.istio.io/inject", Inject::Of(&["true"]), OptOut::Of(&["false"])),
            // Read once the webhook is called, which only labels make happen.
            Marker::annotation("sidecar.istio.io/inject", Inject::Never, OptOut::Of(&["false"])),
            Marker::label("istio.io/rev", Inject::Any, OptOut::Of(&[])),
        ],
        skips_host_network: true,
        skipped_namespaces: &["kube-system", "kube-public", "kube-node-lease", "local-path-storage"],
        source: "https://istio.io/latest/docs/setup/additional-setup/sidecar-injection/#controlling-the-injection-policy; istio/istio pkg/kube/inject/inject.go (injectRequired)",
        webhooks: &["sidecar-injector.istio.io", "*.sidecar-injector.istio.io"],
        helpers: &["istio-init", "istio-validation"],
        webhooks_source: "istio/istio manifests/charts/istio-control/istio-discovery/templates/mutatingwebhook.yaml (rev.namespace., rev.object., namespace., object.sidecar-injector.istio.io; sidecar-injector.istio.io before 1.10); manifests/charts/istio-control/istio-discovery/files/injection-template.yaml (istio-init, istio-validation)",
        unreachable_fix: "check that istiod is running and reachable from the API server (kubectl -n istio-system get pods,endpoints istiod), or set the webhook's failurePolicy: Ignore to let Pods start without the proxy",
        admission_fix: "install Istio's CNI node agent (istio-cni) so that Pods need no istio-init with NET_ADMIN and NET_RAW, or let the namespace's PodSecurity level admit it",
        ..NO_INJECTOR
    },
    Injector {
        catalog_id: "linkerd",
        namespace: &[
            Marker::label("config.linkerd.io/admission-webhooks", Inject::Never, OptOut::Of(&["disabled"]))
                .final_opt_out(),
            Marker::annotation("linkerd.io/inject", LINKERD_INJECT, OptOut::Otherwise),
        ],
        pod: &[Marker::annotation("linkerd.io/inject", LINKERD_INJECT, OptOut::Otherwise)],
        skips_host_network: true,
        skipped_namespaces: &["kube-system", "cert-manager"],
        source: "https://linkerd.io/2/features/proxy-injection/; linkerd/linkerd2 pkg/inject/report.go (disabledByAnnotation, Injectable)",
        webhooks: &["linkerd-proxy-injector.linkerd.io"],
        helpers: &["linkerd-init", "linkerd-network-validator"],
        webhooks_source: "linkerd/linkerd2 charts/linkerd-control-plane/templates/proxy-injector-rbac.yaml (MutatingWebhookConfiguration); charts/partials/templates/_proxy-init.tpl, _network-validator.tpl",
        unreachable_fix: "check that linkerd-proxy-injector is running and reachable from the API server (linkerd check), or keep the webhook's failurePolicy: Ignore",
        admission_fix: "install the linkerd-cni plugin (linkerd install-cni, then cniEnabled: true) so that Pods need no linkerd-init with NET_ADMIN and NET_RAW, or let the namespace's PodSecurity level admit it",
        ..NO_INJECTOR
    },
    Injector {
        catalog_id: "kuma",
        namespace: &[Marker::label("kuma.io/sidecar-injection", KUMA_INJECT, KUMA_OPT_OUT)],
        pod: &[Marker::label("kuma.io/sidecar-injection", KUMA_INJECT, KUMA_OPT_OUT)],
        pod_needs_namespace_key: true,
        skipped_namespaces: &["kube-system", "kuma-system"],
        source: "https://kuma.io/docs/latest/production/dp-config/dpp-on-kubernetes/; kumahq/kuma pkg/plugins/runtime/k8s/webhooks/injector/precheck.go (needToInject)",
        // Its validating webhook on Pods fails closed too.
        webhooks: &["*kuma-injector.kuma.io", "pod.validator.kuma-admission.kuma.io"],
        helpers: &["kuma-init", "kuma-validation"],
        webhooks_source: "kumahq/kuma deployments/charts/kuma/templates/cp-webhooks-and-secrets.yaml (namespace-, pods-, mesh-zoneproxy-kuma-injector.kuma.io; pod.validator.kuma-admission.kuma.io); pkg/plugins/runtime/k8s/webhooks/injector/injector.go",
        unreachable_fix: "check that kuma-control-plane is running and reachable from the API server (kubectl -n kuma-system get pods,endpoints kuma-control-plane), or set controlPlane.injectorFailurePolicy: Ignore",
        admission_fix: "enable Kuma's CNI (cni.enabled: true) so that Pods need no kuma-init with NET_ADMIN and NET_RAW, or let the namespace's PodSecurity level admit it",
        ..NO_INJECTOR
    },
    Injector {
        catalog_id: "consul",
        pod: &[Marker::annotation("consul.hashicorp.com/connect-inject", Inject::Of(GO_TRUE), OptOut::Of(GO_FALSE))],
        skipped_namespaces: &["kube-system", "kube-public"],
        source: "https://developer.hashicorp.com/consul/docs/k8s/annotations-and-labels; hashicorp/consul-k8s control-plane/connect-inject/webhook/mesh_webhook.go (shouldInject)",
        // <release>-connect-injector.consul.hashicorp.com.
        webhooks: &["*-connect-injector.consul.hashicorp.com"],
        helpers: &["consul-connect-inject-init"],
        webhooks_source: "hashicorp/consul-k8s charts/consul/templates/connect-inject-mutatingwebhookconfiguration.yaml; control-plane/connect-inject/webhook/container_init.go (InjectInitContainerName)",
        unreachable_fix: "check that consul-connect-injector is running and reachable from the API server, or set connectInject.failurePolicy: Ignore",
        admission_fix: "enable Consul's CNI plugin (connectInject.cni.enabled: true) so that Pods need no consul-connect-inject-init with NET_ADMIN, or let the namespace's PodSecurity level admit it",
        ..NO_INJECTOR
    },
    Injector {
        catalog_id: "dapr",
        pod: &[Marker::annotation("dapr.io/enabled", Inject::Of(&["true", "True", "TRUE"]), OptOut::Of(&[]))],
        skips_bare_pods: true,
        source: "https://docs.dapr.io/concepts/dapr-services/sidecar-injector/; dapr/dapr pkg/injector/service/handler.go (allowed service accounts)",
        webhooks: &["sidecar-injector.dapr.io"],
        webhooks_source: "dapr/dapr charts/dapr/charts/dapr_sidecar_injector/templates/dapr_sidecar_injector_webhook_config.yaml",
        unreachable_fix: "check that dapr-sidecar-injector is running and reachable from the API server (kubectl -n dapr-system get pods,endpoints dapr-sidecar-injector)",
        ..NO_INJECTOR
    },
    Injector {
        catalog_id: "vault-agent",
        pod: &[
            // Pre-populate only: an init container, no sidecar.
            Marker::annotation("vault.hashicorp.com/agent-pre-populate-only", Inject::Never, OptOut::Of(GO_TRUE)),
            Marker::annotation("vault.hashicorp.com/agent-inject", Inject::Of(GO_TRUE), OptOut::Of(GO_FALSE)),
        ],
        skipped_namespaces: &["kube-system", "kube-public"],
        source: "https://developer.hashicorp.com/vault/docs/platform/k8s/injector/annotations; hashicorp/vault-k8s agent-inject/agent/agent.go (ShouldInject)",
        webhooks: &["vault.hashicorp.com"],
        helpers: &["vault-agent-init"],
        webhooks_source: "hashicorp/vault-helm templates/injector-mutating-webhook.yaml; hashicorp/vault-k8s agent-inject/agent/container_init_sidecar.go",
        unreachable_fix: "check that vault-agent-injector is running and reachable from the API server, or set injector.failurePolicy: Ignore",
        ..NO_INJECTOR
    },
    Injector {
        catalog_id: "otel-collector",
        namespace: &[Marker::annotation("sidecar.opentelemetry.io/inject", Inject::Any, OptOut::Of(&["false"]))],
        pod: &[Marker::annotation("sidecar.opentelemetry.io/inject", Inject::Any, OptOut::Of(&["false"]))],
        source: "https://github.com/open-telemetry/opentelemetry-operator#sidecar-injection; open-telemetry/opentelemetry-operator pkg/sidecar/annotation.go",
        // Its Pod webhook is kubebuilder's generic `mpod.kb.io`, which other operators' Pod
        // webhooks are named too: a failure naming it is not known to be this injector's.
        webhooks: &[],
        webhooks_source: "open-telemetry/opentelemetry-operator config/webhook/manifests.yaml (mpod.kb.io)",
        unreachable_fix: "check that the OpenTelemetry Operator is running and reachable from the API server",
        ..NO_INJECTOR
    },
    Injector {
        catalog_id: "gcsfuse",
        pod: &[Marker::annotation("gke-gcsfuse/volumes", Inject::Of(&["true", "True"]), OptOut::Of(&["false", "False"]))],
        source: "https://cloud.google.com/kubernetes-engine/docs/how-to/persistent-volumes/cloud-storage-fuse-csi-driver-sidecar; GoogleCloudPlatform/gcs-fuse-csi-driver pkg/webhook/mutatingwebhook.go",
        webhooks: &["gcsfuse-sidecar-injector.csi.storage.gke.io"],
        webhooks_source: "GoogleCloudPlatform/gcs-fuse-csi-driver deploy/base/webhook/mutatingwebhook.yaml",
        unreachable_fix: "check the Cloud Storage FUSE CSI driver's webhook (gcs-fuse-csi-driver-webhook); on GKE it is managed with the add-on",
        ..NO_INJECTOR
    },
];

/// An injector that selects a Pod, and the marker that made it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Selection<'a> {
    /// The sidecar it injects.
    pub sidecar: CatalogId,
    /// The marker that asks for it.
    pub by: Found<'a>,
}

impl Injector {
    /// The marker by which this injector selects `pod` in `namespace`, if it does.
    pub fn selects<'a>(&'static self, pod: &'a PodView, namespace: Option<&'a NamespaceMeta>) -> Option<Found<'a>> {
        if self.skipped_namespaces.contains(&pod.namespace().as_str())
            || (self.skips_host_network && pod.host_network())
            || (self.skips_bare_pods && pod.owner().is_none())
        {
            return None;
        }
        let in_namespace =
            namespace.and_then(|ns| self.namespace.iter().find_map(|m| m.decide(&ns.labels, &ns.annotations, true)));
        if let Some((false, found)) = in_namespace {
            if found.marker.final_opt_out {
                return None;
            }
        }
        let pod_markers_count = !self.pod_needs_namespace_key
            || namespace
                .is_some_and(|ns| self.namespace.iter().any(|m| m.value(&ns.labels, &ns.annotations).is_some()));
        let on_pod = pod_markers_count
            .then(|| self.pod.iter().find_map(|m| m.decide(pod.labels(), pod.injection_annotations(), false)))
            .flatten();
        match on_pod.or(in_namespace) {
            Some((true, found)) => Some(found),
            _ => None,
        }
    }
}

/// Every injector that selects `pod` in `namespace`, with the marker that made it.
pub(crate) fn selecting<'a>(
    pod: &'a PodView,
    namespace: Option<&'a NamespaceMeta>,
) -> impl Iterator<Item = Selection<'a>> {
    INJECTORS.iter().filter_map(move |injector| {
        let by = injector.selects(pod, namespace)?;
        Some(Selection { sidecar: catalog::CatalogId::by_id(injector.catalog_id)?, by })
    })
}

#[cfg(test)]
mod tests;
