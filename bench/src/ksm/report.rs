//! The Markdown tables of `--against ksm`: cost per N, memory of every process side by side,
//! time to alert per scenario.

use std::fmt::Write;

use sidecar_watch_harness::ksm::exporter::GoMemory;

use super::cluster::Creation;
use super::cost::{SystemCost, REST};
use super::load::Updates;
use super::server::{mib, ServerCost};
use super::together::{AlertRow, Together};

/// Everything measured at one N.
#[derive(Debug, Default, Clone)]
pub struct Step {
    pub n: usize,
    pub creation: Creation,
    /// etcd's and kube-apiserver's RSS after the Pods were created (KiB).
    pub etcd_rss_kib: u64,
    pub apiserver_rss_kib: u64,
    /// The status-update load with no client: what the writes alone cost the server.
    pub writes_alone: (Updates, ServerCost),
    pub ksm: SystemCost,
    pub operator: SystemCost,
    pub together: Together,
    pub load: String,
}

/// What was run, for the table's header.
#[derive(Debug, Default, Clone)]
pub struct Setup {
    pub apiserver: String,
    pub etcd: String,
    pub ksm: String,
    pub prometheus: String,
    pub operator: String,
    pub machine: String,
    pub time_scale: u32,
    pub update_rate: u64,
    pub update_seconds: u64,
}

fn kib_mib(k: u64) -> String {
    format!("{:.1} MiB", k as f64 / 1024.0)
}

fn secs(s: Option<f64>, wait: f64) -> String {
    match s {
        // Rounded to the tenth first, so that 119.98 s reads 2m00.0s, not 1m60.0s.
        Some(s) if s >= 59.95 => {
            let tenths = (s * 10.0).round() as i64;
            format!("{}m{:04.1}s", tenths / 600, (tenths % 600) as f64 / 10.0)
        }
        Some(s) => format!("{s:.1}s"),
        None => format!("never ({wait:.0}s)"),
    }
}

/// CPU seconds over a phase as % of one core.
fn pct(cpu_s: f64, secs: f64) -> f64 {
    cpu_s * 100.0 / secs.max(1e-9)
}

