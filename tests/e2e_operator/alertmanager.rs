//! The real Alertmanager behind the real Prometheus: the operator (with `--namespace-labels
//! team`) is scraped, the shipped rules (`config/prometheus/prometheusrule.yaml`) fire one
//! alert per workload, and the example routes (`config/alertmanager/alertmanager.yaml`) page
//! the team that owns the namespace, once, at a webhook receiver of this test process that
//! records every notification by receiver. Issue 56's e2e tests; the inhibit rules alone,
//! alerts posted to a real Alertmanager, in [`inhibition`] (issue 62).
//!
//! Each wait is bounded ([`WAIT`]); a failed one prints the receiver's record, what
//! Alertmanager and Prometheus hold and (from the processes' drops) their logs and the
//! operator's.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{json, Value};
use sidecar_watch_harness::alertmanager::{
    describe_alert, is_inhibited, webhooks_to, Alertmanager, Notification, WebhookReceiver, TEST_TIMINGS,
};
use sidecar_watch_harness::env::wait_until;
use sidecar_watch_harness::kubelet::{test_pod, PodDriver};
use sidecar_watch_harness::prometheus::Prometheus;

use crate::limits::crash_loop;
use crate::support::*;

mod inhibition;

/// The sidecar of every workload here: not a catalog product (`product="unknown"`), so only
/// the team routes match, never the mesh team's.
const SIDECAR: &str = "log-shipper";

/// How long nothing more may arrive before a count of notifications is taken as final:
/// several of the test's group intervals (1 s) and Prometheus evaluations (1 s), so that a
/// second notification that was going to come has come. An absence can only be watched for
/// a while; this is that while, not a wait for a condition.
const QUIET: Duration = Duration::from_secs(4);

/// The operator, Prometheus sending to Alertmanager, Alertmanager sending to the webhook.
struct Stack {
    op: Operator,
    prom: Prometheus,
    am: Alertmanager,
    hook: WebhookReceiver,
}

impl Stack {
    /// Starts the chain on the cluster, the operator watching `namespaces` and copying their
    /// `team` label.
    async fn start(c: &Cluster, namespaces: &[&str]) -> Self {
        let hook = WebhookReceiver::start().await.expect("the webhook receiver listens");
        // The shipped routes and receivers; the URLs point at `hook`, and group_wait and
        // group_interval are seconds instead of the shipped minutes so that a page comes
        // within seconds. repeat_interval becomes 10 min, longer than the test: shortened to
        // seconds it would re-send unchanged groups, and a reminder would count as a second
        // page (`TEST_TIMINGS`).
        let config = webhooks_to(&shipped_alertmanager_config(), &hook.base_url(), TEST_TIMINGS)
            .expect("the shipped Alertmanager configuration has one webhook per receiver");
        let am = Alertmanager::start(c.env.dir(), &config).await.unwrap_or_else(|e| panic!("{e}"));
        let port = free_port();
        let args: Vec<String> = [
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
            "--namespace",
            &namespaces.join(","),
            "--leader-elect=false",
            "--status-interval",
            "1s",
        ]
        .map(String::from)
        .into();
        let op = Operator::spawn(c, "op-0", port, &args, &[("SIDECAR_WATCH_NAMESPACE_LABELS", "team")]).await;
        let rules = shipped_rules(c.env.dir());
        let prom = Prometheus::start_alerting(&rules, &format!("127.0.0.1:{port}"), &am.address())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        Self { op, prom, am, hook }
    }

    /// What each part holds, for a failure message.
    async fn report(&self) -> String {
        let prom = match self.prom.alerts().await {
            Ok(alerts) => {
                alerts.iter().map(|a| format!("{} {}", a["state"], a["labels"])).collect::<Vec<_>>().join("\n")
            }
            Err(e) => e.to_string(),
        };
        format!(
            "--- webhook receiver's record ---\n{}\n--- Alertmanager's alerts ---\n{}\n--- Prometheus' alerts ---\n{prom}",
            self.hook.describe(),
            self.am.describe_alerts().await,
        )
    }

