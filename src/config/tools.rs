//! The `[tools.NAME]` sections of the config file: the tools the operator
//! gives the node (issue 28). Agents never declare tools; a deploy only
//! names which of these it is granted (`?tools=a,b`).
//!
//! ```toml
//! [tools.calc]                  # an MCP server the node starts on stdio
//! kind = "mcp-stdio"
//! command = ["python3", "calc_server.py"]
//! env = { CALC_PRECISION = "6" } # the server's whole environment (default: empty)
//!
//! [tools.search]                # an MCP server over streamable HTTP
//! kind = "mcp-http"
//! url = "https://search.example/mcp"
//! header_files = { Authorization = "/etc/caxton/search-auth" }
//!
//! [tools.web]                   # plain HTTP
//! kind = "http"
//! url = "https://api.example/"
//! methods = ["GET", "POST"]     # default: GET
//! paths = ["/v1/"]              # path prefixes allowed (default: all)
//! allow_private = false         # true lets it reach loopback and private ranges
//! ```
//!
//! Every kind also takes `timeout_ms` (the call's time when its request
//! has no `reply_by`, default `TOOL_CALL_TIMEOUT_MS`) and `log_arguments`
//! (log each call's arguments, default false: they may hold personal data).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use caxton_shards::limits::TOOL_CALL_TIMEOUT_MS;

/// One `[tools.NAME]` section, as written.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ToolSection {
    McpStdio {
        command: Vec<String>,
        #[serde(default)]
        env: BTreeMap<String, String>,
        /// Variables read from files (secrets), by name.
        #[serde(default)]
        env_files: BTreeMap<String, PathBuf>,
        cwd: Option<PathBuf>,
        timeout_ms: Option<u64>,
        #[serde(default)]
        log_arguments: bool,
    },
    McpHttp {
        url: String,
        #[serde(default)]
        headers: BTreeMap<String, String>,
        #[serde(default)]
        header_files: BTreeMap<String, PathBuf>,
        #[serde(default)]
        allow_private: bool,
        timeout_ms: Option<u64>,
        #[serde(default)]
        log_arguments: bool,
    },
    Http {
        url: String,
        #[serde(default)]
        methods: Vec<String>,
        #[serde(default)]
        paths: Vec<String>,
        #[serde(default)]
        headers: BTreeMap<String, String>,
        #[serde(default)]
        header_files: BTreeMap<String, PathBuf>,
        #[serde(default)]
        allow_private: bool,
        timeout_ms: Option<u64>,
        #[serde(default)]
        log_arguments: bool,
    },
}

/// A tool as the node runs it: checked, secrets read.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    pub name: String,
    pub kind: ToolKind,
    /// A call's time when its request has no `reply_by`.
    pub timeout_ms: u64,
    pub log_arguments: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ToolKind {
    McpStdio { command: Vec<String>, env: BTreeMap<String, String>, cwd: Option<PathBuf> },
    McpHttp { url: String, headers: BTreeMap<String, String>, allow_private: bool },
    Http { url: String, methods: Vec<String>, paths: Vec<String>, headers: BTreeMap<String, String>, allow_private: bool },
}

impl ToolKind {
    /// The `kind` key's value.
    pub fn name(&self) -> &'static str {
        match self {
            ToolKind::McpStdio { .. } => "mcp-stdio",
            ToolKind::McpHttp { .. } => "mcp-http",
            ToolKind::Http { .. } => "http",
        }
    }
}

/// A tool's name: what follows `@tool/` (1 to 57 bytes of `[a-z0-9._-]`,
/// so that `@tool/NAME` is a runtime name of at most 64 bytes).
pub fn is_tool_name(name: &str) -> bool {
    let prefix = caxton_shards::tools::TOOL_NAME_PREFIX.len();
    !name.is_empty()
        && name.len() + prefix <= caxton_shards::limits::NAME_BYTES_MAX
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
}

fn read_secret(tool: &str, what: &str, path: &PathBuf) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("tool {tool:?}: cannot read {what} from {}: {e}", path.display()))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}

fn check_url(tool: &str, url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("tool {tool:?}: url {url:?}: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!("tool {tool:?}: url {url:?} must be http:// or https:// with a host"));
    }
    Ok(())
}