/// The cost table, one column pair per N.
pub fn cost_table(steps: &[Step], setup: &Setup) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| N = Pods | {} |",
        steps.iter().map(|s| format!("{} KSM | {} sidecar-watch | ratio", s.n, s.n)).collect::<Vec<_>>().join(" | ")
    );
    let _ = writeln!(t, "|---|{}", "---:|---:|---:|".repeat(steps.len()));
    let row =
        |t: &mut String, what: &str, f: &dyn Fn(&Step, &SystemCost) -> String, ratio: &dyn Fn(&Step) -> String| {
            let cells: Vec<String> =
                steps.iter().map(|s| format!("{} | {} | {}", f(s, &s.ksm), f(s, &s.operator), ratio(s))).collect();
            let _ = writeln!(t, "| {what} | {} |", cells.join(" | "));
        };
    let none = |_: &Step| String::new();
    let per_pod = |s: &Step, c: &SystemCost| c.rss_settled_kib as f64 * 1024.0 / s.n.max(1) as f64;
    row(&mut t, "start → every Pod in (its CPU)", &|_, c| format!("{:.1} s ({:.1} s)", c.sync_s, c.cpu_sync_s), &none);
    row(&mut t, "RSS peak during the initial list", &|_, c| kib_mib(c.rss_peak_kib), &none);
    row(&mut t, "RSS settled", &|_, c| kib_mib(c.rss_settled_kib), &|s| {
        format!("{:.1}×", s.ksm.rss_settled_kib as f64 / s.operator.rss_settled_kib.max(1) as f64)
    });
    let go = |g: Option<GoMemory>| {
        g.map_or(String::new(), |g| format!("{} / {} / {}", mib(g.heap_live), mib(g.heap_inuse), mib(g.sys)))
    };
    row(&mut t, "Go heap: live / in use / from the OS", &|_, c| go(c.go_memory), &none);
    row(&mut t, "RSS per Pod (settled / N)", &|s, c| format!("{:.0} B", per_pod(s, c)), &none);
    row(
        &mut t,
        &format!("RSS {} s later (KSM after a forced GC)", REST.as_secs()),
        &|_, c| match c.rss_rest_range_kib {
            Some((low, high)) => format!(
                "{} ({:.1}–{:.1}, {} runs)",
                kib_mib(c.rss_rest_kib),
                low as f64 / 1024.0,
                high as f64 / 1024.0,
                c.runs
            ),
            None => kib_mib(c.rss_rest_kib),
        },
        &|s| format!("{:.1}×", s.ksm.rss_rest_kib as f64 / s.operator.rss_rest_kib.max(1) as f64),
    );
    row(&mut t, "… Go heap then: live / in use / from the OS", &|_, c| go(c.go_memory_rest), &none);
    row(
        &mut t,
        "RSS per Pod then (/ N)",
        &|s, c| format!("{:.0} B", c.rss_rest_kib as f64 * 1024.0 / s.n.max(1) as f64),
        &none,
    );
    // What one more Pod costs, without the fixed part: from the previous N.
    let slope = |i: usize, pick: fn(&Step) -> &SystemCost| -> Option<f64> {
        let (a, b) = (&steps[i.checked_sub(1)?], &steps[i]);
        let d = pick(b).rss_rest_kib as f64 - pick(a).rss_rest_kib as f64;
        Some(d * 1024.0 / (b.n as f64 - a.n as f64))
    };
    let bytes = |b: Option<f64>| b.map_or("–".into(), |b| format!("{b:.0} B"));
    let cells: Vec<String> = (0..steps.len())
        .map(|i| {
            let (k, o) = (slope(i, |s| &s.ksm), slope(i, |s| &s.operator));
            let ratio = k.zip(o).map_or(String::new(), |(k, o)| format!("{:.1}×", k / o));
            format!("{} | {} | {ratio}", bytes(k), bytes(o))
        })
        .collect();
    let _ = writeln!(t, "| RSS per Pod then (slope from the previous N) | {} |", cells.join(" | "));
    row(
        &mut t,
        "`/metrics` bytes (per Pod)",
        &|s, c| format!("{} ({:.0} B)", mib(c.metrics_bytes as f64), c.metrics_bytes as f64 / s.n.max(1) as f64),
        &|s| format!("{:.1}×", s.ksm.metrics_bytes as f64 / s.operator.metrics_bytes.max(1) as f64),
    );
    row(
        &mut t,
        "series (per Pod)",
        &|s, c| format!("{} ({:.2})", c.series, c.series as f64 / s.n.max(1) as f64),
        &|s| format!("{:.1}×", s.ksm.series as f64 / s.operator.series.max(1) as f64),
    );
    row(
        &mut t,
        "… sidecar-watch with `--metric-denylist 'sidecar_container_.*'`",
        &|s, c| c.series_denylisted.map_or(String::new(), |d| format!("{d} ({:.2})", d as f64 / s.n.max(1) as f64)),
        &|s| {
            s.operator
                .series_denylisted
                .map_or(String::new(), |d| format!("{:.0}×", s.ksm.series as f64 / d.max(1) as f64))
        },
    );
    row(&mut t, "`/metrics` time (median of 3)", &|_, c| format!("{:.0} ms", c.metrics_ms), &none);
    row(
        &mut t,
        &format!("CPU at {} status updates/s (% of a core)", setup.update_rate),
        &|_, c| format!("{:.2} % ({:.0}/s achieved)", c.cpu_updates_pct, c.updates.achieved),
        &none,
    );
    row(
        &mut t,
        "detection latency at the update rate: p50 / p99 (Pod inputs)",
        &|_, c| c.detection.map_or(String::new(), |d| d.describe()),
        &none,
    );
    row(
        &mut t,
        "API server, initial state: LISTs (bytes); watch events (bytes)",
        &|_, c| {
            format!(
                "{:.0} ({}); {:.0} ({})",
                c.start.lists,
                mib(c.start.list_bytes),
                c.start.watch_events,
                mib(c.start.watch_bytes)
            )
        },
        &none,
    );
    row(
        &mut t,
        "API server, start: kube-apiserver / etcd CPU",
        &|_, c| format!("{:.2} s / {:.2} s", c.start.apiserver_cpu_s, c.start.etcd_cpu_s),
        &none,
    );
    row(
        &mut t,
        "API server, start: writes (Events, policy status)",
        &|_, c| format!("{:.0}", c.start.write_count()),
        &none,
    );
    row(
        &mut t,
        "API server at the update rate: Pod watch events to it, bytes",
        &|s, c| {
            let (events, bytes) = c.update_server.client_watch(&s.writes_alone.1);
            format!("{events:.0}, {}", mib(bytes))
        },
        &none,
    );
    row(
        &mut t,
        "API server at the update rate: kube-apiserver / etcd CPU (% of a core)",
        &|_, c| {
            let u = &c.update_server;
            format!("{:.1} % / {:.1} %", pct(u.apiserver_cpu_s, u.secs), pct(u.etcd_cpu_s, u.secs))
        },
        &none,
    );
    row(
        &mut t,
        "API server at the update rate: its other requests (GET, LIST, writes)",
        &|_, c| format!("{:.0}", c.update_server.gets + c.update_server.lists + c.update_server.write_count()),
        &none,
    );
    for s in steps {
        let (u, c) = &s.writes_alone;
        let _ = writeln!(
            t,
            "\nN = {}: {} Pods created in {:.0} s ({:.0}/s, {} retries); etcd {} and kube-apiserver {} RSS after; the {:.0}/s status writes alone (no client): kube-apiserver {:.1} %, etcd {:.1} % of a core; load average {}.",
            s.n,
            s.creation.pods,
            s.creation.secs,
            s.creation.pods as f64 / s.creation.secs.max(1e-9),
            s.creation.retries,
            kib_mib(s.etcd_rss_kib),
            kib_mib(s.apiserver_rss_kib),
            u.achieved,
            pct(c.apiserver_cpu_s, c.secs),
            pct(c.etcd_cpu_s, c.secs),
            s.load
        );
    }
    t
}

