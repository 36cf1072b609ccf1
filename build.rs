//! Build information for `sidecar_watch_build_info{revision}`: the git commit the binary was
//! built from, or "unknown" outside a git checkout (a source tarball, a vendored build).

fn main() {
    let revision = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=SIDECAR_WATCH_REVISION={revision}");
    // Where git keeps HEAD and the branches: in a worktree `.git` is a file and they live
    // elsewhere. Cargo reruns a build script whose watched path is missing on every build, and
    // recompiles the crate after it (a release build of the fuzz targets: 10 minutes each).
    println!("cargo:rerun-if-changed=build.rs");
    for name in ["HEAD", "refs/heads", "packed-refs"] {
        let path = std::process::Command::new("git")
            .args(["rev-parse", "--path-format=absolute", "--git-path", name])
            .output()
            .ok()
            .filter(|out| out.status.success())
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .map(|s| s.trim().to_string())
            .filter(|p| std::path::Path::new(p).exists());
        if let Some(path) = path {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
