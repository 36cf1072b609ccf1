//! Baseline for the benchmark: a kube-rs `reflector` store of Pods over all namespaces
//! (KUBECONFIG), with the operator's allocator (mimalloc). Without flags, the common
//! pattern: full Pod objects. With `--careful`, what a careful kube-rs user writes: the
//! initial list with `any_semantic()` (served from the watch cache) and, before the store,
//! `modify()` dropping `managedFields`, annotations and the spec/status fields sidecar rules
//! never read. Prints `synced <pods> <seconds>` when the initial list is in the store, then
//! keeps the store up to date until killed.

use std::io::Write as _;
use std::time::Instant;

use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Container, ContainerStatus, Pod};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{Api, Client};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Cli {
    /// Strip what the rules never read and list with `any_semantic()`.
    #[arg(long)]
    careful: bool,
}

/// Keeps what sidecar rules read: names, images, restart policy, probes, ports, resources,
/// lifecycle hooks; drops environment, mounts, commands and security settings.
fn strip_container(c: &mut Container) {
    c.env = None;
    c.env_from = None;
    c.volume_mounts = None;
    c.volume_devices = None;
    c.command = None;
    c.args = None;
    c.security_context = None;
    c.working_dir = None;
    c.termination_message_path = None;
    c.termination_message_policy = None;
    c.image_pull_policy = None;
}

/// Keeps readiness, restarts, state and last state; drops image and runtime identifiers.
fn strip_status(s: &mut ContainerStatus) {
    s.image = String::new();
    s.image_id = String::new();
    s.container_id = None;
    s.volume_mounts = None;
    s.allocated_resources = None;
    s.resources = None;
    s.user = None;
}

fn strip(pod: &mut Pod) {
    pod.metadata.managed_fields = None;
    pod.metadata.annotations = None;
    if let Some(spec) = pod.spec.as_mut() {
        spec.containers.iter_mut().for_each(strip_container);
        spec.init_containers.iter_mut().flatten().for_each(strip_container);
        spec.volumes = None;
        spec.affinity = None;
        spec.tolerations = None;
        spec.node_selector = None;
        spec.security_context = None;
        spec.topology_spread_constraints = None;
        spec.dns_config = None;
        spec.image_pull_secrets = None;
    }
    if let Some(status) = pod.status.as_mut() {
        status.container_statuses.iter_mut().flatten().for_each(strip_status);
        status.init_container_statuses.iter_mut().flatten().for_each(strip_status);
        status.pod_ip = None;
        status.pod_ips = None;
        status.host_ip = None;
        status.host_ips = None;
        status.qos_class = None;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let started = Instant::now();
    let client = Client::try_default().await?;
    let api: Api<Pod> = Api::all(client);
    let (reader, writer) = reflector::store::<Pod>();
    let ready = reader.clone();
    tokio::spawn(async move {
        if ready.wait_until_ready().await.is_ok() {
            println!("synced {} {:.3}", ready.state().len(), started.elapsed().as_secs_f64());
            let _ = std::io::stdout().flush();
        }
    });
    let report = |event: Result<_, watcher::Error>| async move {
        if let Err(e) = event {
            eprintln!("reflector-baseline: watch error: {e}");
        }
    };
    if cli.careful {
        let config = watcher::Config::default().any_semantic();
        watcher(api, config).modify(strip).reflect(writer).default_backoff().for_each(report).await;
    } else {
        reflector::reflector(writer, watcher(api, watcher::Config::default())).default_backoff().for_each(report).await;
    }
    // Keep `reader` (the store) alive for the whole run.
    drop(reader);
    Ok(())
}