/// Checks every section and reads its secret files.
pub fn resolve(sections: &BTreeMap<String, ToolSection>) -> Result<Vec<ToolSpec>, String> {
    let mut specs = Vec::with_capacity(sections.len());
    for (name, section) in sections {
        if !is_tool_name(name) {
            return Err(format!("tool name {name:?}: use 1 to 58 bytes of [a-z0-9._-]"));
        }
        let (kind, timeout_ms, log_arguments) = match section.clone() {
            ToolSection::McpStdio { command, mut env, env_files, cwd, timeout_ms, log_arguments } => {
                if command.is_empty() || command[0].is_empty() {
                    return Err(format!("tool {name:?}: command must name a program"));
                }
                for (var, path) in &env_files {
                    env.insert(var.clone(), read_secret(name, var, path)?);
                }
                (ToolKind::McpStdio { command, env, cwd }, timeout_ms, log_arguments)
            }
            ToolSection::McpHttp { url, mut headers, header_files, allow_private, timeout_ms, log_arguments } => {
                check_url(name, &url)?;
                for (header, path) in &header_files {
                    headers.insert(header.clone(), read_secret(name, header, path)?);
                }
                (ToolKind::McpHttp { url, headers, allow_private }, timeout_ms, log_arguments)
            }
            ToolSection::Http { url, methods, paths, mut headers, header_files, allow_private, timeout_ms, log_arguments } => {
                check_url(name, &url)?;
                let methods: Vec<String> = if methods.is_empty() { vec!["GET".into()] } else { methods.iter().map(|m| m.to_ascii_uppercase()).collect() };
                if let Some(m) = methods.iter().find(|m| !matches!(m.as_str(), "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE")) {
                    return Err(format!("tool {name:?}: method {m:?} is not one of GET, HEAD, POST, PUT, PATCH, DELETE"));
                }
                let paths = if paths.is_empty() { vec!["/".into()] } else { paths };
                if let Some(p) = paths.iter().find(|p| !p.starts_with('/')) {
                    return Err(format!("tool {name:?}: path prefix {p:?} must start with /"));
                }
                for (header, path) in &header_files {
                    headers.insert(header.clone(), read_secret(name, header, path)?);
                }
                (ToolKind::Http { url, methods, paths, headers, allow_private }, timeout_ms, log_arguments)
            }
        };
        let timeout_ms = timeout_ms.unwrap_or(TOOL_CALL_TIMEOUT_MS);
        if timeout_ms == 0 || timeout_ms > TOOL_CALL_TIMEOUT_MS * 10 {
            return Err(format!("tool {name:?}: timeout_ms must be 1 to {}", TOOL_CALL_TIMEOUT_MS * 10));
        }
        specs.push(ToolSpec { name: name.clone(), kind, timeout_ms, log_arguments });
    }
    Ok(specs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<ToolSpec>, String> {
        #[derive(Deserialize)]
        struct File {
            tools: BTreeMap<String, ToolSection>,
        }
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        resolve(&file.tools)
    }

    #[test]
    fn the_three_kinds_read_with_their_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("auth");
        std::fs::write(&secret, "Bearer s3cret\n").unwrap();
        let specs = parse(&format!(
            r#"
            [tools.calc]
            kind = "mcp-stdio"
            command = ["python3", "calc.py"]
            [tools.search]
            kind = "mcp-http"
            url = "https://search.example/mcp"
            header_files = {{ Authorization = "{}" }}
            [tools.web]
            kind = "http"
            url = "http://127.0.0.1:9/"
            methods = ["get", "POST"]
            allow_private = true
            timeout_ms = 500
            "#,
            secret.display()
        ))
        .unwrap();
        assert_eq!(specs.len(), 3);
        assert_eq!(specs[0].kind, ToolKind::McpStdio { command: vec!["python3".into(), "calc.py".into()], env: BTreeMap::new(), cwd: None });
        assert_eq!(specs[0].timeout_ms, TOOL_CALL_TIMEOUT_MS);
        let ToolKind::McpHttp { headers, allow_private: false, .. } = &specs[1].kind else { panic!("{:?}", specs[1]) };
        assert_eq!(headers["Authorization"], "Bearer s3cret", "a secret is read from its file, without its newline");
        let ToolKind::Http { methods, paths, allow_private: true, .. } = &specs[2].kind else { panic!("{:?}", specs[2]) };
        assert_eq!((methods.as_slice(), paths.as_slice(), specs[2].timeout_ms), (&["GET".to_string(), "POST".into()][..], &["/".to_string()][..], 500));
    }

    #[test]
    fn bad_sections_are_refused_with_the_tools_name() {
        for (text, says) in [
            ("[tools.x]\nkind = \"ftp\"\nurl = \"x\"", "unknown variant"),
            ("[tools.x]\nkind = \"http\"\nurl = \"file:///etc/passwd\"", "http:// or https://"),
            ("[tools.x]\nkind = \"http\"\nurl = \"https://a/\"\nmethods = [\"CONNECT\"]", "CONNECT"),
            ("[tools.x]\nkind = \"http\"\nurl = \"https://a/\"\npaths = [\"v1\"]", "must start with /"),
            ("[tools.x]\nkind = \"mcp-stdio\"\ncommand = []", "must name a program"),
            ("[tools.X]\nkind = \"mcp-stdio\"\ncommand = [\"a\"]", "tool name"),
            ("[tools.x]\nkind = \"mcp-stdio\"\ncommand = [\"a\"]\nenvv = {}", "unknown field"),
            ("[tools.x]\nkind = \"mcp-http\"\nurl = \"https://a/\"\nheader_files = { A = \"/nonexistent/caxton\" }", "cannot read"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn the_packaged_configs_tools_example_is_valid_once_uncommented() {
        let packaged = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/caxton.toml")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("calc-key");
        std::fs::write(&secret, "k").unwrap();
        let start = packaged.find("# [tools.").expect("packaging/caxton.toml shows a [tools] example");
        let example: String = packaged[start..]
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .map(|l| l.replace("/etc/caxton/calc-key", &secret.display().to_string()) + "\n")
            .collect();
        let specs = parse(&example).unwrap_or_else(|e| panic!("{e}\n{example}"));
        assert_eq!(specs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["calc", "web"]);
    }
}