    /// [`wait_until`] within [`WAIT`], panicking with [`Stack::report`].
    async fn wait<T, F, Fut>(&self, what: &str, check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, String>>,
    {
        match wait_until(WAIT, what, check).await {
            Ok(v) => v,
            Err(e) => panic!("{e}\n{}", self.report().await),
        }
    }

    /// Waits until the receivers were sent exactly `want` notifications (absent: none), then
    /// checks that no more come for [`QUIET`]; returns the notifications.
    async fn wait_pages(&self, what: &str, want: &[(&str, u64)]) -> Vec<Notification> {
        let want: BTreeMap<String, u64> = want.iter().map(|(r, n)| (r.to_string(), *n)).collect();
        let check = || async {
            let got = self.hook.counts();
            if got == want {
                Ok(())
            } else {
                Err(format!("notifications per receiver {got:?}, want {want:?}"))
            }
        };
        self.wait(what, check).await;
        let start = Instant::now();
        while start.elapsed() < QUIET {
            if let Err(e) = check().await {
                panic!("{what}: more came within {QUIET:?}: {e}\n{}", self.report().await);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.hook.notifications()
    }

    /// Waits until Prometheus has exactly one active `alertname` alert for the workload
    /// `namespace`/Deployment `workload`, firing, and `check` accepts it; returns it.
    async fn wait_one_firing(
        &self,
        alertname: &str,
        namespace: &str,
        workload: &str,
        check: impl Fn(&Value) -> Result<(), String>,
    ) -> Value {
        self.wait(&format!("one firing {alertname} of {namespace}/{workload} in Prometheus"), || async {
            let alerts = self.prom.alerts().await.map_err(|e| e.to_string())?;
            let mine: Vec<&Value> = alerts
                .iter()
                .filter(|a| a["labels"]["alertname"] == alertname && a["labels"]["namespace"] == namespace)
                .collect();
            match mine.as_slice() {
                [a] if a["state"] == "firing" && a["labels"]["workload"] == workload => {
                    check(a)?;
                    Ok((*a).clone())
                }
                _ => Err(format!("{} of them: {mine:?}", mine.len())),
            }
        })
        .await
    }
}

/// Sets the Namespace's label `team`.
pub(crate) async fn label_team(c: &Cluster, namespace: &str, team: &str) {
    let api: Api<Namespace> = Api::all(c.env.client.clone());
    let patch = json!({"metadata": {"labels": {"team": team}}});
    api.patch(namespace, &PatchParams::default(), &Patch::Merge(&patch)).await.expect("namespace labelled");
}

/// A SidecarPolicy `logs` in `namespace` selecting `app=<app>`: a sidecar not ready for 1 s
/// (warning) or crash looping for 1 s (critical) alerts.
async fn apply_logs_policy(c: &Cluster, namespace: &str, app: &str) {
    let enabled = json!({
        "sidecarNotReady": {"for": "1s", "severity": "warning"},
        "crashLoop": {"for": "1s", "severity": "critical"},
    });
    let doc = json!({
        "apiVersion": "sidecarwatch.io/v1alpha1",
        "kind": "SidecarPolicy",
        "metadata": {"name": "logs", "namespace": namespace},
        "spec": {"selector": {"matchLabels": {"app": app}}, "rules": rules(enabled)},
    });
    let out = c.apply_in(namespace, &doc.to_string()).await;
    assert!(out.contains("sidecarpolicy.sidecarwatch.io/logs serverside-applied"), "{out}");
}

/// `replicas` Pods of the Deployment `deployment` (ReplicaSet `<deployment>-7d9f8b6c5`, with
/// its `pod-template-hash`) in `namespace`, the main container ready and [`SIDECAR`] (a native
/// sidecar of an image no catalog entry knows) running but never ready.
async fn failing_deployment(c: &Cluster, namespace: &str, deployment: &str, replicas: usize) -> Vec<PodDriver> {
    let hash = "7d9f8b6c5";
    let replica_set = format!("{deployment}-{hash}");
    let mut pods = Vec::with_capacity(replicas);
    for i in 0..replicas {
        let mut pod = test_pod(
            &format!("{replica_set}-p{i:02}"),
            &[("app", deployment), ("pod-template-hash", hash)],
            &["app"],
            &[SIDECAR],
        );
        pod["spec"]["initContainers"][0]["image"] = json!("registry.example/acme/log-shipper:2.1");
        pod["metadata"]["ownerReferences"] = json!([{
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": replica_set,
            "uid": format!("{deployment}-rs-uid"), "controller": true, "blockOwnerDeletion": true,
        }]);
        let driver = c.create_pod_in(namespace, pod).await;
        drive(&driver, &[("app", true), (SIDECAR, false)]).await;
        pods.push(driver);
    }
    pods
}

/// The `sidecar_alerts` series of `alert` on each of `pods` of the Deployment `deployment`,
/// with the namespace's team and the sidecar's product.
fn series(
    alert: AlertName,
    severity: Severity,
    namespace: &str,
    deployment: &str,
    pods: usize,
    team: &str,
) -> Vec<Labels> {
    (0..pods)
        .map(|i| {
            let pod = format!("{deployment}-7d9f8b6c5-p{i:02}");
            let base = AlertSeries {
                alert,
                severity,
                policy: "logs",
                namespace,
                pod: &pod,
                container: SIDECAR,
                ..MESH_NOT_READY
            };
            let mut labels = owned_by(base.labels(), "Deployment", deployment);
            labels.insert("product".into(), "unknown".into());
            labels.insert("label_team".into(), team.into());
            labels
        })
        .collect()
}

/// Checks the labels every paged alert of a workload here carries: its owner and the route's
/// inputs (`label_team`, `product`), no Pod.
fn assert_workload_labels(alert: &Value, namespace: &str, deployment: &str, team: &str) {
    let labels = &alert["labels"];
    for (k, v) in [
        ("namespace", namespace),
        ("workload_kind", "Deployment"),
        ("workload", deployment),
        ("container", SIDECAR),
        ("label_team", team),
        ("product", "unknown"),
        ("source", "sidecar-watch"),
    ] {
        assert_eq!(labels[k], v, "label {k} of {alert}");
    }
    assert!(labels.get("pod").is_none(), "one alert per workload has no pod label: {alert}");
}

/// The one alert of a notification, checked: firing, `alertname`, the workload's labels.
fn the_paged_alert<'a>(
    n: &'a Notification,
    alertname: &str,
    namespace: &str,
    deployment: &str,
    team: &str,
) -> &'a Value {
    assert_eq!(n.body["status"], "firing", "{}", n.describe());
    let [alert] = n.alerts() else { panic!("one alert per notification: {}", n.describe()) };
    assert_eq!(alert["status"], "firing", "{}", n.describe());
    assert_eq!(alert["labels"]["alertname"], alertname, "{}", n.describe());
    assert_workload_labels(alert, namespace, deployment, team);
    alert
}

/// 20 replicas whose sidecar is never ready: one firing alert in Prometheus counting the 20
/// Pods, one page at the owning team's receiver and nothing elsewhere. Then the sidecar crash
/// loops: the crash loop pages the team, the not-ready alert is inhibited and pages no more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_pages_the_owning_team_once_per_workload() {
    let c = Cluster::start("am-team").await;
    let ns = c.ns.clone();
    label_team(&c, &ns, "payments").await;
    apply_logs_policy(&c, &ns, "web").await;
    let stack = Stack::start(&c, &[&ns]).await;

