//! Errors as the client sees them: a Postgres `ErrorResponse` with a SQLSTATE.
//!
//! Every module keeps its own `thiserror` enum; at the boundary to the client each of them is
//! turned into a [`PgError`] through one of the named constructors below, so the SQLSTATE a
//! client sees for a given situation is decided in exactly one place.

use bytes::BytesMut;
use pgwire::error::ErrorInfo;
use pgwire::messages::response::ErrorResponse;
use pgwire::messages::Message;

/// SQLSTATE codes the proxy itself emits (Appendix A of the Postgres manual).
pub mod sqlstate {
    /// insufficient_privilege: a statement the policy forbids.
    pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
    /// invalid_password: wrong password or unknown service (deliberately indistinguishable).
    pub const INVALID_PASSWORD: &str = "28P01";
    /// invalid_authorization_specification: e.g. plaintext refused when TLS is required.
    pub const INVALID_AUTHORIZATION: &str = "28000";
    /// protocol_violation: malformed or refused frontend message.
    pub const PROTOCOL_VIOLATION: &str = "08P01";
    /// connection_failure: upstream unreachable.
    pub const CONNECTION_FAILURE: &str = "08006";
    /// sqlclient_unable_to_establish_sqlconnection: upstream refused the session.
    pub const UNABLE_TO_CONNECT: &str = "08001";
    /// sqlserver_rejected_establishment_of_sqlconnection: the client address made too many
    /// failed authentication attempts (`limits.auth_failures_per_minute`).
    pub const CONNECTION_REJECTED: &str = "08004";
    /// too_many_connections.
    pub const TOO_MANY_CONNECTIONS: &str = "53300";
    /// feature_not_supported: FunctionCall, replication, unsupported protocol versions.
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
    /// character_not_in_repertoire: SQL text that is not valid UTF-8.
    pub const CHARACTER_NOT_IN_REPERTOIRE: &str = "22021";
    /// program_limit_exceeded: message or statement above the configured limits.
    pub const PROGRAM_LIMIT_EXCEEDED: &str = "54000";
    /// admin_shutdown: the proxy is shutting down.
    pub const ADMIN_SHUTDOWN: &str = "57P01";
    /// idle_session_timeout.
    pub const IDLE_SESSION_TIMEOUT: &str = "57P05";
    /// syntax_error: SQL the analyser cannot parse.
    pub const SYNTAX_ERROR: &str = "42601";
    /// io_error: the audit log cannot be written.
    pub const IO_ERROR: &str = "58030";
    /// internal_error.
    pub const INTERNAL_ERROR: &str = "XX000";
}

/// Severity of an error sent to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The statement fails; the session continues.
    Error,
    /// The session ends after this message.
    Fatal,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
        }
    }
}

/// An error to be sent to a client as an `ErrorResponse`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgError {
    pub severity: Severity,
    pub code: &'static str,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.severity.as_str(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for PgError {}

impl PgError {
    /// A statement-level error: the session stays usable.
    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        PgError {
            severity: Severity::Error,
            code,
            message: message.into(),
            detail: None,
            hint: None,
        }
    }

    /// A session-ending error.
    pub fn fatal(code: &'static str, message: impl Into<String>) -> Self {
        PgError {
            severity: Severity::Fatal,
            code,
            message: message.into(),
            detail: None,
            hint: None,
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The statement is forbidden by policy (or could not be understood well enough to allow it).
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::error(sqlstate::INSUFFICIENT_PRIVILEGE, message)
    }

    /// Wrong password or unknown service: one message for both, so services cannot be enumerated.
    pub fn auth_failed(service: &str) -> Self {
        Self::fatal(
            sqlstate::INVALID_PASSWORD,
            format!("password authentication failed for user \"{service}\""),
        )
    }

    pub fn protocol_violation(message: impl Into<String>) -> Self {
        Self::fatal(sqlstate::PROTOCOL_VIOLATION, message)
    }

    pub fn upstream_unavailable(message: impl Into<String>) -> Self {
        Self::fatal(sqlstate::CONNECTION_FAILURE, message)
    }

    /// Encode as an `ErrorResponse` frame appended to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        let mut info = ErrorInfo::new(
            self.severity.as_str().to_owned(),
            self.code.to_owned(),
            self.message.clone(),
        );
        info.severity_nonlocalized = Some(self.severity.as_str().to_owned());
        info.detail = self.detail.clone();
        info.hint = self.hint.clone();
        let response: ErrorResponse = info.into();
        // Encoding only fails for messages above pgwire's size limit; our messages are short,
        // and the fallback keeps the client informed rather than silently dropping the error.
        if response.encode(out).is_err() {
            encode_minimal_error(out, self.code);
        }
    }

    /// The encoded `ErrorResponse` as a standalone buffer.
    pub fn to_frame(&self) -> BytesMut {
        let mut out = BytesMut::with_capacity(128);
        self.encode(&mut out);
        out
    }
}

fn encode_minimal_error(out: &mut BytesMut, code: &str) {
    use bytes::BufMut;
    let body: Vec<u8> = [
        b"SERROR\0".as_slice(),
        b"C",
        code.as_bytes(),
        b"\0",
        b"Mpgpurpose error\0",
        b"\0",
    ]
    .concat();
    out.put_u8(b'E');
    out.put_i32((body.len() + 4) as i32);
    out.extend_from_slice(&body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_error_response_with_sqlstate_and_hint() {
        let frame = PgError::forbidden("column users.phone_2fa is not allowed")
            .with_hint("ask the data owner")
            .to_frame();
        assert_eq!(frame[0], b'E');
        let len = i32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]) as usize;
        assert_eq!(len + 1, frame.len());
        let body = &frame[5..];
        assert!(body.windows(6).any(|w| w == b"C42501"));
        assert!(body
            .windows(18)
            .any(|w| w == b"Hask the data owner"[..18].as_ref()));
        assert_eq!(*body.last().unwrap(), 0);
    }
}
