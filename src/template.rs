//! `caxton agent new NAME`: a ready Rust agent crate on the SDK.
//!
//! The crate is its own workspace, depends on the SDK by path (the `sdk/`
//! folder of a caxton checkout: `--sdk`, `CAXTON_SDK`, or the checkout this
//! binary was built from), has an echo agent with a native test, and
//! `cargo wasm` builds the module to deploy.

use std::path::{Path, PathBuf};

/// Where the SDK is, from the flag, the environment or the build.
pub fn find_sdk(given: Option<&Path>) -> Result<PathBuf, String> {
    let candidates: Vec<PathBuf> = match given {
        Some(p) => vec![p.to_path_buf()],
        None => std::env::var_os("CAXTON_SDK").map(PathBuf::from).into_iter().chain([Path::new(env!("CARGO_MANIFEST_DIR")).join("sdk")]).collect(),
    };
    for c in &candidates {
        if c.join("Cargo.toml").is_file() && c.join("src/lib.rs").is_file() {
            return c.canonicalize().map_err(|e| format!("cannot resolve {}: {e}", c.display()));
        }
    }
    Err(format!(
        "cannot find the Rust SDK (caxton-agent) at {}: pass --sdk PATH, the sdk/ folder of a caxton checkout",
        candidates.iter().map(|c| c.display().to_string()).collect::<Vec<_>>().join(" or ")
    ))
}

/// Builds the agent crate in `dir` for `target` with cargo; returns the
/// module it made and the crate's name (the agent's name by default).
pub fn build_crate(dir: &Path, target: &str) -> Result<(PathBuf, Option<String>), String> {
    let manifest = dir.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(format!("{} is a folder without Cargo.toml: give a .wasm or .wat file, or a Rust agent crate", dir.display()));
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("building {} for {target}", dir.display());
    let out = std::process::Command::new(cargo)
        .args(["build", "--release", "--target", target, "--message-format=json-render-diagnostics"])
        .current_dir(dir)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!("cargo build failed in {} ({})", dir.display(), out.status));
    }
    // The cdylib's artifact: the last .wasm cargo reports.
    let artifacts = String::from_utf8_lossy(&out.stdout);
    let built = artifacts
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter_map(|m| {
            let wasm = m["filenames"].as_array()?.iter().filter_map(|f| f.as_str()).find(|f| f.ends_with(".wasm"))?.to_string();
            Some((PathBuf::from(wasm), m["target"]["name"].as_str().map(|n| n.replace('_', "-"))))
        })
        .next();
    built.ok_or_else(|| format!("cargo built no .wasm in {}: an agent crate has crate-type = [\"cdylib\"]", dir.display()))
}

/// Is `name` both an agent name and a crate name: `[a-z][a-z0-9_-]*`, at
/// most 64 bytes?
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty() && b.len() <= 64 && b[0].is_ascii_lowercase() && b.iter().all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-')
}