    let pods = failing_deployment(&c, &ns, "web", 20).await;
    let not_ready = series(AlertName::SidecarContainerNotReady, Severity::Warning, &ns, "web", 20, "payments");
    stack.op.wait_alerts("20 Pods' sidecars not ready", not_ready.clone()).await;
    let firing = stack
        .wait_one_firing("SidecarContainerNotReady", &ns, "web", |a| {
            // The alert's value and its `pods` annotation count the workload's Pods.
            let value = a["value"].as_str().and_then(|v| v.parse::<f64>().ok());
            if value == Some(20.0) && a["annotations"]["pods"] == "20" {
                Ok(())
            } else {
                Err(format!("not 20 Pods counted yet: value {}, annotations {}", a["value"], a["annotations"]))
            }
        })
        .await;
    // The example Pod: the first by name.
    assert_eq!(firing["annotations"]["example_pod"], format!("{ns}/web-7d9f8b6c5-p00"), "{firing}");
    assert_workload_labels(&firing, &ns, "web", "payments");

    let pages = stack.wait_pages("one page at team-payments", &[("team-payments", 1)]).await;
    the_paged_alert(&pages[0], "SidecarContainerNotReady", &ns, "web", "payments");

    // Every replica's sidecar crash loops (waiting in CrashLoopBackOff after restarts): not
    // ready still, and crash looping.
    for pod in &pods {
        crash_loop(pod, SIDECAR).await;
    }
    let mut both = not_ready.clone();
    both.extend(series(AlertName::SidecarCrashLooping, Severity::Critical, &ns, "web", 20, "payments"));
    stack.op.wait_alerts("20 not ready and crash looping", both).await;
    let looping = stack.wait_one_firing("SidecarCrashLooping", &ns, "web", |_| Ok(())).await;
    assert_workload_labels(&looping, &ns, "web", "payments");
    stack.wait_one_firing("SidecarContainerNotReady", &ns, "web", |_| Ok(())).await;

