//! Secrets given to the node (API tokens, the cluster key): where they come
//! from, and how they are compared.
//!
//! Rules:
//! 1. A secret comes from one place: a file (`--api-token-file`,
//!    `--cluster-key-file`), the environment (`CAXTON_API_TOKEN`,
//!    `CAXTON_CLUSTER_KEY`), a systemd credential (`LoadCredential=` of
//!    `api-token` or `cluster-key`), or, discouraged, the command line.
//!    Two of them at once is an error that names both.
//! 2. On the command line a secret is shown to every local user by
//!    `/proc/*/cmdline` and `ps`: it still works, and a warning says so
//!    and what to use instead ([`warnings_for_argv`]).
//! 3. A secret file is read whole, its trailing newline dropped; an empty
//!    one is an error, and one that others may read draws a warning.
//! 4. Tokens are compared in constant time ([`token_matches`]), so that
//!    the time a refusal takes says nothing about how much was right.
//! 5. Rotation: each secret has a *next* one (`--api-token-next-file`,
//!    `--cluster-key-next-file`, their environment variables and systemd
//!    credentials, never a plain flag). The API accepts the current and the
//!    next token; the cluster key ring holds both keys and moves to the next
//!    one by its own rules. SIGHUP reads every secret file again
//!    ([`SecretSources::read_all`]): that is how a rotation starts and how
//!    it ends, with no restart.
//! 6. Secrets must be strong, at start and at every reload
//!    ([`check_strength`]): an API token has at least
//!    [`API_TOKEN_CHARS_MIN`] characters; a cluster key is hex or base64
//!    text of at least [`CLUSTER_KEY_BITS_MIN`] bits; neither may be a
//!    placeholder of `packaging/` ("change-me..."). A weak one is refused
//!    with the command that makes a good one. The cluster key's uses are
//!    derived from it with HMAC-SHA256 under a label each
//!    (`caxton_cluster::keyring`): a fast derivation is right for a key of
//!    full entropy, which is why guessable ones are refused rather than
//!    stretched.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use caxton_shards::limits::{API_TOKEN_CHARS_MIN, CLUSTER_KEY_BITS_MIN};

/// How to make a good secret (rule 6).
pub const MAKE_A_TOKEN: &str = "openssl rand -hex 32 (or: head -c 32 /dev/urandom | base64)";

/// Is `secret` one of the placeholders of `packaging/` (rule 6)?
fn placeholder(secret: &str) -> bool {
    secret.to_ascii_lowercase().contains("change-me")
}

/// Bits a cluster key's text carries: 4 a character of hex, 6 of base64
/// (either alphabet, padding ignored); `None` for other text (rule 6).
fn key_bits(key: &str) -> Option<usize> {
    let body = key.trim_end_matches('=');
    if !body.is_empty() && body.len().is_multiple_of(2) && body.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Some(body.len() * 4);
    }
    let base64 = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_');
    (!body.is_empty() && body.bytes().all(base64)).then(|| body.len() * 6)
}

/// Rule 6 for an API token.
pub fn check_token(name: &SecretName, token: &str) -> Result<(), String> {
    if placeholder(token) {
        return Err(format!("{}: the placeholder of packaging/secrets.env.example is not a token; make one with {MAKE_A_TOKEN}", name.file_flag));
    }
    if token.chars().count() < API_TOKEN_CHARS_MIN {
        return Err(format!(
            "{}: an API token of {} characters is too easy to guess; give at least {API_TOKEN_CHARS_MIN}, made with {MAKE_A_TOKEN}",
            name.file_flag,
            token.chars().count()
        ));
    }
    Ok(())
}

/// Rule 6 for a cluster key.
pub fn check_cluster_key(name: &SecretName, key: &str) -> Result<(), String> {
    if placeholder(key) {
        return Err(format!("{}: the placeholder of packaging/secrets.env.example is not a key; make one with {MAKE_A_TOKEN}", name.file_flag));
    }
    match key_bits(key) {
        Some(bits) if bits >= CLUSTER_KEY_BITS_MIN => Ok(()),
        Some(bits) => Err(format!(
            "{}: a cluster key of {bits} bits is too weak; give at least {CLUSTER_KEY_BITS_MIN} bits (32 hex digits), made with {MAKE_A_TOKEN}",
            name.file_flag
        )),
        None => Err(format!("{}: a cluster key is hex or base64 text (a random key, not a passphrase); make one with {MAKE_A_TOKEN}", name.file_flag)),
    }
}

