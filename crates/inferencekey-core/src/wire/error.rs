use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The error envelope the platform (and the emulator) sends: `{"error": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

/// The object inside [`ErrorEnvelope`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl ErrorEnvelope {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorEnvelope {
            error: ErrorBody {
                code: code.into(),
                message: message.into(),
                request_id: None,
            },
        }
    }

    pub fn with_request_id(mut self, request_id: impl Into<String>) -> Self {
        self.error.request_id = Some(request_id.into());
        self
    }
}

/// What could be read out of an error body of any shape.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecodedError {
    pub code: Option<String>,
    pub message: Option<String>,
    pub request_id: Option<String>,
}

/// The longest slice of a non-JSON body quoted in an error message.
pub const MAX_QUOTED_BODY_CHARS: usize = 500;

/// Decodes any error body variant of PROTOCOL.md §2.1 without ever failing.
///
/// Handles the envelope, the bare-string form (with an optional sibling `message`),
/// OpenAI-style errors whose `code` is null or a number, `{"object": "error", ...}`,
/// and non-JSON bodies, which are quoted (whitespace folded, at most
/// [`MAX_QUOTED_BODY_CHARS`] characters) as the message.
pub fn decode_error_body(body: &[u8]) -> DecodedError {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => {
            let top_message = map.get("message").and_then(text_of);
            let mut out = DecodedError {
                request_id: map.get("request_id").and_then(text_of),
                ..DecodedError::default()
            };
            match map.get("error") {
                Some(Value::Object(inner)) => {
                    out.code = inner
                        .get("code")
                        .and_then(text_of)
                        .or_else(|| inner.get("type").and_then(text_of));
                    out.message = inner.get("message").and_then(text_of).or(top_message);
                    if let Some(id) = inner.get("request_id").and_then(text_of) {
                        out.request_id = Some(id);
                    }
                }
                Some(Value::String(code)) => {
                    out.code = Some(code.clone()).filter(|c| !c.trim().is_empty());
                    out.message = top_message;
                }
                _ => {
                    out.code = map.get("code").and_then(text_of);
                    out.message = top_message.or_else(|| map.get("detail").and_then(text_of));
                }
            }
            out
        }
        Ok(Value::String(s)) => DecodedError {
            message: Some(quote_body(s.as_bytes())).filter(|m| !m.is_empty()),
            ..DecodedError::default()
        },
        _ => DecodedError {
            message: Some(quote_body(body)).filter(|m| !m.is_empty()),
            ..DecodedError::default()
        },
    }
}

/// A code or message value as text: strings as they are, numbers printed, the rest none.
fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A body quoted for a message: lossy UTF-8, whitespace folded, capped in length.
pub fn quote_body(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out = String::new();
    let mut count = 0;
    for word in text.split_whitespace() {
        if !out.is_empty() {
            // The cap is checked here too, so that a cut at a word boundary neither
            // overshoots it nor leaves a space before the ellipsis.
            if count + 1 >= MAX_QUOTED_BODY_CHARS {
                out.push('…');
                return out;
            }
            out.push(' ');
            count += 1;
        }
        for c in word.chars() {
            if count >= MAX_QUOTED_BODY_CHARS {
                out.push('…');
                return out;
            }
            out.push(c);
            count += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope() {
        let d = decode_error_body(
            br#"{"error":{"code":"project_scope_mismatch","message":"nope","request_id":"req_1"}}"#,
        );
        assert_eq!(d.code.as_deref(), Some("project_scope_mismatch"));
        assert_eq!(d.message.as_deref(), Some("nope"));
        assert_eq!(d.request_id.as_deref(), Some("req_1"));
    }

    #[test]
    fn bare_string_with_sibling_message() {
        let d = decode_error_body(br#"{"error":"scope_insufficient","message":"no write"}"#);
        assert_eq!(d.code.as_deref(), Some("scope_insufficient"));
        assert_eq!(d.message.as_deref(), Some("no write"));
        let d = decode_error_body(br#"{"error":"scope_insufficient"}"#);
        assert_eq!(d.code.as_deref(), Some("scope_insufficient"));
        assert_eq!(d.message, None);
    }

    #[test]
    fn openai_style_with_null_or_numeric_code() {
        let d = decode_error_body(
            br#"{"error":{"message":"bad","type":"invalid_request_error","code":null}}"#,
        );
        assert_eq!(d.code.as_deref(), Some("invalid_request_error"));
        assert_eq!(d.message.as_deref(), Some("bad"));
        let d = decode_error_body(br#"{"error":{"message":"x","type":"t","code":400}}"#);
        assert_eq!(d.code.as_deref(), Some("400"));
    }

    #[test]
    fn object_error() {
        let d = decode_error_body(br#"{"object":"error","message":"model not found","code":404}"#);
        assert_eq!(d.message.as_deref(), Some("model not found"));
        assert_eq!(d.code.as_deref(), Some("404"));
    }

    #[test]
    fn html_is_quoted_and_capped() {
        let page = format!("<html>\n<body>{}</body></html>", "x".repeat(2000));
        let d = decode_error_body(page.as_bytes());
        assert_eq!(d.code, None);
        let m = d.message.unwrap();
        assert!(m.starts_with("<html> <body>xxx"));
        assert_eq!(m.chars().count(), MAX_QUOTED_BODY_CHARS + 1);
    }

    /// Found by `fuzz_error_body_any_json`: a blank bare-string code was returned as
    /// the code `""`.
    #[test]
    fn regression_blank_bare_string_code_is_no_code() {
        let d = decode_error_body(br#"{"error":"  ","message":"m"}"#);
        assert_eq!(d.code, None);
        assert_eq!(d.message.as_deref(), Some("m"));
        assert_eq!(decode_error_body(br#"{"error":""}"#).code, None);
    }

    /// Found by `fuzz_quote_body`: a cut falling on a word boundary went one character
    /// over the cap (a space, then the ellipsis).
    #[test]
    fn regression_quote_cap_at_a_word_boundary() {
        let body = format!("{} {}", "a".repeat(MAX_QUOTED_BODY_CHARS), "b".repeat(10));
        let q = quote_body(body.as_bytes());
        assert_eq!(q.chars().count(), MAX_QUOTED_BODY_CHARS + 1);
        assert!(q.ends_with("a…"), "{q}");
        let body = format!(
            "{} {}",
            "a".repeat(MAX_QUOTED_BODY_CHARS - 1),
            "b".repeat(10)
        );
        let q = quote_body(body.as_bytes());
        assert!(q.chars().count() <= MAX_QUOTED_BODY_CHARS + 1);
        assert!(!q.contains(" …"), "{q}");
    }

    #[test]
    fn garbage_never_fails() {
        for body in [
            &b""[..],
            b"\xff\xfe",
            b"[1,2]",
            b"null",
            b"{\"error\":[]}",
            b"42",
        ] {
            let _ = decode_error_body(body);
        }
        assert_eq!(decode_error_body(b"").message, None);
    }
}
