//! Bounds on a whole test and the logs its failure shows: every test of the operator and
//! node suites registers the logs of the operators it runs ([`Logs`]) and is armed with a
//! [`Backstop`] when its cluster starts ([`crate::cluster::Cluster::start`], and the node
//! suite's `Scenario`, tests/e2e_node/support.rs), so that a test which hangs outside its bounded waits fails, naming
//! itself and showing the operator's log, instead of holding CI until its own timeout.
//!
//! The rule the tests follow (docs/development.md, "Where does my test go?"): every wait is
//! a [`crate::env::wait_until`] or another bounded call (the kube client's timeouts,
//! [`crate::http::get`]'s, kubectl's); this module is the net under those bounds.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How many of a log's last lines a failure shows.
pub const LOG_LINES: usize = 200;

/// How long a whole test may run from the start of its environment unless it sets another
/// bound ([`crate::env::TestEnv::arm_backstop`]): the slowest operator tests take about two
/// minutes on 2 busy cores.
pub const TEST_BOUND: Duration = Duration::from_secs(600);

/// Exit status of a process stopped by a [`Backstop`]: libtest's own for a failed run.
pub const EXIT_STATUS: i32 = 101;

type Source = Box<dyn Fn() -> String + Send + Sync>;

/// The logs a test's failure shows: named sources, each read when a failure needs it (an
/// operator's log file, the operator Pods' logs through kubectl). Cloning shares them.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<(String, Source)>>>);

impl std::fmt::Debug for Logs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self.0.lock().map(|l| l.iter().map(|(n, _)| n.clone()).collect()).unwrap_or_default();
        f.debug_tuple("Logs").field(&names).finish()
    }
}

impl Logs {
    /// Adds a source named `name` (e.g. "operator a (port 4242)"): `read` returns its text.
    pub fn add(&self, name: impl Into<String>, read: impl Fn() -> String + Send + Sync + 'static) {
        // A poisoned lock only means another thread panicked while adding: the list is whole.
        let mut sources = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        sources.push((name.into(), Box::new(read)));
    }

    /// Adds the file at `path` as source `name`.
    pub fn add_file(&self, name: impl Into<String>, path: std::path::PathBuf) {
        self.add(name, move || std::fs::read_to_string(&path).unwrap_or_else(|e| format!("({}: {e})", path.display())));
    }

    /// Whether no source was added.
    pub fn is_empty(&self) -> bool {
        self.0.lock().map(|l| l.is_empty()).unwrap_or(true)
    }

    /// The last [`LOG_LINES`] lines of every source, each between a header naming it and an
    /// end line.
    pub fn render(&self) -> String {
        let sources = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out = String::new();
        for (name, read) in sources.iter() {
            let text = read();
            out.push_str(&format!(
                "----- log of {name} (last {LOG_LINES} lines) -----\n{}\n----- end of log of {name} -----\n",
                tail(&text, LOG_LINES)
            ));
        }
        out
    }
}

/// The last `lines` lines of `text`, after a line saying how many were left out.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let cut = all.len().saturating_sub(lines);
    let kept = all[cut..].join("\n");
    if cut == 0 {
        kept
    } else {
        format!("({cut} earlier lines left out)\n{kept}")
    }
}

/// The name of the running test: libtest names each test's thread after it (the cluster's
/// start runs on that thread in `#[tokio::test]`, whose body is the runtime's `block_on`).
pub fn test_name() -> String {
    std::thread::current().name().unwrap_or("(a test on an unnamed thread)").to_string()
}

/// A whole test's bound: armed by [`Backstop::arm`], disarmed when dropped. If the test is
/// still running when the bound passes, it prints which test, what bound and the logs, then
/// ends the whole test process with [`EXIT_STATUS`]: a future that hangs cannot be cancelled
/// from outside it, and libtest has no per-test timeout on stable Rust, so exiting is the one
/// way a hung test stops holding CI. Other tests of the process end with it; the message says
/// which test was stuck.
#[derive(Debug)]
pub struct Backstop {
    _disarm: mpsc::Sender<()>,
}

impl Backstop {
    /// No bound at all: for a benchmark, which is not a test and may run for as long as its
    /// largest step needs.
    pub fn disarmed() -> Self {
        let (disarm, _armed) = mpsc::channel::<()>();
        Self { _disarm: disarm }
    }

