//! Baseline for the benchmark: the common kube-rs pattern, a `reflector` store of full Pod
//! objects over all namespaces (KUBECONFIG). Prints `synced <pods> <seconds>` when the
//! initial list is in the store, then keeps the store up to date until killed.

use std::io::Write as _;
use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{Api, Client};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let started = Instant::now();
    let client = Client::try_default().await?;
    let api: Api<Pod> = Api::all(client);
    let (reader, writer) = reflector::store::<Pod>();
    let stream = reflector::reflector(writer, watcher(api, watcher::Config::default())).default_backoff();
    let ready = reader.clone();
    tokio::spawn(async move {
        if ready.wait_until_ready().await.is_ok() {
            println!("synced {} {:.3}", ready.state().len(), started.elapsed().as_secs_f64());
            let _ = std::io::stdout().flush();
        }
    });
    stream
        .for_each(|event| async move {
            if let Err(e) = event {
                eprintln!("reflector-baseline: watch error: {e}");
            }
        })
        .await;
    // Keep `reader` (the store) alive for the whole run.
    drop(reader);
    Ok(())
}
