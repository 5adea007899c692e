//! Tokens minted by the emulator, their scopes and grants.

use rand::Rng;
use serde::{Deserialize, Serialize};

pub(crate) const SCOPE_WORKLOAD_READ: &str = "workload:read";
pub(crate) const SCOPE_WORKLOAD_WRITE: &str = "workload:write";
pub(crate) const SCOPE_ASSIGNMENT_WRITE: &str = "assignment:write";

/// Which plane a token is for, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Kind {
    Sdk,
    Live,
}

/// One token and what it may do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TokenRecord {
    pub(crate) token: String,
    pub(crate) kind: Kind,
    pub(crate) project: String,
    /// Control-token scopes; empty for data keys.
    #[serde(default)]
    pub(crate) scopes: Vec<String>,
    /// Data-key grants, `project/workload` or `project/*`; empty for control tokens.
    #[serde(default)]
    pub(crate) grants: Vec<String>,
    #[serde(default)]
    pub(crate) revoked: bool,
}

impl TokenRecord {
    pub(crate) fn mint_sdk(project: &str, scopes: &[&str]) -> Self {
        TokenRecord {
            token: random_token("sdk"),
            kind: Kind::Sdk,
            project: project.to_owned(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            grants: Vec::new(),
            revoked: false,
        }
    }

    pub(crate) fn mint_live(project: &str, grants: &[&str]) -> Self {
        TokenRecord {
            token: random_token("live"),
            kind: Kind::Live,
            project: project.to_owned(),
            scopes: Vec::new(),
            grants: grants.iter().map(|s| (*s).to_owned()).collect(),
            revoked: false,
        }
    }

    /// Whether a control token may perform an operation needing `scope`. Write implies
    /// read; a revoked token has no scope at all.
    pub(crate) fn has_scope(&self, scope: &str) -> bool {
        if self.revoked {
            return false;
        }
        self.scopes
            .iter()
            .any(|s| s == scope || (scope == SCOPE_WORKLOAD_READ && s == SCOPE_WORKLOAD_WRITE))
    }

    /// Whether a data key covers `project/workload`.
    pub(crate) fn grants_workload(&self, project: &str, workload: &str) -> bool {
        !self.revoked
            && self.grants.iter().any(|g| match g.split_once('/') {
                Some((p, w)) => p == project && (w == "*" || w == workload),
                None => false,
            })
    }
}

/// `ik_<kind>_<8 hex id>_<64 hex secret>`, from the thread-local CSPRNG.
fn random_token(kind: &str) -> String {
    format!("ik_{kind}_{}_{}", random_hex(4), random_hex(32))
}

/// `bytes` random bytes as lowercase hex.
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut rng = rand::rng();
    let mut out = String::with_capacity(bytes * 2);
    for _ in 0..bytes {
        let b: u8 = rng.random();
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The credentials of one project, as handed to the host program.
#[derive(Clone, PartialEq, Eq)]
pub struct ProjectCredentials {
    /// The project slug used in paths.
    pub project: String,
    /// `ik_sdk_` token with `workload:write`, `assignment:write` and `workload:read`.
    pub sdk_token: String,
    /// `ik_sdk_` token with `workload:read` only.
    pub read_only_token: String,
    /// `ik_live_` key granted `project/*`.
    pub api_key: String,
}

impl std::fmt::Debug for ProjectCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use inferencekey_core::wire::redact_token;
        f.debug_struct("ProjectCredentials")
            .field("project", &self.project)
            .field("sdk_token", &redact_token(&self.sdk_token))
            .field("read_only_token", &redact_token(&self.read_only_token))
            .field("api_key", &redact_token(&self.api_key))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_shape() {
        let t = TokenRecord::mint_sdk("demo", &[SCOPE_WORKLOAD_READ]).token;
        let rest = t.strip_prefix("ik_sdk_").unwrap();
        let (id, secret) = rest.split_once('_').unwrap();
        assert_eq!(id.len(), 8);
        assert_eq!(secret.len(), 64);
        assert!(
            id.chars()
                .chain(secret.chars())
                .all(|c| c.is_ascii_hexdigit())
        );
    }

    #[test]
    fn scopes_and_grants() {
        let w = TokenRecord::mint_sdk("p", &[SCOPE_WORKLOAD_WRITE]);
        assert!(w.has_scope(SCOPE_WORKLOAD_READ));
        assert!(!w.has_scope(SCOPE_ASSIGNMENT_WRITE));
        let k = TokenRecord::mint_live("p", &["p/a", "q/*"]);
        assert!(k.grants_workload("p", "a"));
        assert!(!k.grants_workload("p", "b"));
        assert!(k.grants_workload("q", "z"));
    }
}
