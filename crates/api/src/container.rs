//! [`SlimContainer`]: one declared container of a [`SlimPod`](super::SlimPod), decoded with only
//! the facts the rules read: probes, ports, resources, hooks, and how the kubelet restarts it
//! (`restartPolicy`, `restartPolicyRules`, `resizePolicy`). Fields the engine does not use
//! (`lifecycle.stopSignal`, volume mounts, every `env` variable but a few, …) are skipped by the parser, so a field a
//! newer Kubernetes adds never fails a Pod.

use std::borrow::Cow;

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

use super::field_decoders::null_as_default;

/// One declared container: the facts the misconfiguration checks need.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SlimContainer {
    /// The container's name.
    #[serde(deserialize_with = "null_as_default")]
    pub name: String,
    /// The image reference.
    pub image: Option<String>,
    /// `Always` on a native sidecar; on a regular container (KEP-5307) it only says when the
    /// kubelet restarts it, and never makes it a sidecar.
    pub restart_policy: Option<String>,
    /// Declared ports.
    #[serde(deserialize_with = "null_as_default")]
    pub ports: Vec<SlimPort>,
    /// Whether a readiness probe is declared (its body is not needed).
    pub readiness_probe: Option<IgnoredAny>,
    /// Whether a startup probe is declared.
    pub startup_probe: Option<IgnoredAny>,
    /// The liveness probe's target (the `main-probe-on-sidecar` check reads it).
    pub liveness_probe: Option<SlimProbe>,
    /// Requests and limits: whether any is declared, and the `cpu` and `memory` ones.
    #[serde(deserialize_with = "null_as_default")]
    pub resources: SlimResources,
    /// Whether a `postStart` hook is declared: the kubelet waits for it before starting the
    /// next container, as it waits for a startup probe.
    #[serde(deserialize_with = "null_as_default")]
    pub lifecycle: SlimLifecycle,
    /// `restartPolicyRules` (KEP-5307, KEP-5532): exit codes on which the kubelet restarts the
    /// container, or every container of the Pod, whatever `restartPolicy` says.
    #[serde(deserialize_with = "null_as_default")]
    pub restart_policy_rules: Vec<SlimRestartRule>,
    /// `resizePolicy` (KEP-1287): which resources the kubelet applies by restarting it.
    #[serde(deserialize_with = "null_as_default")]
    pub resize_policy: Vec<SlimResizePolicy>,
    /// `securityContext.runAsUser`: a mesh's traffic redirection spares its proxy's user.
    #[serde(deserialize_with = "null_as_default")]
    pub security_context: SlimSecurityContext,
    /// Whether `command` mentions the word `agent`, and the signal switches it sets (see
    /// [`CommandWords`](crate::CommandWords)).
    pub command: crate::CommandWords,
    /// The same of `args`.
    pub args: crate::CommandWords,
    /// The signal switches `env` sets; every other variable is skipped.
    pub env: crate::EnvSwitches,
}

impl SlimContainer {
    /// The switches of its own signal that the container sets: flags in `command` or `args`
    /// (the later word wins) over `env`.
    pub fn signal_switches(&self) -> crate::Switches {
        self.args.switches.over(self.command.switches).over(self.env.0)
    }
}

/// `lifecycle`: whether a `postStart` hook exists, and what the `preStop` hook does.
/// `stopSignal` (KEP-4960) is not read: no rule depends on which signal stops a container.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SlimLifecycle {
    /// The hook's body is not needed.
    pub post_start: Option<IgnoredAny>,
    /// The `preStop` hook: the kubelet runs a native sidecar's as soon as the Pod starts
    /// terminating, while the main containers still run.
    pub pre_stop: Option<SlimHandler>,
}

/// A lifecycle handler: which kind it is, and an `exec` hook's command (to recognise the hooks
/// mesh injectors write).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SlimHandler {
    /// `exec`.
    pub exec: Option<SlimExec>,
    /// `httpGet`.
    pub http_get: Option<IgnoredAny>,
    /// `tcpSocket` (accepted by the API, never run by the kubelet).
    pub tcp_socket: Option<IgnoredAny>,
    /// `sleep`: only waits, never touches the container's process.
    pub sleep: Option<IgnoredAny>,
}

impl SlimHandler {
    /// Whether running the hook can act on the container (stop, drain or reconfigure it): an
    /// `exec` or `httpGet` handler can, a `sleep` only delays, and the kubelet does not run
    /// `tcpSocket` hooks at all.
    pub fn can_act(&self) -> bool {
        self.exec.is_some() || self.http_get.is_some()
    }
}

/// `exec`: the command run in the container.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct SlimExec {
    /// The command and its arguments.
    #[serde(default, deserialize_with = "null_as_default")]
    pub command: Vec<String>,
}

/// One of `restartPolicyRules`. Action and operator are kept as text: a value a newer
/// Kubernetes adds matches nothing here, as the kubelet skips rules it does not know.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SlimRestartRule {
    /// `Restart` or `RestartAllContainers`.
    #[serde(deserialize_with = "null_as_default")]
    pub action: String,
    /// The exit codes the rule applies to.
    pub exit_codes: Option<SlimExitCodes>,
}