/// Rule 6 for every secret given.
pub fn check_strength(secrets: &Secrets) -> Result<(), String> {
    let tokens = [(&API_TOKEN, &secrets.api_token), (&API_TOKEN_NEXT, &secrets.api_token_next)];
    for (name, token) in tokens {
        token.as_deref().map_or(Ok(()), |t| check_token(name, t))?;
    }
    let keys = [(&CLUSTER_KEY, &secrets.cluster_key), (&CLUSTER_KEY_NEXT, &secrets.cluster_key_next)];
    for (name, key) in keys {
        key.as_deref().map_or(Ok(()), |k| check_cluster_key(name, k))?;
    }
    Ok(())
}

/// A secret's flag, its file flag, its environment variable and its
/// systemd credential name.
pub struct SecretName {
    pub flag: &'static str,
    pub file_flag: &'static str,
    pub env: &'static str,
    pub credential: &'static str,
}

pub const API_TOKEN: SecretName = SecretName { flag: "--api-token", file_flag: "--api-token-file", env: "CAXTON_API_TOKEN", credential: "api-token" };
pub const CLUSTER_KEY: SecretName = SecretName { flag: "--cluster-key", file_flag: "--cluster-key-file", env: "CAXTON_CLUSTER_KEY", credential: "cluster-key" };
pub const API_TOKEN_NEXT: SecretName =
    SecretName { flag: "--api-token-next-file", file_flag: "--api-token-next-file", env: "CAXTON_API_TOKEN_NEXT", credential: "api-token-next" };
pub const CLUSTER_KEY_NEXT: SecretName =
    SecretName { flag: "--cluster-key-next-file", file_flag: "--cluster-key-next-file", env: "CAXTON_CLUSTER_KEY_NEXT", credential: "cluster-key-next" };

/// The secrets a command line gives in its arguments (rule 2): one
/// warning for each, naming the safer ways.
pub fn warnings_for_argv(args: &[String]) -> Vec<String> {
    [&API_TOKEN, &CLUSTER_KEY]
        .iter()
        .filter(|s| args.iter().any(|a| *a == s.flag || a.starts_with(&format!("{}=", s.flag))))
        .map(|s| {
            format!(
                "{} was given on the command line, where every local user can read it (/proc/<pid>/cmdline, ps): use {} PATH, the environment ({}) or a systemd credential ({})",
                s.flag, s.file_flag, s.env, s.credential
            )
        })
        .collect()
}

/// Reads a secret file (rule 3). Returns the secret and a warning if the
/// file may be read by others.
pub fn read_secret_file(path: &Path, name: &SecretName) -> Result<(String, Option<String>), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{} {}: {e}", name.file_flag, path.display()))?;
    let secret = text.strip_suffix('\n').unwrap_or(&text);
    let secret = secret.strip_suffix('\r').unwrap_or(secret);
    if secret.is_empty() {
        return Err(format!("{} {}: the file is empty", name.file_flag, path.display()));
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).map(|m| m.permissions().mode()).unwrap_or(0);
    let warning = (mode & 0o077 != 0).then(|| format!("{} {}: others may read it (mode {:o}); chmod 600 it", name.file_flag, path.display(), mode & 0o777));
    Ok((secret.to_string(), warning))
}

/// Where a secret came from: a fixed value (a flag or the environment) or
/// a file read again at every reload (rule 5).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Source {
    #[default]
    None,
    Fixed(String),
    File(PathBuf),
}

/// Picks a secret's one source (rule 1): `given` is the flag's or the
/// environment's value (clap reads both), `file` the file flag's,
/// `credentials` systemd's `$CREDENTIALS_DIRECTORY`.
pub fn pick_source(name: &SecretName, given: Option<String>, file: Option<&Path>, credentials: Option<&Path>) -> Result<Source, String> {
    let given = given.filter(|s| !s.is_empty());
    let credential = credentials.map(|dir| dir.join(name.credential)).filter(|p| p.exists());
    let sources = [given.is_some(), file.is_some(), credential.is_some()];
    if sources.iter().filter(|&&s| s).count() > 1 {
        return Err(format!(
            "{} is given more than once ({} or {}, {}, and the systemd credential {}): give it one way",
            name.flag, name.flag, name.env, name.file_flag, name.credential
        ));
    }
    Ok(match (given, file.map(Path::to_path_buf).or(credential)) {
        (Some(g), _) => Source::Fixed(g),
        (None, Some(path)) => Source::File(path),
        (None, None) => Source::None,
    })
}

impl Source {
    /// The secret now, and a warning if its file may be read by others.
    pub fn read(&self, name: &SecretName) -> Result<(Option<String>, Vec<String>), String> {
        match self {
            Source::None => Ok((None, Vec::new())),
            Source::Fixed(s) => Ok((Some(s.clone()), Vec::new())),
            Source::File(path) => {
                let (secret, warning) = read_secret_file(path, name)?;
                Ok((Some(secret), warning.into_iter().collect()))
            }
        }
    }
}

