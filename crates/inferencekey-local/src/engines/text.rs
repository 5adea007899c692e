//! Simulated text generation: a templated reply that reuses words of the last user
//! message, cut into word-sized tokens.

use inferencekey_core::wire::ChatMessage;

/// Words too common to be worth echoing.
const STOPWORDS: &[&str] = &[
    "the", "and", "for", "with", "that", "this", "you", "your", "are", "was", "what", "how", "can",
    "please", "from", "have", "has", "into", "about", "there", "their", "would", "could", "should",
    "will", "not", "but", "all", "any", "our", "its", "one", "who", "why", "when", "where",
    "which", "does", "did", "is", "it", "of", "to", "in", "on", "a", "an",
];

/// A generated reply, split into tokens whose concatenation is the text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reply {
    pub(crate) tokens: Vec<String>,
    /// `stop` when the reply is complete, `length` when `max_tokens` cut it.
    pub(crate) finish_reason: &'static str,
    pub(crate) prompt_tokens: u64,
}

impl Reply {
    pub(crate) fn text(&self) -> String {
        self.tokens.concat()
    }

    pub(crate) fn completion_tokens(&self) -> u64 {
        self.tokens.len() as u64
    }
}

/// Tokens counted the way the engine counts them: one per whitespace-separated piece.
pub(crate) fn count_tokens(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// Splits text into tokens, each word carrying the whitespace before it.
fn tokenize(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    for c in text.chars() {
        if c.is_whitespace() {
            if in_word {
                out.push(std::mem::take(&mut current));
                in_word = false;
            }
        } else {
            in_word = true;
        }
        current.push(c);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// The key words of a message: distinct, in order, without stopwords, at most six.
fn key_words(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for word in text.split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '-')) {
        let word = word.trim_matches(|c: char| c == '\'' || c == '-');
        if word.chars().count() < 3 || STOPWORDS.contains(&word.to_lowercase().as_str()) {
            continue;
        }
        if !out.iter().any(|w| w.eq_ignore_ascii_case(word)) {
            out.push(word.to_owned());
        }
        if out.len() == 6 {
            break;
        }
    }
    out
}

fn join_words(words: &[String]) -> String {
    match words {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// The full reply text for a conversation, before any `max_tokens` cut.
fn compose(model: &str, messages: &[ChatMessage]) -> String {
    let last = messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .or_else(|| messages.last())
        .and_then(|m| m.content.as_deref())
        .unwrap_or("");
    let words = key_words(last);
    if words.is_empty() {
        format!(
            "Hello! This is a simulated reply from {model} on the local InferenceKey \
             platform. Ask a longer question and I will answer with its key words."
        )
    } else {
        format!(
            "You asked about {}. This is a simulated answer from {model} on the local \
             InferenceKey platform: it reuses the words of your message and runs no model.",
            join_words(&words)
        )
    }
}

/// Generates the reply to a conversation, cut at `max_tokens` when given.
pub(crate) fn generate(model: &str, messages: &[ChatMessage], max_tokens: Option<u32>) -> Reply {
    let mut tokens = tokenize(&compose(model, messages));
    let mut finish_reason = "stop";
    if let Some(max) = max_tokens {
        let max = max as usize;
        if tokens.len() > max {
            tokens.truncate(max);
            finish_reason = "length";
        }
    }
    let prompt_tokens = messages
        .iter()
        .map(|m| count_tokens(m.content.as_deref().unwrap_or("")) + 1)
        .sum();
    Reply {
        tokens,
        finish_reason,
        prompt_tokens,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_words_and_is_deterministic() {
        let messages = vec![
            ChatMessage::new("system", "Be brief."),
            ChatMessage::new("user", "Summarise ticket 4411 about the refund policy"),
        ];
        let a = generate("m", &messages, None);
        assert_eq!(a, generate("m", &messages, None));
        let text = a.text();
        assert!(
            text.contains("Summarise, ticket, 4411, refund and policy"),
            "{text}"
        );
        assert_eq!(a.finish_reason, "stop");
        assert_eq!(a.completion_tokens(), count_tokens(&text));
    }

    #[test]
    fn max_tokens_cuts_with_length() {
        let messages = vec![ChatMessage::new("user", "hi")];
        let r = generate("m", &messages, Some(3));
        assert_eq!(r.tokens.len(), 3);
        assert_eq!(r.finish_reason, "length");
        assert_eq!(r.text(), "Hello! This is");
    }
}
