/// The two kinds of credential (PROTOCOL.md §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// `ik_sdk_…`: a control-plane token bound to one project.
    Sdk,
    /// `ik_live_…`: a data-plane key with workload grants.
    Live,
}

impl TokenKind {
    /// The token prefix, e.g. `ik_sdk_`.
    pub fn prefix(self) -> &'static str {
        match self {
            TokenKind::Sdk => "ik_sdk_",
            TokenKind::Live => "ik_live_",
        }
    }
}

/// The kind a token claims by its prefix, or `None` for anything else.
///
/// Only the prefix is inspected: the server decides whether the rest is valid.
pub fn token_kind(token: &str) -> Option<TokenKind> {
    if token.starts_with("ik_sdk_") {
        Some(TokenKind::Sdk)
    } else if token.starts_with("ik_live_") {
        Some(TokenKind::Live)
    } else {
        None
    }
}

/// The redacted form of a token for logs, errors and reprs (PROTOCOL.md §1).
///
/// ```
/// use inferencekey_core::wire::redact_token;
/// let key = format!("ik_live_5c07e1aa_{}", "0".repeat(64));
/// assert_eq!(redact_token(&key), "ik_live_5c07e1aa…");
/// assert_eq!(redact_token("sk-something"), "ik…");
/// ```
pub fn redact_token(token: &str) -> String {
    match token_kind(token) {
        Some(kind) => {
            let rest = &token[kind.prefix().len()..];
            let id: String = rest
                .chars()
                .take_while(|c| c.is_ascii_hexdigit())
                .take(8)
                .collect();
            format!("{}{}…", kind.prefix(), id)
        }
        None => "ik…".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_never_shows_the_secret() {
        let secret = "ab".repeat(32);
        let token = format!("ik_sdk_0123abcd_{secret}");
        let red = redact_token(&token);
        assert_eq!(red, "ik_sdk_0123abcd…");
        assert!(!red.contains(&secret));
        assert_eq!(redact_token("ik_sdk_"), "ik_sdk_…");
        assert_eq!(redact_token("Bearer x"), "ik…");
    }

    #[test]
    fn kinds() {
        assert_eq!(token_kind("ik_sdk_1"), Some(TokenKind::Sdk));
        assert_eq!(token_kind("ik_live_1"), Some(TokenKind::Live));
        assert_eq!(token_kind("ik_other"), None);
    }
}
