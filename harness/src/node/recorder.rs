//! The node suite's recorder of the statuses the real kubelet writes
//! (`harness/node-transitions/`), which the simulated kubelet's replay reads
//! ([`crate::kubelet`], harness/src/kubelet/recorded.rs).

use std::path::Path;

use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use serde_json::{json, Value};

/// Records every status the kubelet writes for a namespace's Pods while it lives ([`record`]);
/// dropped, it stops.
pub struct Recorder(tokio::task::JoinHandle<()>);

impl Drop for Recorder {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn summary(pod: &Pod) -> Value {
    let status = pod.status.clone().unwrap_or_default();
    let containers = |list: Option<Vec<k8s_openapi::api::core::v1::ContainerStatus>>| -> Vec<Value> {
        list.into_iter()
            .flatten()
            .map(|c| {
                let state = c.state.unwrap_or_default();
                let last = c.last_state.unwrap_or_default().terminated;
                json!({
                    "name": c.name, "ready": c.ready, "started": c.started, "restarts": c.restart_count,
                    "running": state.running.and_then(|r| r.started_at).map(|t| t.0.to_string()),
                    "waiting": state.waiting.and_then(|w| w.reason),
                    "terminated": state.terminated.map(|t| json!({"reason": t.reason, "exit": t.exit_code,
                        "startedAt": t.started_at.map(|x| x.0.to_string()), "finishedAt": t.finished_at.map(|x| x.0.to_string())})),
                    "last": last.map(|t| json!({"reason": t.reason, "exit": t.exit_code,
                        "finishedAt": t.finished_at.map(|x| x.0.to_string())})),
                })
            })
            .collect()
    };
    json!({
        "at": k8s_openapi::jiff::Timestamp::now().to_string(),
        "pod": pod.metadata.name, "rv": pod.metadata.resource_version,
        "deleting": pod.metadata.deletion_timestamp.is_some(),
        "phase": status.phase,
        "conditions": status.conditions.into_iter().flatten()
            .map(|c| format!("{}={}@{}", c.type_, c.status, c.last_transition_time.map(|t| t.0.to_string()).unwrap_or_default()))
            .collect::<Vec<_>>(),
        "init": containers(status.init_container_statuses),
        "containers": containers(status.container_statuses),
    })
}

/// How long each watch of [`record`] lasts, ended by the server: shorter than the client's
/// read timeout ([`crate::env::API_READ_TIMEOUT`]), so that a quiet namespace's watch ends
/// and is resumed rather than failing on it.
const WATCH_SECONDS: u32 = 50;

/// Records every status the kubelet writes for the Pods of `ns`, one JSON line each, to
/// `<dir>/<ns>.jsonl` (the node suite passes `<target tmp>/node-transitions`): what the
/// simulated kubelet (`harness/src/kubelet/`) is compared with (harness/README.md).
pub fn record(client: kube::Client, ns: &str, dir: &Path) -> Recorder {
    use futures::StreamExt;
    use std::io::Write;
    let dir = dir.to_path_buf();
    let path = dir.join(format!("{ns}.jsonl"));
    let pods: Api<Pod> = Api::namespaced(client, ns);
    Recorder(tokio::spawn(async move {
        let _ = std::fs::create_dir_all(&dir);
        let Ok(mut file) = std::fs::File::create(&path) else { return };
        let mut last: std::collections::HashMap<String, Value> = Default::default();
        let mut events = std::pin::pin!(kube::runtime::watcher(
            pods,
            kube::runtime::watcher::Config::default().timeout(WATCH_SECONDS)
        ));
        while let Some(event) = events.next().await {
            let Ok(kube::runtime::watcher::Event::Apply(pod) | kube::runtime::watcher::Event::InitApply(pod)) = event
            else {
                continue;
            };
            let mut line = summary(&pod);
            let name = pod.metadata.name.clone().unwrap_or_default();
            // Only what changed in the status is a transition (not a label or an annotation).
            let mut compared = line.clone();
            compared["at"] = Value::Null;
            compared["rv"] = Value::Null;
            if last.get(&name) == Some(&compared) {
                continue;
            }
            last.insert(name, compared);
            line["at"] = json!(k8s_openapi::jiff::Timestamp::now().to_string());
            let _ = writeln!(file, "{line}");
        }
    }))
}