    // Alertmanager holds the not-ready alert inhibited by the crash loop of the same
    // container; only the crash loop pages.
    let inhibited = stack
        .wait("Alertmanager inhibits SidecarContainerNotReady by SidecarCrashLooping", || async {
            let looping = stack.am.alerts_named("SidecarCrashLooping").await.map_err(|e| e.to_string())?;
            let not_ready = stack.am.alerts_named("SidecarContainerNotReady").await.map_err(|e| e.to_string())?;
            match (looping.as_slice(), not_ready.as_slice()) {
                ([source], [target])
                    if is_inhibited(target) && target["status"]["inhibitedBy"] == json!([source["fingerprint"]]) =>
                {
                    Ok((source.clone(), target.clone()))
                }
                _ => Err(format!(
                    "crash looping: {:?}; not ready: {:?}",
                    looping.iter().map(describe_alert).collect::<Vec<_>>(),
                    not_ready.iter().map(describe_alert).collect::<Vec<_>>()
                )),
            }
        })
        .await;
    assert_eq!(inhibited.0["status"]["state"], "active", "{}", describe_alert(&inhibited.0));
    let pages = stack.wait_pages("the crash loop pages team-payments", &[("team-payments", 2)]).await;
    the_paged_alert(&pages[1], "SidecarCrashLooping", &ns, "web", "payments");
}

/// Two namespaces of two teams, each with a failing Deployment: each team's receiver gets
/// its own namespace's alert, and only that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_routes_each_namespace_to_its_team() {
    let c = Cluster::start("am-routes").await;
    let payments = c.ns.clone();
    let storefront = format!("{payments}-sf");
    c.env.create_namespace(&storefront).await.expect("namespace created");
    label_team(&c, &payments, "payments").await;
    label_team(&c, &storefront, "storefront").await;
    apply_logs_policy(&c, &payments, "checkout").await;
    apply_logs_policy(&c, &storefront, "web").await;
    let stack = Stack::start(&c, &[&payments, &storefront]).await;

    failing_deployment(&c, &payments, "checkout", 3).await;
    failing_deployment(&c, &storefront, "web", 2).await;
    let mut expected =
        series(AlertName::SidecarContainerNotReady, Severity::Warning, &payments, "checkout", 3, "payments");
    expected.extend(series(
        AlertName::SidecarContainerNotReady,
        Severity::Warning,
        &storefront,
        "web",
        2,
        "storefront",
    ));
    stack.op.wait_alerts("both Deployments' sidecars not ready", expected).await;
    stack.wait_one_firing("SidecarContainerNotReady", &payments, "checkout", |_| Ok(())).await;
    stack.wait_one_firing("SidecarContainerNotReady", &storefront, "web", |_| Ok(())).await;

    stack.wait_pages("one page per team", &[("team-payments", 1), ("team-storefront", 1)]).await;
    let payments_page = &stack.hook.received("team-payments")[0];
    the_paged_alert(payments_page, "SidecarContainerNotReady", &payments, "checkout", "payments");
    let storefront_page = &stack.hook.received("team-storefront")[0];
    the_paged_alert(storefront_page, "SidecarContainerNotReady", &storefront, "web", "storefront");
}
