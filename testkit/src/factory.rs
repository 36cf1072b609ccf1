//! Realistic Pods for the benchmark and the tests of scale, built from two seed scenarios
//! ([`Scenario::HealthyMesh`], [`Scenario::TwoSidecars`]), and the status
//! changes the benchmark makes to them (kubelet-like: readiness flips, restarts, OOM kills).
//!
//! Layout: "deployments" of [`REPLICAS`] Pods sharing `app` and `pod-template-hash`, spread
//! round-robin over [`NAMESPACES`] namespaces. Every third deployment uses the two-sidecar
//! shape (main + legacy `log-sidecar` + native `istio-proxy`), the others the mesh shape
//! (main + native `istio-proxy`); every fourth has a second main container. 2 % of the Pods
//! have a not-ready `istio-proxy`, 1 % a restarted one; the rest are healthy.

use serde_json::{json, Value};

use crate::scenario::Scenario;

/// Namespaces the Pods are spread over.
pub const NAMESPACES: usize = 50;
/// Pods per deployment.
pub const REPLICAS: usize = 20;
/// The native sidecar every Pod has.
pub const MESH_SIDECAR: &str = "istio-proxy";

/// Name of benchmark namespace `i`.
pub fn namespace(i: usize) -> String {
    format!("bench-{i:02}")
}

/// The benchmark's policies, selecting disjoint sets of Pods: a ClusterSidecarPolicy with
/// defaults (native sidecars, every rule) for the mesh-only Pods, and one for the Pods with
/// the legacy logging sidecar that also names `log-sidecar` and turns off the checks this
/// known legacy sidecar would always fail (misconfiguration, startup order), as a team would.
pub fn policies() -> Vec<Value> {
    vec![
        json!({
            "apiVersion": "sidecarwatch.io/v1alpha1", "kind": "ClusterSidecarPolicy",
            "metadata": {"name": "platform"},
            "spec": {"selector": {"matchExpressions": [{"key": "logging", "operator": "DoesNotExist"}]}}
        }),
        json!({
            "apiVersion": "sidecarwatch.io/v1alpha1", "kind": "ClusterSidecarPolicy",
            "metadata": {"name": "legacy-logging"},
            "spec": {
                "selector": {"matchLabels": {"logging": "fluent-bit"}},
                "sidecars": {"native": true, "names": ["log-sidecar"]},
                "rules": {"misconfiguration": {"enabled": false}, "startupOrder": {"enabled": false}}
            }
        }),
    ]
}

/// Whether [`PodFactory::pod`]`(i)` is healthy: every container ready, never restarted.
pub fn healthy(i: usize) -> bool {
    i % 100 >= 3
}

/// Builds Pods.
#[derive(Debug, Clone)]
pub struct PodFactory {
    mesh: Value,
    two: Value,
}

impl Default for PodFactory {
    fn default() -> Self {
        Self::new()
    }
}

fn hex(mut x: u64, len: usize) -> String {
    const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut s = String::with_capacity(len);
    for _ in 0..len {
        s.push(ALPHA[(x % ALPHA.len() as u64) as usize] as char);
        x = (x / ALPHA.len() as u64) ^ x.rotate_left(17).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    s
}

fn uid(seed: u64) -> String {
    let a = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5bd1_e995;
    let b = a.rotate_left(29).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        a >> 32,
        a & 0xffff,
        (b >> 52) & 0xfff,
        (b >> 40) & 0xfff,
        b & 0xffff_ffff_ffff
    )
}