/// Series per Pod by family at the last N: where each system's series come from.
pub fn family_table(step: &Step) -> String {
    let n = step.n.max(1) as f64;
    let mut t = String::from("| system | family | series | per Pod |\n|---|---|---:|---:|\n");
    for (name, cost) in [("kube-state-metrics", &step.ksm), ("sidecar-watch", &step.operator)] {
        let (top, rest) = cost.families.split_at(cost.families.len().min(6));
        for (family, count) in top {
            let _ = writeln!(t, "| {name} | `{family}` | {count} | {:.2} |", *count as f64 / n);
        }
        let others: usize = rest.iter().map(|(_, c)| c).sum();
        if !rest.is_empty() {
            let _ = writeln!(t, "| {name} | {} other families | {others} | {:.2} |", rest.len(), others as f64 / n);
        }
    }
    t
}

/// Every process' memory while both systems and Prometheus run.
pub fn memory_table(steps: &[Step]) -> String {
    let mut t = String::from("| N = Pods | etcd | kube-apiserver | kube-state-metrics | sidecar-watch | Prometheus | total |\n|---:|---:|---:|---:|---:|---:|---:|\n");
    for s in steps {
        let total: u64 = s.together.rss.iter().map(|(_, k)| k).sum();
        let cells: Vec<String> = s.together.rss.iter().map(|(_, k)| kib_mib(*k)).collect();
        let _ = writeln!(t, "| {} | {} | {} |", s.n, cells.join(" | "), kib_mib(total));
    }
    t
}

fn path(p: &Option<(String, f64)>, alert: &str, wait: f64) -> String {
    match p {
        None => format!("never ({wait:.0}s)"),
        Some((name, s)) if name == alert => secs(Some(*s), wait),
        Some((name, s)) => format!("{} ({name})", secs(Some(*s), wait)),
    }
}

/// Time to alert, one row per sidecar-watch alert of each scenario.
pub fn alert_table(together: &Together) -> String {
    let wait = together.wait_s;
    let mut t = String::from(
        "| scenario | sidecar | sidecar-watch alert | due | sidecar-watch Event | its series | Event − due | seed rules (KSM) | careful rules (KSM) |\n|---|---|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in &together.rows {
        let AlertRow { scenario, sidecar, alert, due_s, event_s, series_s, seed, careful } = r;
        let late = event_s.map_or("–".into(), |e| format!("{:+.2}s", e - due_s));
        let _ = writeln!(
            t,
            "| {} | {} | {alert} | {} | {} | {} | {late} | {} | {} |",
            scenario.title(),
            sidecar.name(),
            secs(Some(*due_s), wait),
            secs(*event_s, wait),
            secs(*series_s, wait),
            path(seed, alert, wait),
            path(careful, alert, wait),
        );
    }
    t
}

/// The three tables with the header.
pub fn all(steps: &[Step], setup: &Setup) -> String {
    let mut out = format!(
        "kube-apiserver {}, etcd {}, {}, {}, sidecar-watch {}; {}. Status updates: {}/s for {} s. Time scale 1/{}.\n\n",
        setup.apiserver,
        setup.etcd,
        setup.ksm,
        setup.prometheus,
        setup.operator,
        setup.machine,
        setup.update_rate,
        setup.update_seconds,
        setup.time_scale
    );
    out.push_str("### Cost, each system alone on the API server\n\n");
    out.push_str(&cost_table(steps, setup));
    if let Some(last) = steps.last() {
        out.push_str(&format!("\n### Series by family at N = {}\n\n", last.n));
        out.push_str(&family_table(last));
        if let Some(top) = &last.ksm.heap_top {
            out.push_str(&format!("\n### kube-state-metrics' heap at N = {} after a forced GC (`go tool pprof -top -sample_index=inuse_space`)\n\n```text\n{top}\n```\n", last.n));
        }
    }
    if steps.iter().any(|s| !s.together.rss.is_empty()) {
        out.push_str("\n### Memory of every process, both systems and Prometheus running\n\n");
        out.push_str(&memory_table(steps));
    }
    if let Some(first) = steps.first().filter(|s| !s.together.rows.is_empty()) {
        out.push_str(&format!(
            "\n### Time to alert at N = {} (Prometheus scrape and evaluation every {:.0} s; \"never\" = nothing within {:.0} s of the causing write)\n\n",
            first.n, first.together.interval_s, first.together.wait_s
        ));
        out.push_str(&alert_table(&first.together));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_to_the_tenth_before_minutes() {
        assert_eq!(secs(Some(119.98), 480.0), "2m00.0s");
        assert_eq!(secs(Some(299.97), 480.0), "5m00.0s");
        assert_eq!(secs(Some(166.24), 480.0), "2m46.2s");
        assert_eq!(secs(Some(59.9), 480.0), "59.9s");
        assert_eq!(secs(Some(-0.02), 480.0), "-0.0s");
        assert_eq!(secs(None, 480.0), "never (480s)");
    }
}
