//! The one error type of the SDK: a kind, an HTTP status, a server code, a request id
//! and a message that never contains a secret.

use std::fmt;

/// What went wrong, coarsely: each kind maps to one Python exception class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Missing token, project or key, malformed base URL: raised before any request.
    Configuration,
    /// Bad arguments checked locally, HTTP 400/422, or `OnDrift::Fail`.
    Validation,
    /// HTTP 401.
    Auth,
    /// HTTP 403 (`wrong_credential_type`, `project_scope_mismatch`, `scope_insufficient`).
    Permission,
    /// Any other non-2xx status, a transport failure, a malformed response or a stream
    /// cut short.
    Api,
    /// A timeout or deadline passed.
    Timeout,
    /// The operation was cancelled by the caller.
    Cancelled,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Configuration => "configuration",
            ErrorKind::Validation => "validation",
            ErrorKind::Auth => "auth",
            ErrorKind::Permission => "permission",
            ErrorKind::Api => "api",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Cancelled => "cancelled",
        }
    }

    /// The kind an HTTP error status maps to (PROTOCOL.md §2.2, API.md errors table).
    pub fn from_status(status: u16) -> ErrorKind {
        match status {
            400 | 422 => ErrorKind::Validation,
            401 => ErrorKind::Auth,
            403 => ErrorKind::Permission,
            408 => ErrorKind::Timeout,
            _ => ErrorKind::Api,
        }
    }
}

/// The SDK's error. Build it with the constructors; read it with the accessors.
#[derive(Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    status: Option<u16>,
    code: Option<String>,
    request_id: Option<String>,
    message: String,
}

/// `Result` with the SDK's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            status: None,
            code: None,
            request_id: None,
            message: message.into(),
        }
    }

    pub fn configuration(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Configuration, message)
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Validation, message)
    }

    pub fn api(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Api, message)
    }

    pub fn timeout(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Timeout, message)
    }

    pub fn cancelled(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Cancelled, message)
    }

    /// An error for an HTTP status, with the server's code and request id when known.
    pub fn http(
        status: u16,
        code: Option<String>,
        request_id: Option<String>,
        message: impl Into<String>,
    ) -> Self {
        Error {
            kind: ErrorKind::from_status(status),
            status: Some(status),
            code,
            request_id,
            message: message.into(),
        }
    }

    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    pub fn with_request_id(mut self, request_id: Option<String>) -> Self {
        self.request_id = request_id;
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn status(&self) -> Option<u16> {
        self.status
    }

    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// The human-readable message, without status, code or request id.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether the error is a timeout of any sort.
    pub fn is_timeout(&self) -> bool {
        self.kind == ErrorKind::Timeout
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        match (self.status, self.code.as_deref()) {
            (Some(s), Some(c)) => write!(f, " (HTTP {s}, {c})")?,
            (Some(s), None) => write!(f, " (HTTP {s})")?,
            (None, Some(c)) => write!(f, " ({c})")?,
            (None, None) => {}
        }
        if let Some(id) = &self.request_id {
            write!(f, " [request {id}]")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("status", &self.status)
            .field("code", &self.code)
            .field("request_id", &self.request_id)
            .field("message", &self.message)
            .finish()
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_includes_status_code_and_request_id() {
        let e = Error::http(
            403,
            Some("scope_insufficient".into()),
            Some("req_9".into()),
            "token lacks workload:write",
        );
        assert_eq!(e.kind(), ErrorKind::Permission);
        assert_eq!(
            e.to_string(),
            "token lacks workload:write (HTTP 403, scope_insufficient) [request req_9]"
        );
    }

    #[test]
    fn status_mapping() {
        assert_eq!(ErrorKind::from_status(422), ErrorKind::Validation);
        assert_eq!(ErrorKind::from_status(401), ErrorKind::Auth);
        assert_eq!(ErrorKind::from_status(503), ErrorKind::Api);
    }
}
