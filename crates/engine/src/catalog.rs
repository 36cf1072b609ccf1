//! The built-in catalog of well-known sidecars: recognised by container name or by image
//! repository (registry, tag and digest ignored), each with the product's own remediation
//! advice. One table; a contributor adds a sidecar with one entry here and one fixture test
//! in `tests/integration/catalog.rs`.

use std::fmt;
use std::num::NonZeroU8;

pub(crate) mod signal;
pub use signal::{Blindspot, Signal};

/// How an image repository is matched. Paths are compared without registry, tag or digest,
/// segment by segment, so `mycorp/proxy` is not Linkerd's `linkerd/proxy`.
#[derive(Clone, Copy, Debug)]
pub enum ImageRule {
    /// The last path segment equals this (`*/proxyv2`).
    Last(&'static str),
    /// The last path segment starts with this (`*/opentelemetry-collector*`).
    LastPrefix(&'static str),
    /// The path ends with these segments (`*/linkerd/proxy`, `envoyproxy/envoy`).
    Suffix(&'static str),
}

/// One well-known sidecar.
#[derive(Debug)]
pub struct CatalogEntry {
    /// The id shown as `identified_by: catalog:<id>`.
    pub id: &'static str,
    /// The product's name, for messages.
    pub product: &'static str,
    /// Container names its injector or documentation uses.
    pub names: &'static [&'static str],
    /// Its images.
    pub images: &'static [ImageRule],
    /// The image runs other things too: it is this sidecar only when `command` or `args`
    /// mention `agent` (Vault's image is both server and agent).
    pub image_needs_agent: bool,
    /// Ports the sidecar serves whether or not the Pod spec declares them (admin, health).
    pub ports: &'static [u16],
    /// How to keep it from holding a Job open (it is declared in `spec.containers`).
    pub job_remediation: &'static str,
    /// How to make the app start only once it is ready.
    pub ordering_remediation: &'static str,
    /// How to make it a native sidecar, started before the main containers and stopped after
    /// them (a legacy sidecar outside a Job: `legacy-sidecar`).
    pub native_remediation: &'static str,
    /// How a mesh redirects the Pod's traffic to this proxy, for meshes that do.
    pub redirect: Option<Redirect>,
    /// The `preStop` hook the product's injector gives its native sidecar, as words its `exec`
    /// command contains in order; empty when it writes none. Such a hook starts a drain that
    /// keeps the proxy serving until the kubelet sends SIGTERM (after the main containers
    /// exit), so it is not reported as `native-prestop`.
    pub drain_hook: &'static [&'static str],
    /// Its own health or metrics signal, and what switches it (the source of each fact in a
    /// comment beside it).
    pub signal: Signal,
}

/// How a mesh moves the Pod's traffic to its proxy, and what the mesh advises for init
/// containers that need the network before the proxy runs.
#[derive(Debug)]
pub struct Redirect {
    /// The init container that installs the iptables rules; init containers before it still
    /// have the plain network.
    pub iptables_init: &'static str,
    /// The init container that checks the rules the mesh's CNI plugin installed when the
    /// sandbox was created: every init container before the proxy is redirected.
    pub cni_validator: &'static str,
    /// The mesh's own remedy for an init container that needs the network.
    pub remediation: &'static str,
}

impl CatalogEntry {
    /// Whether an `exec` command is the drain hook the product's injector writes.
    pub fn is_drain_hook(&self, command: &[String]) -> bool {
        if self.drain_hook.is_empty() {
            return false;
        }
        let mut words = command.iter().flat_map(|part| part.split_whitespace());
        self.drain_hook.iter().all(|want| words.any(|w| w == *want))
    }
}

/// An entry's position in [`CATALOG`], plus one: `Option<CatalogId>` is one byte per
/// container in the compact Pod view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CatalogId(NonZeroU8);

impl CatalogId {
    /// The id of `CATALOG[i]`.
    fn at(i: usize) -> Option<CatalogId> {
        u8::try_from(i + 1).ok().and_then(NonZeroU8::new).map(CatalogId)
    }