/// Picks a secret from its one source (rule 1) and reads it. Returns the
/// secret, if any, and warnings to log.
pub fn pick(name: &SecretName, given: Option<String>, file: Option<&Path>, credentials: Option<&Path>) -> Result<(Option<String>, Vec<String>), String> {
    pick_source(name, given, file, credentials)?.read(name)
}

/// The sources of a node's four secrets (rule 5).
#[derive(Debug, Clone, Default)]
pub struct SecretSources {
    pub api_token: Source,
    pub api_token_next: Source,
    pub cluster_key: Source,
    pub cluster_key_next: Source,
}

/// The secrets as read now.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Secrets {
    pub api_token: Option<String>,
    pub api_token_next: Option<String>,
    pub cluster_key: Option<String>,
    pub cluster_key_next: Option<String>,
}

impl SecretSources {
    /// Reads every secret (at start, and again at SIGHUP). A *next* file
    /// that is gone means no next secret: removing it ends a rotation.
    pub fn read_all(&self) -> Result<(Secrets, Vec<String>), String> {
        let mut warnings = Vec::new();
        let mut read = |source: &Source, name: &SecretName, optional: bool| -> Result<Option<String>, String> {
            if let (true, Source::File(path)) = (optional, source) {
                if !path.exists() {
                    return Ok(None);
                }
            }
            let (secret, w) = source.read(name)?;
            warnings.extend(w);
            Ok(secret)
        };
        let secrets = Secrets {
            api_token: read(&self.api_token, &API_TOKEN, false)?,
            api_token_next: read(&self.api_token_next, &API_TOKEN_NEXT, true)?,
            cluster_key: read(&self.cluster_key, &CLUSTER_KEY, false)?,
            cluster_key_next: read(&self.cluster_key_next, &CLUSTER_KEY_NEXT, true)?,
        };
        if secrets.api_token_next.is_some() && secrets.api_token.is_none() {
            return Err("--api-token-next-file needs a current token (--api-token-file)".into());
        }
        check_strength(&secrets)?;
        Ok((secrets, warnings))
    }
}

/// The tokens the API accepts: the current one and, during a rotation, the
/// next one (rule 5). Shared by the API and wire listeners; a reload
/// replaces them.
#[derive(Debug, Clone, Default)]
pub struct ApiTokens {
    tokens: Arc<RwLock<Vec<String>>>,
}

impl ApiTokens {
    pub fn new(current: Option<String>, next: Option<String>) -> ApiTokens {
        let tokens = ApiTokens::default();
        tokens.set(current, next);
        tokens
    }

    pub fn set(&self, current: Option<String>, next: Option<String>) {
        let list: Vec<String> = current.into_iter().chain(next).collect();
        *self.tokens.write().unwrap_or_else(|e| e.into_inner()) = list;
    }

    /// Whether the listeners require a token at all.
    pub fn required(&self) -> bool {
        !self.tokens.read().unwrap_or_else(|e| e.into_inner()).is_empty()
    }

