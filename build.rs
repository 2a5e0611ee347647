//! Records the commit the node is built from, for `caxton_build_info` and
//! `GET /v1/health`: `git rev-parse` of the checkout, or "unknown" when the
//! source is not a git checkout (a crate tarball, a vendored copy).

fn main() {
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=CAXTON_COMMIT={commit}");
    // A new commit changes HEAD or the branch it names.
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
}