    /// The entry.
    pub fn entry(self) -> &'static CatalogEntry {
        &CATALOG[usize::from(self.0.get() - 1)]
    }

    /// The entry whose id is `id`.
    pub fn by_id(id: &str) -> Option<Self> {
        Self::at(CATALOG.iter().position(|e| e.id == id)?)
    }

    /// The entry whose first name is `name`: the name `SidecarMissing` gives the sidecar of an
    /// entry that a Pod lacks.
    pub fn by_first_name(name: &str) -> Option<Self> {
        Self::at(CATALOG.iter().position(|e| e.names.first() == Some(&name))?)
    }

    /// The catalog entry a container is, by name first, then by image.
    pub fn recognise(name: &str, image: Option<&str>, mentions_agent: bool) -> Option<Self> {
        let by_name = CATALOG.iter().position(|e| e.names.contains(&name));
        let by_image = || {
            let path = image.map(repository_path)?;
            CATALOG.iter().position(|e| {
                (!e.image_needs_agent || mentions_agent) && e.images.iter().any(|rule| rule.matches(path))
            })
        };
        by_name.or_else(by_image).and_then(CatalogId::at)
    }
}

impl fmt::Display for CatalogId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.entry().id)
    }
}

/// The advice for any sidecar that the catalog does not know better.
pub const GENERIC_JOB_REMEDIATION: &str =
    "declare it in initContainers with restartPolicy: Always (a native sidecar, Kubernetes 1.29+): the kubelet stops it once the main containers have finished";
/// How to make any sidecar that the catalog does not know better a native one.
pub const GENERIC_NATIVE_REMEDIATION: &str = "make it a native sidecar (in initContainers with restartPolicy: Always, Kubernetes 1.29+, or through its injector's native-sidecar setting): the kubelet then starts it before the main containers and stops it after them";
/// The start-order advice for any sidecar that the catalog does not know better.
pub(crate) const GENERIC_ORDERING_REMEDIATION: &str =
    "make it a native sidecar with a startupProbe (or a postStart hook that waits until it is ready): the kubelet then starts the main containers only after it";

/// Every well-known sidecar. Names and images come from each project's injector or
/// documented manifests.
/// The fields an entry shares with any sidecar the catalog does not know better; each entry
/// below states only what is its own.
const GENERIC: CatalogEntry = CatalogEntry {
    id: "",
    product: "",
    names: &[],
    images: &[],
    image_needs_agent: false,
    ports: &[],
    job_remediation: GENERIC_JOB_REMEDIATION,
    ordering_remediation: GENERIC_ORDERING_REMEDIATION,
    native_remediation: GENERIC_NATIVE_REMEDIATION,
    redirect: None,
    drain_hook: &[],
    signal: UNKNOWN_SIGNAL,
};

/// A signal the catalog has not established.
const UNKNOWN_SIGNAL: Signal =
    Signal { port: None, path: "", default_on: None, switch: "", blindspot: Blindspot::None };