fn managed_fields(owner_uid: &str, main: &str) -> Value {
    json!([
        {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
         "time": "2025-06-03T10:00:00Z", "fieldsType": "FieldsV1",
         "fieldsV1": {"f:metadata": {"f:generateName": {}, "f:labels": {".": {}, "f:app": {}, "f:pod-template-hash": {},
            "f:security.istio.io/tlsMode": {}, "f:service.istio.io/canonical-name": {}, "f:service.istio.io/canonical-revision": {}},
            "f:ownerReferences": {".": {}, format!("k:{{\"uid\":\"{owner_uid}\"}}"): {}}},
          "f:spec": {"f:containers": {format!("k:{{\"name\":\"{main}\"}}"): {".": {}, "f:image": {}, "f:imagePullPolicy": {},
            "f:livenessProbe": {".": {}, "f:failureThreshold": {}, "f:httpGet": {".": {}, "f:path": {}, "f:port": {}, "f:scheme": {}}},
            "f:name": {}, "f:ports": {}, "f:readinessProbe": {}, "f:resources": {".": {}, "f:limits": {}, "f:requests": {}},
            "f:terminationMessagePath": {}, "f:terminationMessagePolicy": {}, "f:volumeMounts": {}}},
            "f:dnsPolicy": {}, "f:enableServiceLinks": {}, "f:initContainers": {}, "f:restartPolicy": {}, "f:schedulerName": {},
            "f:securityContext": {}, "f:terminationGracePeriodSeconds": {}, "f:volumes": {}}}},
        {"manager": "kubelet", "operation": "Update", "apiVersion": "v1", "time": "2025-06-03T10:00:12Z",
         "fieldsType": "FieldsV1", "subresource": "status",
         "fieldsV1": {"f:status": {"f:conditions": {"k:{\"type\":\"ContainersReady\"}": {".": {}, "f:lastProbeTime": {}, "f:lastTransitionTime": {}, "f:status": {}, "f:type": {}},
            "k:{\"type\":\"Initialized\"}": {".": {}, "f:lastProbeTime": {}, "f:lastTransitionTime": {}, "f:status": {}, "f:type": {}},
            "k:{\"type\":\"Ready\"}": {".": {}, "f:lastProbeTime": {}, "f:lastTransitionTime": {}, "f:status": {}, "f:type": {}}},
            "f:containerStatuses": {}, "f:hostIP": {}, "f:hostIPs": {}, "f:initContainerStatuses": {}, "f:phase": {},
            "f:podIP": {}, "f:podIPs": {".": {}, "k:{\"ip\":\"10.244.2.17\"}": {".": {}, "f:ip": {}}}, "f:startTime": {}}}}
    ])
}

impl PodFactory {
    /// Parses the fixtures and makes them healthy templates.
    pub fn new() -> Self {
        let mesh = Scenario::HealthyMesh.pod();
        let mut two = Scenario::TwoSidecars.pod();
        // The fixture's log-sidecar fails its readiness probe; the template is healthy.
        set_ready(&mut two, "log-sidecar", true, "2025-06-03T10:00:12Z");
        Self { mesh, two }
    }

    /// Pod number `i` (deterministic; the same `i` gives the same Pod).
    pub fn pod(&self, i: usize) -> Value {
        let d = i / REPLICAS;
        let two = d.is_multiple_of(3);
        let mut pod = if two { self.two.clone() } else { self.mesh.clone() };
        let app = format!("svc-{d}");
        let hash = hex(d as u64 + 7, 9);
        let rs = format!("{app}-{hash}");
        let ns = namespace(d % NAMESPACES);
        let name = format!("{rs}-{}", hex(i as u64 * 31 + 3, 5));
        let owner_uid = uid(d as u64 ^ 0xdead_beef);
        let main_name = pod.pointer("/spec/containers/0/name").and_then(Value::as_str).unwrap_or("app").to_string();
        {
            let m = &mut pod["metadata"];
            m["name"] = json!(name);
            m["namespace"] = json!(ns);
            m["generateName"] = json!(format!("{rs}-"));
            m["uid"] = json!(uid(i as u64));
            m.as_object_mut().map(|o| o.remove("resourceVersion"));
            let mut labels = json!({
                "app": app, "pod-template-hash": hash, "security.istio.io/tlsMode": "istio",
                "service.istio.io/canonical-name": app, "service.istio.io/canonical-revision": format!("v{}", d % 4 + 1),
            });
            if two {
                labels["logging"] = json!("fluent-bit");
            }
            m["labels"] = labels;
            m["ownerReferences"][0]["name"] = json!(rs);
            m["ownerReferences"][0]["uid"] = json!(owner_uid);
            m["managedFields"] = managed_fields(&owner_uid, &main_name);
        }
        pod["spec"]["nodeName"] = json!(format!("worker-{}", i % 200));
        let ip = format!("10.{}.{}.{}", 64 + (i >> 16) % 64, (i >> 8) % 256, i % 256);
        pod["status"]["podIP"] = json!(ip);
        pod["status"]["podIPs"] = json!([{"ip": ip}]);
        if d % 4 == 1 {
            // A second main container (e.g. a worker process of the same image).
            let mut c = pod["spec"]["containers"][0].clone();
            c["name"] = json!("worker");
            c["ports"] = json!([{"containerPort": 8081, "name": "http-worker", "protocol": "TCP"}]);
            push(&mut pod["spec"]["containers"], c);
            let mut s = pod["status"]["containerStatuses"][0].clone();
            s["name"] = json!("worker");
            push(&mut pod["status"]["containerStatuses"], s);
        }
        match i % 100 {
            0 | 1 => set_ready(&mut pod, MESH_SIDECAR, false, "2025-06-03T10:20:00Z"),
            2 => {
                if let Some(s) = container_status(&mut pod, MESH_SIDECAR) {
                    s["restartCount"] = json!(5);
                    s["lastState"] = json!({"terminated": {"exitCode": 1, "reason": "Error",
                        "startedAt": "2025-06-03T10:05:00Z", "finishedAt": "2025-06-03T10:10:00Z"}});
                    s["state"] = json!({"running": {"startedAt": "2025-06-03T10:10:05Z"}});
                }
            }
            _ => {}
        }
        pod
    }
}

