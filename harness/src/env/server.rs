//! The server and kubectl: the server's minor release and what it serves by default, and
//! kubectl runs that keep what they print to standard error (test helpers: they panic when
//! the server or kubectl cannot be reached).

use std::process::Stdio;

use super::TestEnv;

/// The minor release of the server `env` talks to, from its `/version` (`"33"`, or `"33+"` as
/// some managed clusters write it), for the tests that assert what each release does: the
/// operator suite runs on the 1.37.2 control plane and, in CI, on 1.33.13 too
/// (docs/development.md, "Other Kubernetes versions").
pub async fn server_minor(env: &TestEnv) -> u32 {
    let info = env.client.apiserver_version().await.expect("the server answers /version");
    let minor = info.minor.trim_end_matches('+');
    minor.parse().unwrap_or_else(|_| panic!("/version: minor {:?} is not a number", info.minor))
}

/// Whether kube-apiserver 1.`minor` serves streaming lists without a flag: the WatchList
/// feature gate is on by default in 1.32 and from 1.34, off in 1.27-1.31 and again in 1.33
/// (and streaming lists do not exist before 1.27).
pub fn streams_by_default(minor: u32) -> bool {
    minor == 32 || minor >= 34
}

/// A kubectl run, whatever its exit status: what a user sees.
#[derive(Debug)]
pub struct Kubectl {
    /// Whether it exited with status 0.
    pub success: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs kubectl with `args` in the repository (the workspace's root) and `input` on standard
/// input, keeping standard error (the [`TestEnv`] `kubectl` helpers drop it); it panics if
/// kubectl has not ended within [`super::KUBECTL_TIMEOUT`].
pub async fn run_kubectl(env: &TestEnv, args: &[&str], input: &str) -> Kubectl {
    use tokio::io::AsyncWriteExt;
    let mut child = env
        .kubectl_command()
        .args(args)
        .current_dir(sidecar_watch_testkit::workspace_root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl starts");
    let mut stdin = child.stdin.take().expect("stdin");
    let run = async {
        stdin.write_all(input.as_bytes()).await.expect("kubectl reads its input");
        drop(stdin);
        child.wait_with_output().await.expect("kubectl ends")
    };
    // Killed on the timeout (`kill_on_drop`, [`TestEnv::kubectl_command`]).
    let out = tokio::time::timeout(super::KUBECTL_TIMEOUT, run)
        .await
        .unwrap_or_else(|_| panic!("kubectl {} did not end within {:?}", args.join(" "), super::KUBECTL_TIMEOUT));
    Kubectl {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
