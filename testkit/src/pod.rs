//! Pods built in code, for tests that need a Pod no seed scenario ([`crate::scenario`]) has:
//! many replicas, a readiness to toggle, hostile names. Typed, so that a test says what the
//! Pod is (a native sidecar, not ready, restarted 5 times) and the builder writes what the
//! kubelet would: container statuses, the Pod's `Ready` condition, start times.
//!
//! ```
//! use sidecar_watch_testkit::pod::{Container, PodBuilder};
//! let pod = PodBuilder::new("shop", "web-1")
//!     .label("app", "web")
//!     .native_sidecar(Container::istio_proxy().ready(false))
//!     .container(Container::new("app", "shop/web:1.0"))
//!     .json();
//! assert_eq!(pod["status"]["conditions"][0]["status"], "False");
//! ```

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde_json::{json, Value};

/// When a built Pod was created, unless [`PodBuilder::created`] says otherwise: the seed
/// scenarios' day, half an hour before [`crate::scenario::Scenario::NOW`].
pub const CREATED: &str = "2025-06-03T10:00:00Z";

/// A Pod under construction: metadata, containers, and the status the kubelet would write.
#[derive(Clone, Debug)]
pub struct PodBuilder {
    namespace: String,
    name: String,
    uid: String,
    labels: BTreeMap<String, String>,
    created: String,
    owner: Option<(String, String)>,
    native_sidecars: Vec<Container>,
    containers: Vec<Container>,
}

impl PodBuilder {
    /// A Pod `namespace/name` with no containers yet, created at [`CREATED`]; its UID is
    /// `uid-<namespace>-<name>` unless [`PodBuilder::uid`] sets one.
    pub fn new(namespace: &str, name: &str) -> Self {
        PodBuilder {
            namespace: namespace.to_string(),
            name: name.to_string(),
            uid: format!("uid-{namespace}-{name}"),
            labels: BTreeMap::new(),
            created: CREATED.to_string(),
            owner: None,
            native_sidecars: Vec::new(),
            containers: Vec::new(),
        }
    }

    /// Sets the UID (which segment of the operator's index the Pod lands in follows from it).
    pub fn uid(mut self, uid: impl Into<String>) -> Self {
        self.uid = uid.into();
        self
    }

    /// Adds a label.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_string(), value.to_string());
        self
    }

    /// Sets when the Pod was created, started and its containers began to run (RFC 3339).
    pub fn created(mut self, at: &str) -> Self {
        self.created = at.to_string();
        self
    }

    /// Makes `kind`/`name` the Pod's controller (a `ReplicaSet`, a `Job`).
    pub fn owner(mut self, kind: &str, name: &str) -> Self {
        self.owner = Some((kind.to_string(), name.to_string()));
        self
    }

    /// Adds a native sidecar: an init container with `restartPolicy: Always`.
    pub fn native_sidecar(mut self, container: Container) -> Self {
        self.native_sidecars.push(container);
        self
    }

    /// Adds a container to `spec.containers`: a main container, or a legacy sidecar.
    pub fn container(mut self, container: Container) -> Self {
        self.containers.push(container);
        self
    }

    /// The Pod as the API server serves it.
    pub fn json(&self) -> Value {
        let mut metadata = json!({
            "name": self.name, "namespace": self.namespace, "uid": self.uid,
            "labels": self.labels, "creationTimestamp": self.created,
        });
        if let Some((kind, name)) = &self.owner {
            metadata["ownerReferences"] = json!([{"apiVersion": owner_api_version(kind), "kind": kind,
                "name": name, "uid": format!("uid-{name}"), "controller": true}]);
        }
        let native: Vec<Value> = self.native_sidecars.iter().map(|c| c.spec(true)).collect();
        let containers: Vec<Value> = self.containers.iter().map(|c| c.spec(false)).collect();
        let all_ready = self.native_sidecars.iter().chain(&self.containers).all(|c| c.ready);
        let mut spec = json!({"containers": containers});
        if !native.is_empty() {
            spec["initContainers"] = Value::Array(native);
        }
        let mut status = json!({
            "phase": "Running",
            "startTime": self.created,
            "conditions": [{"type": "Ready", "status": if all_ready { "True" } else { "False" },
                            "lastTransitionTime": self.created}],
            "containerStatuses": self.containers.iter().map(|c| c.status(&self.created)).collect::<Vec<_>>(),
        });
        if !self.native_sidecars.is_empty() {
            status["initContainerStatuses"] =
                self.native_sidecars.iter().map(|c| c.status(&self.created)).collect::<Vec<_>>().into();
        }
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec, "status": status})
    }

    /// The Pod decoded as `T` (the operator's `SlimPod`, k8s-openapi's `Pod`).
    ///
    /// # Panics
    /// When the Pod does not decode as `T`: the builder and `T` disagree, a bug of the test.
    pub fn decode<T: DeserializeOwned>(&self) -> T {
        serde_json::from_value(self.json()).unwrap_or_else(|e| panic!("Pod {}/{}: {e}", self.namespace, self.name))
    }
}

fn owner_api_version(kind: &str) -> &'static str {
    match kind {
        "Job" | "CronJob" => "batch/v1",
        "ReplicaSet" | "Deployment" | "StatefulSet" | "DaemonSet" => "apps/v1",
        _ => "v1",
    }
}