fn push(array: &mut Value, item: Value) {
    if let Some(a) = array.as_array_mut() {
        a.push(item);
    }
}

/// The status of container `name` (regular or init).
pub fn container_status<'a>(pod: &'a mut Value, name: &str) -> Option<&'a mut Value> {
    let status = pod.get_mut("status")?.as_object_mut()?;
    let has = |k: &str, status: &serde_json::Map<String, Value>| {
        status
            .get(k)
            .and_then(Value::as_array)
            .is_some_and(|l| l.iter().any(|s| s.get("name").and_then(Value::as_str) == Some(name)))
    };
    let key = ["containerStatuses", "initContainerStatuses"].into_iter().find(|k| has(k, status))?;
    status.get_mut(key)?.as_array_mut()?.iter_mut().find(|s| s.get("name").and_then(Value::as_str) == Some(name))
}

/// Sets a container's readiness and the Pod's Ready/ContainersReady conditions (as the
/// kubelet does; the Pod is Ready iff all its containers are).
pub fn set_ready(pod: &mut Value, container: &str, ready: bool, now: &str) {
    if let Some(s) = container_status(pod, container) {
        s["ready"] = json!(ready);
    }
    let mut unready: Vec<String> = Vec::new();
    for k in ["containerStatuses", "initContainerStatuses"] {
        for s in pod["status"][k].as_array().map(Vec::as_slice).unwrap_or_default() {
            if s["ready"].as_bool() != Some(true) && s.pointer("/state/terminated").is_none() {
                unready.push(s["name"].as_str().unwrap_or_default().to_string());
            }
        }
    }
    let all_ready = unready.is_empty();
    if let Some(conds) = pod["status"]["conditions"].as_array_mut() {
        for c in conds.iter_mut() {
            let t = c["type"].as_str().unwrap_or("");
            if t == "Ready" || t == "ContainersReady" {
                let want = if all_ready { "True" } else { "False" };
                if c["status"].as_str() != Some(want) {
                    c["lastTransitionTime"] = json!(now);
                }
                c["status"] = json!(want);
                if let Some(o) = c.as_object_mut() {
                    if all_ready {
                        o.remove("reason");
                        o.remove("message");
                    } else {
                        o.insert("reason".into(), json!("ContainersNotReady"));
                        o.insert(
                            "message".into(),
                            json!(format!("containers with unready status: [{}]", unready.join(" "))),
                        );
                    }
                }
            }
        }
    }
}

