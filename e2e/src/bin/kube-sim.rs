//! `kube-sim`: runs the Kubernetes API-server simulator on a loopback port.
//!
//! Usage: `kube-sim [--port N] [--kubeconfig PATH] [--history N] [--bookmark-interval-ms N]
//! [--no-watch-list] [--minor-version N]` (port 0 = pick a free port; `--no-watch-list` rejects
//! streaming lists as a server with the WatchList feature gate off, `--minor-version` sets the
//! Kubernetes 1.N that `/version` reports, below 27 with that release's watch checks). Prints `listening on http://127.0.0.1:<port>` once ready.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use sidecar_watch_e2e::sim::{SimConfig, Simulator};

fn usage() -> ! {
    eprintln!(
        "usage: kube-sim [--port N] [--kubeconfig PATH] [--history N] [--bookmark-interval-ms N] [--no-watch-list] [--minor-version N]"
    );
    std::process::exit(2)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut config = SimConfig::default();
    let mut kubeconfig: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--port" => config.bind = SocketAddr::from(([127, 0, 0, 1], val().parse().unwrap_or_else(|_| usage()))),
            "--kubeconfig" => kubeconfig = Some(PathBuf::from(val())),
            "--history" => config.history_limit = val().parse().unwrap_or_else(|_| usage()),
            "--bookmark-interval-ms" => {
                config.bookmark_interval = Duration::from_millis(val().parse().unwrap_or_else(|_| usage()))
            }
            "--no-watch-list" => config.watch_list = false,
            "--minor-version" => config.minor_version = val().parse().unwrap_or_else(|_| usage()),
            "-h" | "--help" => usage(),
            _ => usage(),
        }
    }
    let sim = Simulator::start(config).await?;
    if let Some(path) = &kubeconfig {
        sim.write_kubeconfig(path)?;
        println!("kubeconfig written to {}", path.display());
    }
    println!("listening on {}", sim.url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