pub static CATALOG: &[CatalogEntry] = &[
    CatalogEntry {
        id: "istio",
        product: "Istio",
        names: &["istio-proxy"],
        images: &[ImageRule::Last("proxyv2")],
        // 15000 admin, 15020 merged metrics and app probes, 15021 health, 15090 Envoy metrics.
        ports: &[15000, 15020, 15021, 15090],
        job_remediation: "annotate the Pod template with sidecar.istio.io/nativeSidecar: \"true\" (or set ENABLE_NATIVE_SIDECARS=true mesh-wide) so istio-proxy runs as a native sidecar and stops when the Job's containers finish; Istio 1.27 and later do this by default once every node runs Kubernetes 1.33 or later, so a legacy istio-proxy there means it was turned off",
        ordering_remediation: "set holdApplicationUntilProxyStarts: true (annotation proxy.istio.io/config: '{\"holdApplicationUntilProxyStarts\": true}', or in meshConfig.defaultConfig) so the app starts only once the proxy is ready",
        native_remediation: "annotate the Pod template with sidecar.istio.io/nativeSidecar: \"true\" (or set ENABLE_NATIVE_SIDECARS=true mesh-wide) so istio-proxy runs as a native sidecar, started before the app and stopped after it; Istio 1.27 and later do this by default once every node runs Kubernetes 1.33 or later, so a legacy istio-proxy there means it was turned off",
        redirect: Some(Redirect {
            iptables_init: "istio-init",
            cni_validator: "istio-validation",
            remediation: "declare it after istio-proxy (Istio's injector puts istio-proxy before the app's init containers, so something placed this one ahead of it), run it as the proxy's user (runAsUser: 1337), or exclude its destinations with the annotation traffic.sidecar.istio.io/excludeOutboundIPRanges or excludeOutboundPorts",
        }),
        drain_hook: &["pilot-agent", "request", "POST", "drain"],
        // istio.io/latest/docs/ops/integrations/prometheus: the agent merges Envoy's and the
        // app's metrics on :15020/stats/prometheus unless meshConfig.enablePrometheusMerge or the
        // Pod annotation says false (the injector reads it with strconv.ParseBool); Envoy's own
        // :15090/stats/prometheus stays on either way.
        signal: Signal {
            port: Some(15020),
            path: "/stats/prometheus",
            default_on: Some(true),
            switch: "annotation `prometheus.istio.io/merge-metrics`",
            blindspot: Blindspot::IstioMerge,
        },
        ..GENERIC
    },
    CatalogEntry {
        id: "linkerd",
        product: "Linkerd",
        names: &["linkerd-proxy"],
        images: &[ImageRule::Suffix("linkerd/proxy")],
        // 4191 admin (/live, /ready, /metrics).
        ports: &[4191],
        job_remediation: "annotate the Pod template with config.linkerd.io/proxy-enable-native-sidecar: \"true\" (on Linkerd 2.19 config.beta.linkerd.io/proxy-enable-native-sidecar, on 2.15 to 2.18 config.alpha.linkerd.io/proxy-enable-native-sidecar) so linkerd-proxy runs as a native sidecar and stops when the Job's containers finish; Linkerd 2.20 and later do this by default (proxy.nativeSidecar), so a legacy linkerd-proxy there means it was turned off",
        ordering_remediation: "keep config.linkerd.io/proxy-await: enabled (the default) so the app starts only once the proxy is ready",
        native_remediation: "annotate the Pod template with config.linkerd.io/proxy-enable-native-sidecar: \"true\" (on Linkerd 2.19 config.beta.linkerd.io/proxy-enable-native-sidecar, on 2.15 to 2.18 config.alpha.linkerd.io/proxy-enable-native-sidecar) so linkerd-proxy runs as a native sidecar, started before the app and stopped after it; Linkerd 2.20 and later do this by default (proxy.nativeSidecar), so a legacy linkerd-proxy there means it was turned off",
        redirect: Some(Redirect {
            iptables_init: "linkerd-init",
            cni_validator: "linkerd-network-validator",
            remediation: "declare it after linkerd-proxy (Linkerd's injector puts the native proxy right after linkerd-init or linkerd-network-validator, so something placed this one ahead of it), run it as the proxy's user (runAsUser: 2102 by default), or skip its ports with the annotation config.linkerd.io/skip-outbound-ports",
        }),
        // linkerd.io/2/reference/proxy-metrics: the proxy's admin server serves /metrics on
        // :4191 always; no setting of the Pod turns it off.
        signal: Signal { port: Some(4191), path: "/metrics", default_on: Some(true), switch: "none (always on)", blindspot: Blindspot::None },
        ..GENERIC
    },
    CatalogEntry {
        id: "envoy",
        product: "Envoy",
        names: &["envoy"],
        images: &[
            ImageRule::Suffix("envoyproxy/envoy"),
            ImageRule::Suffix("envoyproxy/envoy-distroless"),
            ImageRule::Suffix("envoyproxy/envoy-contrib"),
            ImageRule::Suffix("envoyproxy/envoy-dev"),
        ],
        // 9901: the admin listener of Envoy's example configurations.
        ports: &[9901],
        ordering_remediation: "make envoy a native sidecar with a startupProbe on its admin /ready endpoint",
        // envoyproxy.io docs, operations/admin: /stats/prometheus on the admin listener, which
        // exists only when the bootstrap configures `admin` (its port is the configuration's).
        signal: Signal { port: None, path: "/stats/prometheus", default_on: None, switch: "bootstrap admin listener", blindspot: Blindspot::None },
        ..GENERIC
    },
    CatalogEntry {
        id: "consul",
        product: "Consul",
        names: &["consul-dataplane", "envoy-sidecar"],
        images: &[ImageRule::Suffix("hashicorp/consul-dataplane")],
        job_remediation: "have the Job's container ask consul-dataplane to shut down when it is done, through Consul's proxy lifecycle graceful-shutdown endpoint (consul-k8s injects it as a regular container; native injection is requested in hashicorp/consul-k8s#3919)",
        ..GENERIC
    },
    CatalogEntry {
        id: "kuma",
        product: "Kuma / Kong Mesh",
        names: &["kuma-sidecar"],
        images: &[ImageRule::Last("kuma-dp")],
        ports: &[9901],
        job_remediation: "let Kuma inject kuma-sidecar as a native sidecar that stops when the Job's containers finish: Kuma 2.14 and later do by default (KUMA_EXPERIMENTAL_SIDECAR_CONTAINERS), so a legacy kuma-sidecar there means it was turned off",
        native_remediation: "let Kuma inject kuma-sidecar as a native sidecar, started before the app and stopped after it: Kuma 2.14 and later do by default (KUMA_EXPERIMENTAL_SIDECAR_CONTAINERS), so a legacy kuma-sidecar there means it was turned off",
        redirect: Some(Redirect {
            iptables_init: "kuma-init",
            cni_validator: "kuma-validation",
            remediation: "declare it after kuma-sidecar (Kuma's injector prepends the native sidecar to the init containers, so something placed this one ahead of it), run it as the proxy's user (runAsUser: 5678 by default), or exclude its ports with the annotation traffic.kuma.io/exclude-outbound-ports",
        }),
        drain_hook: &["killall", "-USR2", "kuma-dp"],
        ..GENERIC
    },
    CatalogEntry {
        id: "dapr",
        product: "Dapr",
        names: &["daprd"],
        images: &[ImageRule::Last("daprd")],
        // 3500 HTTP API, 3501 health, 50001 gRPC API.
        ports: &[3500, 3501, 50001],
        job_remediation: "have the Job's container call Dapr's shutdown API (POST http://localhost:3500/v1.0/shutdown) when it is done (Dapr's injector adds daprd as a regular container; native injection is requested in dapr/dapr#9422)",
        // docs.dapr.io/operations/observability/metrics/metrics-overview: metrics on by default
        // on :9090 (dapr.io/metrics-port); dapr.io/enable-metrics: "false" opens no metrics port.
        signal: Signal {
            port: Some(9090),
            path: "/metrics",
            default_on: Some(true),
            switch: "annotation `dapr.io/enable-metrics`",
            blindspot: Blindspot::DaprAnnotation,
        },
        ..GENERIC
    },
    CatalogEntry {
        id: "vault-agent",
        product: "Vault Agent",
        names: &["vault-agent"],
        images: &[ImageRule::Suffix("hashicorp/vault")],
        image_needs_agent: true,
        job_remediation: "annotate the Pod template with vault.hashicorp.com/agent-pre-populate-only: \"true\" so only the init container renders the secrets and no agent keeps running",
        ordering_remediation: "keep the agent's init container (vault.hashicorp.com/agent-pre-populate, the default) so the secrets exist before the app starts",
        // developer.hashicorp.com/vault/docs/platform/k8s/injector/annotations: telemetry is
        // configured through vault.hashicorp.com/agent-telemetry-* (none by default) or the
        // agent's own configuration; the port of the listener serving /agent/v1/metrics is the
        // configuration's, unknown here.
        signal: Signal {
            port: None,
            path: "/agent/v1/metrics",
            default_on: Some(false),
            switch: "annotations `vault.hashicorp.com/agent-telemetry-*`",
            blindspot: Blindspot::VaultTelemetry,
        },
        ..GENERIC
    },
    CatalogEntry {
        id: "cloud-sql-proxy",
        product: "Cloud SQL Auth Proxy",
        names: &["cloud-sql-proxy"],
        images: &[ImageRule::Last("cloud-sql-proxy")],
        job_remediation: "run the proxy as a native sidecar, or start it with --quit-urls / --quitquitquit and have the Job's container call it when done",
        // GoogleCloudPlatform/cloud-sql-proxy (v2) cmd/root.go flags: --prometheus (off),
        // --health-check (off), both on --http-address (localhost) --http-port (9090).
        signal: Signal {
            port: Some(9090),
            path: "/metrics, /startup, /liveness, /readiness",
            default_on: Some(false),
            switch: "flags `--prometheus`, `--health-check`, `--http-address` (env `CSQL_PROXY_*`)",
            blindspot: Blindspot::CloudSqlProxy,
        },
        ..GENERIC
    },
    CatalogEntry {
        id: "gcsfuse",
        product: "GKE Cloud Storage FUSE",
        names: &["gke-gcsfuse-sidecar"],
        images: &[ImageRule::Last("gcs-fuse-csi-driver-sidecar-mounter")],
        job_remediation: "use a GKE version that injects the FUSE sidecar as a native sidecar (1.29 and later)",
        native_remediation: "use a GKE version that injects the FUSE sidecar as a native sidecar (1.29 and later)",
        ..GENERIC
    },
    CatalogEntry {
        id: "xray",
        product: "AWS X-Ray daemon",
        names: &["xray-daemon"],
        images: &[ImageRule::Last("aws-xray-daemon")],
        ports: &[2000],
        ..GENERIC
    },
    CatalogEntry {
        id: "fluent-bit",
        product: "Fluent Bit",
        names: &["fluent-bit"],
        images: &[ImageRule::Last("fluent-bit")],
        // 2020: the built-in HTTP server (health, metrics).
        ports: &[2020],
        // docs.fluentbit.io, administration/monitoring: /api/v1/metrics/prometheus on :2020
        // needs HTTP_Server On in its configuration file, which the Pod spec does not show.
        signal: Signal {
            port: Some(2020),
            path: "/api/v1/metrics/prometheus",
            default_on: None,
            switch: "`HTTP_Server` in its configuration file",
            blindspot: Blindspot::None,
        },
        ..GENERIC
    },
    CatalogEntry {
        id: "otel-collector",
        product: "OpenTelemetry Collector",
        // otc-container: the OpenTelemetry Operator's injected sidecar; aws-otel-collector: the
        // AWS Distro for OpenTelemetry build of the collector.
        names: &["otel-collector", "otc-container"],
        images: &[ImageRule::LastPrefix("opentelemetry-collector"), ImageRule::Last("aws-otel-collector")],
        // 13133: the health_check extension.
        ports: &[13133],
        // opentelemetry.io/docs/collector/internal-telemetry: the Collector's own metrics on
        // :8888/metrics by default (service.telemetry.metrics in its configuration file).
        signal: Signal {
            port: Some(8888),
            path: "/metrics",
            default_on: Some(true),
            switch: "`service.telemetry.metrics` in its configuration file",
            blindspot: Blindspot::None,
        },
        ..GENERIC
    },
    CatalogEntry {
        id: "oauth2-proxy",
        product: "oauth2-proxy",
        names: &["oauth2-proxy"],
        images: &[ImageRule::Last("oauth2-proxy")],
        ports: &[4180],
        ..GENERIC
    },
    CatalogEntry {
        id: "alloydb-auth-proxy",
        product: "AlloyDB Auth Proxy",
        // alloydb-proxy: the container name of Google's AlloyDB quickstart for GKE.
        names: &["alloydb-auth-proxy", "alloydb-proxy"],
        images: &[ImageRule::Last("alloydb-auth-proxy")],
        job_remediation: "run the proxy as a native sidecar, or start it with --quitquitquit and have the Job's container POST to its /quitquitquit endpoint when done",
        ..GENERIC
    },
    CatalogEntry {
        id: "git-sync",
        product: "git-sync",
        names: &["git-sync"],
        images: &[ImageRule::Last("git-sync")],
        job_remediation: "when the Job needs the repository only once, run git-sync as a plain init container with --one-time (GITSYNC_ONE_TIME=true) instead; otherwise declare it in initContainers with restartPolicy: Always",
        ordering_remediation: "run a --one-time git-sync init container before it (as Apache Airflow's chart does) so the repository exists before the app starts",
        // kubernetes/git-sync README (v4 manual): --http-bind (GITSYNC_HTTP_BIND) opens the
        // endpoint ("If not specified, the HTTP endpoint is not enabled"); --http-metrics
        // (GITSYNC_HTTP_METRICS) serves /metrics there, a v4 default of false (v3: true).
        signal: Signal {
            port: None,
            path: "/metrics",
            default_on: Some(false),
            switch: "flags `--http-bind`, `--http-metrics` (env `GITSYNC_*`)",
            blindspot: Blindspot::GitSync,
        },
        ..GENERIC
    },
];

