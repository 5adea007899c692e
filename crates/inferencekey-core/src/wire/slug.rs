/// Canonicalises a slug the way the server stores it (PROTOCOL.md §3.3).
///
/// Every character that is not an ASCII letter or digit becomes `-`, the result is
/// lowercased, runs of `-` collapse into one, and leading and trailing `-` go.
///
/// ```
/// use inferencekey_core::wire::canonical_slug;
/// assert_eq!(canonical_slug("Triage Bot (v2)"), "triage-bot-v2");
/// assert_eq!(canonical_slug("  ops__Summariser..EU "), "ops-summariser-eu");
/// assert_eq!(canonical_slug("---"), "");
/// ```
pub fn canonical_slug(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut pending_dash = false;
    for c in raw.chars() {
        if c.is_ascii_alphanumeric() {
            if pending_dash && !out.is_empty() {
                out.push('-');
            }
            pending_dash = false;
            out.push(c.to_ascii_lowercase());
        } else {
            pending_dash = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::canonical_slug;

    #[test]
    fn examples_from_the_protocol() {
        assert_eq!(canonical_slug("Triage Bot (v2)"), "triage-bot-v2");
        assert_eq!(
            canonical_slug("  ops__Summariser..EU "),
            "ops-summariser-eu"
        );
    }

    #[test]
    fn idempotent_and_ascii_only() {
        for s in ["a", "A-b", "é-x", "x--y", "-x-", "ÄÖÜ", "chat-1"] {
            let once = canonical_slug(s);
            assert_eq!(canonical_slug(&once), once);
            assert!(
                once.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            );
        }
        assert_eq!(canonical_slug("é-x"), "x");
        assert_eq!(canonical_slug("ÄÖÜ"), "");
    }
}
