//! What one tenant's Pods cannot do to the operator: leave series behind that grow with
//! every unique name.

use serde_json::json;

use crate::support::*;

fn startup_series(s: &Scrape) -> usize {
    s.find("sidecar_startup_seconds_count", &[]).len()
}

/// Pods with unique sidecar names come and go (a name per rollout): the startup histogram
/// keeps a series per name only while a Pod runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_series_go_with_their_last_pod() {
    let c = Cluster::start("startup").await;
    c.apply_app_policy("mesh", "web", json!({})).await;
    let op = Operator::start(&c, "op", &["--leader-elect=false"]).await;
    let baseline = startup_series(&op.scrape().await.expect("scrape"));

    let mut pods = Vec::new();
    for i in 0..10 {
        let sidecar = format!("s{i}-sidecar");
        let pod = c.create_pod(native_pod(&format!("p{i}"), "web", "app", &sidecar)).await;
        drive(&pod, &[("app", true), (sidecar.as_str(), false)]).await;
        pods.push((pod, sidecar));
    }
    // The operator must see each run start before it sees the sidecar ready.
    op.wait_scrape("every sidecar seen not ready", |s| {
        let n = s.find("sidecar_container_ready", &[]).iter().filter(|x| x.value == 0.0).count();
        if n == 10 {
            Ok(())
        } else {
            Err(format!("{n} not ready"))
        }
    })
    .await;
    for (pod, sidecar) in &pods {
        set_ready(pod, sidecar, true).await;
    }
    op.wait_scrape("a startup series per unique name", |s| {
        let n = startup_series(s);
        if n == baseline + 10 {
            Ok(())
        } else {
            Err(format!("{n} startup series, baseline {baseline}"))
        }
    })
    .await;

    for i in 0..10 {
        c.delete_pod_now(&format!("p{i}")).await;
    }
    op.wait_scrape("the startup series are gone with their Pods", |s| {
        let n = startup_series(s);
        if n == baseline {
            Ok(())
        } else {
            Err(format!("{n} startup series, baseline {baseline}"))
        }
    })
    .await;
}