    /// How many tokens are accepted now (1, or 2 during a rotation).
    pub fn count(&self) -> usize {
        self.tokens.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether `given` is one of the tokens (rule 4, each compared whole).
    pub fn accepts(&self, given: &str) -> bool {
        let tokens = self.tokens.read().unwrap_or_else(|e| e.into_inner());
        tokens.iter().fold(false, |ok, t| token_matches(given, t) | ok)
    }
}

/// Does `given` equal the node's `token`? Constant time in the token's
/// length (a length mismatch is refused at once: lengths are not secret).
pub fn token_matches(given: &str, token: &str) -> bool {
    given.len() == token.len() && given.bytes().zip(token.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_on_the_command_line_are_named_in_warnings() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(warnings_for_argv(&args(&["caxton", "serve", "--api-token-file", "/run/t"])).is_empty());
        let w = warnings_for_argv(&args(&["caxton", "serve", "--api-token", "x", "--cluster-key=y"]));
        assert_eq!(w.len(), 2);
        assert!(w[0].starts_with("--api-token was given on the command line") && w[0].contains("--api-token-file"));
        assert!(w[1].contains("CAXTON_CLUSTER_KEY"));
    }

    #[test]
    fn a_secret_comes_from_one_place() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "from-file\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(pick(&API_TOKEN, None, Some(&file), None).unwrap(), (Some("from-file".into()), vec![]));
        assert_eq!(pick(&API_TOKEN, Some("given".into()), None, None).unwrap().0, Some("given".into()));
        assert!(pick(&API_TOKEN, Some("given".into()), Some(&file), None).unwrap_err().contains("one way"));
        assert_eq!(pick(&API_TOKEN, None, None, None).unwrap(), (None, vec![]));
        // systemd credentials: $CREDENTIALS_DIRECTORY/api-token.
        let creds = tempfile::tempdir().unwrap();
        std::fs::write(creds.path().join("api-token"), "from-systemd").unwrap();
        std::fs::set_permissions(creds.path().join("api-token"), std::fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(pick(&API_TOKEN, None, None, Some(creds.path())).unwrap().0, Some("from-systemd".into()));
        assert!(pick(&API_TOKEN, None, Some(&file), Some(creds.path())).is_err());
        assert_eq!(pick(&CLUSTER_KEY, None, None, Some(creds.path())).unwrap().0, None, "no cluster-key credential");
        // Readable by others: works, with a warning; empty: refused.
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (_, warnings) = pick(&API_TOKEN, None, Some(&file), None).unwrap();
        assert!(warnings[0].contains("chmod 600"), "{warnings:?}");
        std::fs::write(&file, "\n").unwrap();
        assert!(pick(&API_TOKEN, None, Some(&file), None).unwrap_err().contains("empty"));
    }

    #[test]
    fn a_reload_reads_the_files_again_and_a_missing_next_file_ends_a_rotation() {
        const OLD: &str = "old-token-0123456789abcdef0123456";
        const NEW: &str = "new-token-0123456789abcdef0123456";
        const KEY: &str = "00112233445566778899aabbccddeeff";
        let dir = tempfile::tempdir().unwrap();
        let (current, next) = (dir.path().join("token"), dir.path().join("token-next"));
        std::fs::write(&current, OLD).unwrap();
        let sources = SecretSources {
            api_token: Source::File(current.clone()),
            api_token_next: Source::File(next.clone()),
            cluster_key: Source::Fixed(KEY.into()),
            ..Default::default()
        };
        let (s, _) = sources.read_all().unwrap();
        assert_eq!((s.api_token.as_deref(), s.api_token_next.as_deref(), s.cluster_key.as_deref()), (Some(OLD), None, Some(KEY)));
        std::fs::write(&next, NEW).unwrap();
        let tokens = ApiTokens::new(s.api_token, s.api_token_next);
        let (s, _) = sources.read_all().unwrap();
        tokens.set(s.api_token, s.api_token_next);
        assert!(tokens.accepts(OLD) && tokens.accepts(NEW) && !tokens.accepts(&NEW[..31]) && tokens.count() == 2);
        std::fs::write(&current, NEW).unwrap();
        std::fs::remove_file(&next).unwrap();
        let (s, _) = sources.read_all().unwrap();
        tokens.set(s.api_token, s.api_token_next);
        assert!(!tokens.accepts(OLD) && tokens.accepts(NEW));
        std::fs::remove_file(&current).unwrap();
        assert!(sources.read_all().is_err(), "the current token's file is required");
        assert!(!ApiTokens::new(None, None).required());
    }

    #[test]
    fn weak_tokens_keys_and_the_placeholders_are_refused_with_how_to_make_good_ones() {
        let strong_token = "a".repeat(API_TOKEN_CHARS_MIN);
        assert!(check_token(&API_TOKEN, &strong_token).is_ok());
        let e = check_token(&API_TOKEN, "x").unwrap_err();
        assert!(e.contains("1 characters") && e.contains("openssl rand"), "{e}");
        assert!(check_token(&API_TOKEN, &"b".repeat(API_TOKEN_CHARS_MIN - 1)).is_err());
        assert!(check_token(&API_TOKEN, "change-me-to-a-long-random-string").unwrap_err().contains("placeholder"));
        for good in ["00112233445566778899aabbccddeeff", "AAECAwQFBgcICQoLDA0ODw==", "0123456789abcdefghijklmnopq_-"] {
            assert!(check_cluster_key(&CLUSTER_KEY, good).is_ok(), "{good}");
        }
        for (weak, why) in [
            ("00112233445566778899aabbccddee", "120 bits"),
            ("AAECAwQFBgcICQ==", "bits is too weak"),
            ("a secret of 16+ bytes", "not a passphrase"),
            ("change-me-too-at-least-16-bytes", "placeholder"),
        ] {
            let e = check_cluster_key(&CLUSTER_KEY, weak).unwrap_err();
            assert!(e.contains(why) && e.contains("openssl rand"), "{weak}: {e}");
        }
        // Every placeholder shipped is refused.
        let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/secrets.env.example")).unwrap();
        for line in example.lines().filter(|l| l.starts_with("CAXTON_") || l.starts_with("# CAXTON_")).filter_map(|l| l.split_once('=')) {
            assert!(placeholder(line.1), "{line:?}");
        }
    }

    #[test]
    fn only_the_same_token_matches() {
        assert!(token_matches("s3cret", "s3cret"));
        assert!(!token_matches("s3creT", "s3cret"));
        assert!(!token_matches("s3cre", "s3cret"));
        assert!(!token_matches("", "s3cret"));
    }
}
