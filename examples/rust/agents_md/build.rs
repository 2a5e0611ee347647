//! Takes every ```rust block of docs/AGENTS.md, in order, and writes it
//! into OUT_DIR with the context it needs to compile (the doc shows
//! handlers without their type): `src/lib.rs` includes them and tests what
//! they do. A block added to the doc without a wrapper here fails the
//! build, so no block goes unchecked.

use std::path::Path;

/// Per block, in the doc's order: a line it must contain (so a reordered
/// doc is caught), and what goes around it. `{uses}` is where the block's
/// own `use` lines go (they may not stand inside an `impl`).
const WRAPPERS: [(&str, &str, &str); 4] = [
    ("impl Agent for Counter", "", ""),
    ("fn counts()", "", ""),
    (
        "fn handle(",
        "use caxton_agent::{Agent, Context, Message, Performative, Result};\n{uses}\n#[derive(Default)]\npub struct Kv;\nimpl Agent for Kv {\n",
        "}\n",
    ),
    (
        "call_mcp_tool(",
        "use caxton_agent::{Agent, Context, Message, Outgoing, Performative, Result};\nuse serde::{Deserialize, Serialize};\n{uses}\n\
         #[derive(Serialize, Deserialize)]\nstruct Asker { sender: String, reply_with: u64 }\n#[derive(Default)]\npub struct Calc;\nimpl Agent for Calc {\n",
        "}\n",
    ),
];

fn rust_blocks(doc: &str) -> Vec<String> {
    let (mut blocks, mut current) = (Vec::new(), None::<String>);
    for line in doc.lines() {
        match (&mut current, line.trim_start()) {
            (None, fence) if fence == "```rust" => current = Some(String::new()),
            (Some(_), "```") => blocks.push(current.take().expect("open")),
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(current.is_none(), "docs/AGENTS.md ends inside a ```rust block");
    blocks
}

fn main() {
    let doc_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../docs/AGENTS.md");
    println!("cargo:rerun-if-changed={}", doc_path.display());
    let doc = std::fs::read_to_string(&doc_path).expect("docs/AGENTS.md");
    let blocks = rust_blocks(&doc);
    assert_eq!(
        blocks.len(),
        WRAPPERS.len(),
        "docs/AGENTS.md has {} ```rust blocks and examples/rust/agents_md/build.rs wraps {}: give each a wrapper and a test",
        blocks.len(),
        WRAPPERS.len()
    );
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    for (i, (block, (must_contain, before, after))) in blocks.iter().zip(WRAPPERS).enumerate() {
        assert!(block.contains(must_contain), "block {i} of docs/AGENTS.md no longer contains {must_contain:?}: update its wrapper");
        let (uses, body): (Vec<&str>, Vec<&str>) = block.lines().partition(|l| l.starts_with("use "));
        let code = if before.is_empty() { block.clone() } else { format!("{}{}\n{after}", before.replace("{uses}", &uses.join("\n")), body.join("\n")) };
        std::fs::write(Path::new(&out).join(format!("block{i}.rs")), code).expect("OUT_DIR is writable");
    }
}
