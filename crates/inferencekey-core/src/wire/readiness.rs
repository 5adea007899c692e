use serde::{Deserialize, Serialize};

/// A readiness phase (PROTOCOL.md §3.5). Unknown phases are kept and are non-terminal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Phase {
    Scheduling,
    Provisioning,
    Bootstrapping,
    Ready,
    Error,
    Other(String),
}

impl Phase {
    pub fn as_str(&self) -> &str {
        match self {
            Phase::Scheduling => "scheduling",
            Phase::Provisioning => "provisioning",
            Phase::Bootstrapping => "bootstrapping",
            Phase::Ready => "ready",
            Phase::Error => "error",
            Phase::Other(s) => s,
        }
    }

    /// `ready` and `error` end a readiness stream; everything else, unknown phases
    /// included, does not.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Phase::Ready | Phase::Error)
    }
}

impl From<&str> for Phase {
    fn from(s: &str) -> Self {
        match s {
            "scheduling" => Phase::Scheduling,
            "provisioning" => Phase::Provisioning,
            "bootstrapping" => Phase::Bootstrapping,
            "ready" => Phase::Ready,
            "error" => Phase::Error,
            other => Phase::Other(other.to_owned()),
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Phase {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Phase {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(Phase::from(s.as_str()))
    }
}

/// One readiness event: `{"phase", "message", "elapsed_ms", "step"?}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadinessEvent {
    pub phase: Phase,
    pub message: String,
    /// Milliseconds since this connection opened; an integer, never a float.
    pub elapsed_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_unknown_phase() {
        let e: ReadinessEvent = serde_json::from_str(
            r#"{"phase":"bootstrapping","message":"Loading","elapsed_ms":84210,"step":"model_load","x":1}"#,
        )
        .unwrap();
        assert_eq!(e.phase, Phase::Bootstrapping);
        assert_eq!(e.step.as_deref(), Some("model_load"));
        let u: ReadinessEvent =
            serde_json::from_str(r#"{"phase":"warming","message":"m","elapsed_ms":1}"#).unwrap();
        assert_eq!(u.phase, Phase::Other("warming".into()));
        assert!(!u.phase.is_terminal());
        assert_eq!(
            serde_json::to_string(&u).unwrap(),
            r#"{"phase":"warming","message":"m","elapsed_ms":1}"#
        );
    }

    #[test]
    fn float_elapsed_is_rejected() {
        assert!(
            serde_json::from_str::<ReadinessEvent>(
                r#"{"phase":"ready","message":"m","elapsed_ms":1.5}"#
            )
            .is_err()
        );
    }
}