/// A container restart: `restartCount + 1`, the previous run terminated with `reason`
/// (`exit_code`) now, a new run started now (not ready yet unless `ready`).
pub fn restart(pod: &mut Value, container: &str, reason: &str, exit_code: i32, ready: bool, now: &str) {
    if let Some(s) = container_status(pod, container) {
        let count = s["restartCount"].as_i64().unwrap_or(0) + 1;
        let started = s.pointer("/state/running/startedAt").cloned().unwrap_or(json!(now));
        s["restartCount"] = json!(count);
        s["lastState"] = json!({"terminated": {"exitCode": exit_code, "reason": reason, "startedAt": started,
            "finishedAt": now, "containerID": s.get("containerID").cloned().unwrap_or(Value::Null)}});
        s["state"] = json!({"running": {"startedAt": now}});
    }
    set_ready(pod, container, ready, now);
}

/// A Pod's (namespace, name); empty strings where missing.
pub fn ns_name(pod: &Value) -> (String, String) {
    let get = |k: &str| pod["metadata"][k].as_str().unwrap_or_default().to_string();
    (get("namespace"), get("name"))
}

/// The hostile tenant's namespace.
pub const FLOOD_NAMESPACE: &str = "flood";

/// The hostile tenant's Pod: `containers` containers named `s{i}-sidecar`, never scheduled
/// (no status), labelled out of the platform policy's reach so that only the tenant's own
/// [`flood_policy`] covers it.
pub fn flood_pod(containers: usize) -> Value {
    let list: Vec<Value> = (0..containers)
        .map(|i| json!({"name": format!("s{i}-sidecar"), "image": "registry.example/flood:1.0"}))
        .collect();
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "flood", "namespace": FLOOD_NAMESPACE, "uid": uid(u64::MAX),
            "labels": {"app": "flood", "logging": "off"}},
        "spec": {"containers": list}
    })
}

/// The tenant's SidecarPolicy in its own namespace: every Pod there, every `*-sidecar`.
pub fn flood_policy() -> Value {
    json!({
        "apiVersion": "sidecarwatch.io/v1alpha1", "kind": "SidecarPolicy",
        "metadata": {"name": "flood", "namespace": FLOOD_NAMESPACE},
        "spec": {"sidecars": {"pattern": ".*-sidecar"}}
    })
}

/// JSON size of a Pod in bytes.
pub fn json_size(pod: &Value) -> usize {
    serde_json::to_vec(pod).map_or(0, |v| v.len())
}

/// Writes `pods` Pods of `factory` the way `kubectl get pods -A -o json` prints them (one
/// `List`), one Pod at a time, so that a dump of any size costs the writer one Pod of memory.
pub fn write_list(factory: &PodFactory, pods: usize, out: &mut impl std::io::Write) -> std::io::Result<()> {
    out.write_all(br#"{"apiVersion":"v1","kind":"List","metadata":{"resourceVersion":""},"items":["#)?;
    for i in 0..pods {
        if i > 0 {
            out.write_all(b",")?;
        }
        serde_json::to_writer(&mut *out, &factory.pod(i))?;
    }
    out.write_all(b"]}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_are_realistic_and_distinct() {
        let f = PodFactory::new();
        let (a, b) = (f.pod(100), f.pod(101));
        assert_ne!(a["metadata"]["name"], b["metadata"]["name"]);
        assert_ne!(a["metadata"]["uid"], b["metadata"]["uid"]);
        assert_eq!(a["metadata"]["labels"]["pod-template-hash"], b["metadata"]["labels"]["pod-template-hash"]);
        for i in [0, 20, 40, 60, 5000] {
            let size = json_size(&f.pod(i));
            assert!((4_000..=11_000).contains(&size), "pod {i}: {size} bytes");
        }
        let two = f.pod(3);
        assert_eq!(two["status"]["conditions"][2]["status"], "True", "{}", two["status"]["conditions"]);
        let unready = f.pod(100);
        assert_eq!(container_status(&mut unready.clone(), MESH_SIDECAR).unwrap()["ready"], false);
    }

    #[test]
    fn restart_bumps_the_count() {
        let mut p = PodFactory::new().pod(7);
        restart(&mut p, MESH_SIDECAR, "OOMKilled", 137, true, "2026-01-01T00:00:00Z");
        let s = container_status(&mut p, MESH_SIDECAR).unwrap();
        assert_eq!(s["restartCount"], 1);
        assert_eq!(s["lastState"]["terminated"]["reason"], "OOMKilled");
    }
}
