//! `sidecar-watch-bench`: measures the real operator (`sidecar-watch run`) and prints one
//! table.
//!
//! By default against the in-process simulator preloaded with N realistic Pods, for each N:
//! memory (and the slope per Pod, beside two kube-rs reflector baselines, `reflector-baseline`),
//! time to ready, detection latency under sustained status-update rates, end-to-end alert
//! latency, a hostile tenant, `/metrics` serving, churn, idle CPU and a soak. With `--against
//! ksm`, beside kube-state-metrics, Prometheus and the seed's rules on a real API server.
//! Loopback only; everything is bounded in time and children are killed at the end. The
//! phases live in this crate's library (`sidecar_watch_bench`).
//!
//! ```sh
//! cargo run --release -p sidecar-watch-bench -- --help
//! cargo run --release -p sidecar-watch-bench -- --quick
//! ```

use anyhow::{bail, Result};
use sidecar_watch_bench::args::{Against, Args};
use sidecar_watch_bench::report::table;
use sidecar_watch_bench::{ksm, log, run};
use sidecar_watch_testkit::factory::PodFactory;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::from_env()?;
    log(format!("args: {args:?}; load average {}", run::load_average()));
    if args.against == Against::Ksm {
        let text = ksm::run(&args).await?;
        println!("{text}");
        if let Some(out) = &args.out {
            std::fs::write(out, &text)?;
        }
        return Ok(());
    }
    if !args.operator().exists() {
        bail!("operator binary {} not found (cargo build --release -p sidecar-watch)", args.operator().display());
    }
    std::fs::create_dir_all(args.workdir())?;
    let factory = PodFactory::new();
    let mut rows = Vec::new();
    for &n in &args.pods {
        rows.push(run::bench_n(&args, &factory, n).await?);
        log(format!("partial table:\n{}", table(&rows, &args)));
    }
    let text = table(&rows, &args);
    println!("{text}");
    if let Some(out) = &args.out {
        std::fs::write(out, &text)?;
    }
    let failures: Vec<String> = rows
        .iter()
        .flat_map(|r| r.soak.iter().flat_map(|s| s.failures()).map(move |f| format!("N={}: {f}", r.n)))
        .collect();
    if !failures.is_empty() {
        bail!("soak failed: {}", failures.join("; "));
    }
    Ok(())
}