impl ImageRule {
    /// Whether a repository path (no registry, tag or digest) matches.
    pub fn matches(self, path: &str) -> bool {
        let last = path.rsplit('/').next().unwrap_or(path);
        match self {
            ImageRule::Last(want) => last == want,
            ImageRule::LastPrefix(want) => last.starts_with(want),
            ImageRule::Suffix(want) => path == want || path.strip_suffix(want).is_some_and(|rest| rest.ends_with('/')),
        }
    }
}

/// An image reference's repository path: without digest, tag and registry host
/// (`gcr.io/istio-release/proxyv2:1.22.0` → `istio-release/proxyv2`).
pub(crate) fn repository_path(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    // A tag follows the last ':' after the last '/' (an earlier ':' is a registry port).
    let tag_start = without_digest
        .rfind(':')
        .filter(|colon| without_digest[colon + 1..].find('/').is_none())
        .unwrap_or(without_digest.len());
    let name = &without_digest[..tag_start];
    // The first segment is a registry when it has a '.' or ':' or is `localhost`, as Docker
    // decides it.
    match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => rest,
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_paths_drop_registry_tag_and_digest() {
        for (image, path) in [
            ("docker.io/istio/proxyv2:1.22.0", "istio/proxyv2"),
            ("gcr.io/istio-release/proxyv2:1.22.0", "istio-release/proxyv2"),
            ("cr.l5d.io/linkerd/proxy:stable-2.14.10", "linkerd/proxy"),
            ("envoyproxy/envoy:v1.30.1", "envoyproxy/envoy"),
            ("registry:5000/envoyproxy/envoy", "envoyproxy/envoy"),
            ("localhost/daprd@sha256:abcd", "daprd"),
            ("fluent-bit", "fluent-bit"),
        ] {
            assert_eq!(repository_path(image), path, "{image}");
        }
    }

    #[test]
    fn ids_are_unique_and_fit_a_byte() {
        assert!(CATALOG.len() < usize::from(u8::MAX));
        let mut ids: Vec<_> = CATALOG.iter().map(|e| e.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), CATALOG.len());
    }
}
