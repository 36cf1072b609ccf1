//! `pod-dump N`: writes N realistic Pods (the benchmark's, `managedFields` included) to
//! standard output as `kubectl get pods -A -o json` prints them, for benchmarking `audit` on
//! dumps of any size without a cluster:
//!
//! ```text
//! cargo run --release -p sidecar-watch-harness --bin pod-dump -- 100000 > /tmp/pods.json
//! ```

use std::io::Write;

use clap::Parser;
use sidecar_watch_testkit::factory::{write_list, PodFactory};

/// Writes a Pod dump to standard output.
#[derive(Parser)]
struct Args {
    /// How many Pods.
    pods: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    write_list(&PodFactory::new(), args.pods, &mut out)?;
    out.flush()?;
    Ok(())
}