    /// Arms a bound of `bound` on test `test` (see [`test_name`]), showing `logs` if it fires.
    pub fn arm(test: String, bound: Duration, logs: Logs) -> Self {
        let (disarm, armed) = mpsc::channel::<()>();
        let name = format!("backstop of {test}");
        let spawned = std::thread::Builder::new().name(name.clone()).spawn(move || {
            // Nothing is ever sent: the sender's drop (the test ended) disconnects the channel.
            if let Err(RecvTimeoutError::Timeout) = armed.recv_timeout(bound) {
                eprintln!(
                    "backstop: test {test} still running after its bound of {bound:?}: it hung outside its bounded \
                     waits; ending the test process (exit status {EXIT_STATUS})\n{}",
                    logs.render()
                );
                std::process::exit(EXIT_STATUS);
            }
        });
        if let Err(e) = spawned {
            // Without a thread there is no backstop; the test's own bounds still hold.
            eprintln!("backstop: no thread ({name}): {e}");
        }
        Self { _disarm: disarm }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Environment variable that makes [`child_hangs_past_its_backstop`] run: it is the
    /// child process of [`a_hung_test_ends_the_process_naming_itself_with_the_log`].
    const CHILD: &str = "SIDECAR_WATCH_BACKSTOP_CHILD";

    #[test]
    fn tail_keeps_the_last_lines_and_says_how_many_went() {
        assert_eq!(tail("a\nb\nc", 5), "a\nb\nc");
        assert_eq!(tail("a\nb\nc", 2), "(1 earlier lines left out)\nb\nc");
    }

    #[test]
    fn logs_render_each_source_by_name() {
        let logs = Logs::default();
        assert!(logs.is_empty());
        logs.add("operator a", || "one\ntwo".to_string());
        assert_eq!(
            logs.render(),
            "----- log of operator a (last 200 lines) -----\none\ntwo\n----- end of log of operator a -----\n"
        );
    }

    #[test]
    fn a_disarmed_backstop_does_nothing() {
        let backstop = Backstop::arm(test_name(), Duration::from_millis(50), Logs::default());
        drop(backstop);
        std::thread::sleep(Duration::from_millis(200));
    }

    #[test]
    fn child_hangs_past_its_backstop() {
        if std::env::var_os(CHILD).is_none() {
            return;
        }
        let logs = Logs::default();
        logs.add("operator a (port 1)", || "the operator's last words".to_string());
        let _backstop = Backstop::arm(test_name(), Duration::from_millis(300), logs);
        std::thread::sleep(Duration::from_secs(60));
    }

    #[test]
    fn child_outlives_a_lifted_backstop() {
        if std::env::var_os(CHILD).is_none() {
            return;
        }
        // As TestEnv::disarm_backstop replaces the one its environment armed.
        let mut env = (Backstop::arm(test_name(), Duration::from_millis(300), Logs::default()),);
        env.0 = Backstop::disarmed();
        std::thread::sleep(Duration::from_secs(1));
        drop(env);
    }

    #[test]
    fn a_lifted_bound_lets_a_benchmark_run_past_it() {
        let exe = std::env::current_exe().expect("the test binary's path");
        let out = std::process::Command::new(exe)
            .args(["--exact", "backstop::tests::child_outlives_a_lifted_backstop", "--nocapture"])
            .env(CHILD, "1")
            .output()
            .expect("the test binary runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert!(!stderr.contains("backstop:"), "{stderr}");
    }

    #[test]
    fn a_hung_test_ends_the_process_naming_itself_with_the_log() {
        let started = std::time::Instant::now();
        let exe = std::env::current_exe().expect("the test binary's path");
        let out = std::process::Command::new(exe)
            .args(["--exact", "backstop::tests::child_hangs_past_its_backstop", "--nocapture", "--test-threads=2"])
            .env(CHILD, "1")
            .output()
            .expect("the test binary runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(EXIT_STATUS), "{stderr}");
        assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
        assert!(
            stderr.contains(
                "backstop: test backstop::tests::child_hangs_past_its_backstop still running after its bound of 300ms"
            ),
            "{stderr}"
        );
        assert!(
            stderr.contains("----- log of operator a (port 1) (last 200 lines) -----\nthe operator's last words\n"),
            "{stderr}"
        );
    }
}