/// How a container's probes look for the sidecar.
#[derive(Clone, Debug, PartialEq)]
pub enum Probes {
    /// No readiness and no startup probe (the `no-readiness-probe` check fires).
    None,
    /// Readiness and startup probes: HTTP GET `path` on `port`.
    Http { path: String, port: u16 },
    /// Readiness and startup probes that run `true`.
    Exec,
}

/// What the container is doing now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Run {
    /// Running since the Pod's creation.
    Running,
    /// Waiting in `CrashLoopBackOff` (not ready).
    CrashLooping,
}

/// One container of a [`PodBuilder`]: its spec and the status the kubelet reports for it.
#[derive(Clone, Debug)]
pub struct Container {
    name: String,
    image: String,
    probes: Probes,
    cpu_request: Option<String>,
    ready: bool,
    restarts: u32,
    run: Run,
}

impl Container {
    /// A container with no probes and no resources, running and ready since the Pod's
    /// creation, never restarted.
    pub fn new(name: &str, image: &str) -> Self {
        Container {
            name: name.to_string(),
            image: image.to_string(),
            probes: Probes::None,
            cpu_request: None,
            ready: true,
            restarts: 0,
            run: Run::Running,
        }
    }

    /// Istio's proxy as its injector writes it (as a native sidecar it passes every static
    /// check): `istio/proxyv2:1.22.0`, readiness and startup probes on `/healthz/ready:15021`,
    /// a CPU request.
    pub fn istio_proxy() -> Self {
        Container::new("istio-proxy", "istio/proxyv2:1.22.0")
            .probes(Probes::Http { path: "/healthz/ready".into(), port: 15021 })
            .cpu_request("10m")
    }

    /// Sets the probes.
    pub fn probes(mut self, probes: Probes) -> Self {
        self.probes = probes;
        self
    }

    /// Requests this much CPU (`10m`).
    pub fn cpu_request(mut self, cpu: &str) -> Self {
        self.cpu_request = Some(cpu.to_string());
        self
    }

    /// Sets whether the container is ready.
    pub fn ready(mut self, ready: bool) -> Self {
        self.ready = ready;
        self
    }

    /// Sets the container's `restartCount`.
    pub fn restarts(mut self, restarts: u32) -> Self {
        self.restarts = restarts;
        self
    }

    /// Sets what the container does; a crash-looping one is not ready.
    pub fn run(mut self, run: Run) -> Self {
        self.run = run;
        self.ready &= run == Run::Running;
        self
    }

    fn spec(&self, native: bool) -> Value {
        let mut spec = json!({"name": self.name, "image": self.image});
        if native {
            spec["restartPolicy"] = json!("Always");
        }
        let probe = match &self.probes {
            Probes::None => None,
            Probes::Http { path, port } => Some(json!({"httpGet": {"path": path, "port": port}})),
            Probes::Exec => Some(json!({"exec": {"command": ["true"]}})),
        };
        if let Some(probe) = probe {
            spec["readinessProbe"] = probe.clone();
            spec["startupProbe"] = probe;
        }
        if let Some(cpu) = &self.cpu_request {
            spec["resources"] = json!({"requests": {"cpu": cpu}});
        }
        spec
    }

    fn status(&self, since: &str) -> Value {
        let state = match self.run {
            Run::Running => json!({"running": {"startedAt": since}}),
            Run::CrashLooping => json!({"waiting": {"reason": "CrashLoopBackOff"}}),
        };
        json!({"name": self.name, "image": self.image, "imageID": "", "ready": self.ready,
               "started": self.run == Run::Running, "restartCount": self.restarts, "state": state})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ready_condition_follows_every_container() {
        let pod = |proxy: Container| {
            PodBuilder::new("shop", "web-1")
                .native_sidecar(proxy)
                .container(Container::new("app", "shop/web:1.0"))
                .container(Container::new("log-sidecar", "fluent/fluent-bit:3.0"))
                .json()
        };
        assert_eq!(pod(Container::istio_proxy())["status"]["conditions"][0]["status"], "True");
        let looping = pod(Container::istio_proxy().restarts(4).run(Run::CrashLooping));
        assert_eq!(looping["status"]["conditions"][0]["status"], "False");
        let proxy = &looping["status"]["initContainerStatuses"][0];
        assert_eq!(proxy["state"]["waiting"]["reason"], "CrashLoopBackOff");
        assert_eq!((proxy["ready"].as_bool(), proxy["restartCount"].as_u64()), (Some(false), Some(4)));
        assert_eq!(looping["spec"]["initContainers"][0]["restartPolicy"], "Always");
        assert_eq!(looping["spec"]["containers"][1]["name"], "log-sidecar");
    }

    #[test]
    fn metadata_as_set() {
        let pod = PodBuilder::new("batch", "report-1").uid("u1").label("app", "report").owner("Job", "report").json();
        assert_eq!(pod["metadata"]["uid"], "u1");
        assert_eq!(pod["metadata"]["labels"]["app"], "report");
        assert_eq!(pod["metadata"]["ownerReferences"][0]["apiVersion"], "batch/v1");
        assert!(pod["spec"].get("initContainers").is_none());
    }
}