/// Writes the crate for agent `name` into `dir`, which must not exist.
pub fn create(name: &str, dir: &Path, sdk: &Path) -> Result<Vec<PathBuf>, String> {
    if !valid_name(name) {
        return Err(format!("{name:?} cannot name an agent crate: use a lowercase letter, then lowercase letters, digits, '-' or '_' (at most 64)"));
    }
    if dir.exists() {
        return Err(format!("{} already exists; choose another name or --dir", dir.display()));
    }
    let sdk = sdk.display().to_string();
    let files = [
        ("Cargo.toml", cargo_toml(name, &sdk)),
        (".cargo/config.toml", CARGO_CONFIG.to_string()),
        ("src/lib.rs", lib_rs(name)),
        ("README.md", readme(name)),
        (".gitignore", "target/\n".to_string()),
    ];
    let mut written = Vec::new();
    for (rel, text) in files {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().expect("a file in a folder")).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

fn cargo_toml(name: &str, sdk: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"
publish = false

# A cdylib is the module caxton runs; the rlib lets `cargo test` run the
# agent natively against the SDK's mock host.
[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
caxton-agent = {{ path = {sdk:?} }}
# Typed state (`ctx.get`/`ctx.put` of your own types), as docs/AGENTS.md
# shows it.
serde = {{ version = "1", features = ["derive"] }}

# Its own workspace, wherever it sits.
[workspace]

# Small, fast modules; a panic is a trap, which the node counts as a crash.
[profile.release]
opt-level = 3
lto = true
codegen-units = 1
panic = "abort"
strip = true
"#
    )
}

const CARGO_CONFIG: &str = r#"# `cargo wasm` builds the module to deploy:
#   target/wasm32-unknown-unknown/release/<name>.wasm
# (`cargo test` still runs natively, against the SDK's mock host.)
# For the standard library's I/O, clock and randomness, build for
# wasm32-wasip1 instead: the node offers WASI preview 1.
[alias]
wasm = "build --release --target wasm32-unknown-unknown"
"#;

fn lib_rs(name: &str) -> String {
    let ty = type_name(name);
    format!(
        r#"//! {name}: a caxton agent. It replies to every message with its content.

use caxton_agent::{{info, Agent, Context, Message, Performative, Result}};

#[derive(Default)]
pub struct {ty};

impl Agent for {ty} {{
    fn init(&mut self, ctx: &mut Context<'_>) -> Result<()> {{
        info!(ctx, "{name} starting");
        Ok(())
    }}

    fn handle(&mut self, ctx: &mut Context<'_>, message: &Message<'_>) -> Result<()> {{
        ctx.reply(message, Performative::Inform, message.content())
    }}
}}

caxton_agent::export_agent!({ty});

#[cfg(test)]
mod tests {{
    use caxton_agent::testing::{{TestAgent, TestMessage}};

    #[test]
    fn replies_with_the_content() {{
        let mut agent = TestAgent::<super::{ty}>::start().unwrap();
        agent.deliver(&TestMessage::new("@api/1", "{name}", "hello").reply_with(7)).unwrap();
        let reply = &agent.host().sent[0];
        assert_eq!((reply.receiver.as_str(), reply.text(), reply.in_reply_to), ("@api/1", "hello", 7));
    }}
}}
"#
    )
}

/// The agent's type: `my-agent_2` is `MyAgent2`.
fn type_name(name: &str) -> String {
    name.split(['-', '_']).filter(|w| !w.is_empty()).map(|w| w[..1].to_ascii_uppercase() + &w[1..]).collect()
}

fn readme(name: &str) -> String {
    format!(
        r#"# {name}

A caxton agent in Rust, on the `caxton-agent` SDK.

```sh
cargo test                 # the agent's logic, natively, against a mock node
cargo wasm                 # builds target/wasm32-unknown-unknown/release/{lib}.wasm
caxton agent deploy target/wasm32-unknown-unknown/release/{lib}.wasm --name {name}
caxton message send --to {name} --content hello --wait-reply 1000
```

`src/lib.rs` holds the agent: `handle` gets each message with a context to
reply, send, keep typed state (`ctx.put`, `ctx.get`), read the clock and
log (`info!`). Its output and panics show in the node's log. See the SDK's
documentation (`cargo doc --open -p caxton-agent`) and the caxton
checkout's docs/AGENTS.md.
"#,
        lib = name.replace('-', "_")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_suit_both_an_agent_and_a_crate() {
        assert!(valid_name("hello") && valid_name("my-agent_2"));
        assert_eq!(type_name("my-agent_2"), "MyAgent2");
        for bad in ["", "Hello", "2fast", "a.b", "a b", &"x".repeat(65)] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_crate_is_written_once_and_never_over_an_existing_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("hello");
        let sdk = find_sdk(None).unwrap();
        let files = create("hello", &dir, &sdk).unwrap();
        assert_eq!(files.len(), 5);
        let toml = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(toml.contains(&format!("caxton-agent = {{ path = {:?} }}", sdk.display().to_string())), "{toml}");
        assert!(std::fs::read_to_string(dir.join("src/lib.rs")).unwrap().contains("export_agent!"));
        assert!(create("hello", &dir, &sdk).unwrap_err().contains("already exists"));
        assert!(create("Bad", &tmp.path().join("bad"), &sdk).is_err());
        assert!(find_sdk(Some(tmp.path())).unwrap_err().contains("--sdk"));
    }
}