/// `exitCodes`: `operator` `In` or `NotIn` over `values`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct SlimExitCodes {
    /// `In` or `NotIn`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub operator: String,
    /// The exit codes.
    #[serde(default, deserialize_with = "null_as_default")]
    pub values: Vec<i32>,
}

/// One of `resizePolicy`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlimResizePolicy {
    /// `cpu` or `memory`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub resource_name: String,
    /// `NotRequired` (the default) or `RestartContainer`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub restart_policy: String,
}

/// A container's or the Pod's `securityContext`: only the user it runs as.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SlimSecurityContext {
    /// `runAsUser`.
    pub run_as_user: Option<i64>,
}

/// A probe: where it sends its request. Exec probes have no target.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SlimProbe {
    /// `httpGet`.
    pub http_get: Option<SlimProbeTarget>,
    /// `tcpSocket`.
    pub tcp_socket: Option<SlimProbeTarget>,
    /// `grpc`.
    pub grpc: Option<SlimProbeTarget>,
}

impl SlimProbe {
    /// The probe's target, whichever handler it uses.
    pub fn target(&self) -> Option<&SlimProbeTarget> {
        self.http_get.as_ref().or(self.tcp_socket.as_ref()).or(self.grpc.as_ref())
    }
}

/// A probe handler's port, host and (HTTP) path.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct SlimProbeTarget {
    /// A number or the name of a declared port; anything else is read as absent.
    #[serde(deserialize_with = "lenient_port")]
    pub port: Option<PortRef>,
    /// Another host than the Pod's IP, when set.
    pub host: Option<String>,
    /// The HTTP path.
    pub path: Option<String>,
}

/// A port given by number or by the name of a container port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortRef {
    /// `port: 15021`.
    Number(i32),
    /// `port: http-admin`.
    Name(String),
}

/// The API validates probe ports, but a hand-written dump need not be valid: an odd port
/// makes the probe target unknown rather than the Pod undecodable.
fn lenient_port<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<PortRef>, D::Error> {
    Ok(match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::Number(n) => n.as_i64().and_then(|n| i32::try_from(n).ok()).map(PortRef::Number),
        serde_json::Value::String(s) => Some(match s.parse::<i32>() {
            Ok(n) => PortRef::Number(n),
            Err(_) => PortRef::Name(s),
        }),
        _ => None,
    })
}

/// A declared container port.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SlimPort {
    /// The port number.
    pub container_port: i32,
    /// The port's name, which probes may use instead of the number.
    pub name: Option<String>,
    /// `TCP` when absent.
    pub protocol: Option<String>,
}

/// `resources`: whether anything is requested or limited, and the `cpu` and `memory`
/// quantities as written (the engine reads them; a value that is no quantity is ignored there).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct SlimResources {
    /// `requests`.
    pub requests: SlimResourceList,
    /// `limits`.
    pub limits: SlimResourceList,
}

/// A `requests` or `limits` map: whether it has any entry, and its `cpu` and `memory`
/// quantities as text. Read without allocating the other entries; a value of another type
/// than a string or a number (a hand-written dump) is read as absent, never fails the Pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlimResourceList {
    /// The map has at least one entry (of any resource).
    pub any: bool,
    /// `cpu`, as written (`"100m"`, `"1"`, `"1e3"`).
    pub cpu: Option<Box<str>>,
    /// `memory`, as written (`"128Mi"`, `"1G"`).
    pub memory: Option<Box<str>>,
}

impl<'de> Deserialize<'de> for SlimResourceList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor;
        impl<'de> Visitor<'de> for EntriesVisitor {
            type Value = SlimResourceList;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object or null")
            }
            fn visit_unit<E>(self) -> Result<SlimResourceList, E> {
                Ok(SlimResourceList::default())
            }
            fn visit_none<E>(self) -> Result<SlimResourceList, E> {
                Ok(SlimResourceList::default())
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<SlimResourceList, D::Error> {
                d.deserialize_map(self)
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<SlimResourceList, M::Error> {
                let mut list = SlimResourceList::default();
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    list.any = true;
                    match &*key {
                        "cpu" => list.cpu = map.next_value::<QuantityText>()?.0,
                        "memory" => list.memory = map.next_value::<QuantityText>()?.0,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(list)
            }
        }
        deserializer.deserialize_option(EntriesVisitor)
    }
}

/// A quantity's text: a string as is, a number as JSON writes it (a hand-written manifest's
/// `cpu: 2`), anything else absent.
struct QuantityText(Option<Box<str>>);

impl<'de> Deserialize<'de> for QuantityText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(QuantityText(match serde_json::Value::deserialize(deserializer)? {
            serde_json::Value::String(s) => Some(s.into()),
            serde_json::Value::Number(n) => Some(n.to_string().into()),
            _ => None,
        }))
    }
}
