//! `sidecar-watch audit` run as a user runs it: a child process started in the workspace
//! root (so fixture paths read as in the README), input on stdin, exit status and output
//! back. The binary's path is the caller's (`env!("CARGO_BIN_EXE_sidecar-watch")` exists
//! only in the operator package's own tests).

use std::ffi::OsStr;
use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// The operator's binary, ready to run `audit`: a test binary declares it once,
/// `const SIDECAR_WATCH: Audit = Audit::new(env!("CARGO_BIN_EXE_sidecar-watch"));`.
#[derive(Clone, Copy, Debug)]
pub struct Audit {
    binary: &'static str,
}

impl Audit {
    /// `audit` of the binary at `binary`.
    pub const fn new(binary: &'static str) -> Self {
        Audit { binary }
    }

    /// The binary as a command in the workspace root, with `NO_COLOR` unset (tests that want
    /// it set it): for runs `audit` does not cover, such as other subcommands.
    pub fn command(&self) -> Command {
        let mut command = Command::new(self.binary);
        command.current_dir(crate::workspace_root()).env_remove("NO_COLOR");
        command
    }

    /// Runs `audit` with `args`, writing `stdin` (if any) to its standard input, and waits
    /// for it.
    ///
    /// # Panics
    /// When the binary cannot be started: nothing of the test can run.
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S], stdin: Option<&[u8]>) -> Output {
        let mut child = self
            .command()
            .arg("audit")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.binary));
        let mut input = child.stdin.take().expect("stdin is piped");
        if let Some(bytes) = stdin {
            // Refused input may close the pipe before it is all written; the outcome says more.
            let _ = input.write_all(bytes);
        }
        drop(input);
        child.wait_with_output().expect("audit finishes")
    }

    /// Runs `audit -o json --fail-on none` with `args` and returns its findings.
    ///
    /// # Panics
    /// When the audit does not exit 0 or its output is not a JSON array, with its stderr.
    pub fn findings<S: AsRef<OsStr>>(&self, args: &[S]) -> Vec<Value> {
        let mut all: Vec<&OsStr> =
            vec![OsStr::new("-o"), OsStr::new("json"), OsStr::new("--fail-on"), OsStr::new("none")];
        all.extend(args.iter().map(AsRef::as_ref));
        let out = self.run(&all, None);
        assert_eq!(out.status.code(), Some(0), "audit {all:?}: {}", text(&out.stderr));
        json(&out)
    }
}

/// Output bytes as text (invalid UTF-8 replaced), for messages and `contains` checks.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The findings of a `-o json` run.
///
/// # Panics
/// When stdout is not a JSON array, quoting it.
pub fn json(out: &Output) -> Vec<Value> {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("JSON ({e}): {}", text(&out.stdout)))
}
