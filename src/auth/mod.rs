//! Authentication: clients (services) to the proxy, and the proxy to the upstream server.
//!
//! - [`scram`]: the server side of SCRAM-SHA-256(-PLUS) that services authenticate with.
//! - [`verifier`]: the stored verifier format, deriving verifiers from passwords (SASLprep),
//!   mock verifiers for unknown services.
//! - [`channel_binding`]: `tls-server-end-point` data of a certificate, for `-PLUS`.
//! - [`secrets`]: turning a policy's [`SecretSource`](crate::policy::compiled::SecretSource)
//!   into a verifier (for services) or a password (for upstream roles).
//! - [`upstream`]: the client side of Postgres authentication (trust, password, MD5, SCRAM)
//!   run right after the proxy sends its StartupMessage upstream.
//!
//! Errors are one [`AuthError`]; [`AuthError::to_pg_error`] decides what a client sees.
//! Nothing in this module logs or formats a secret.

pub mod channel_binding;
pub mod scram;
pub mod secrets;
pub mod upstream;
pub mod verifier;

use std::path::PathBuf;

pub use scram::{
    dummy_verifier, tls_server_end_point, ScramServer, ScramVerifier, DEFAULT_ITERATIONS,
    SCRAM_SHA_256, SCRAM_SHA_256_PLUS,
};
pub use secrets::{resolve_password, resolve_verifier};
pub use upstream::{authenticate_upstream, UpstreamChannelBinding, MAX_AUTH_FRAME_BYTES};

use crate::error::{sqlstate, PgError};

/// Everything that can go wrong while authenticating, on either side of the proxy.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    // ---- Stored secrets -------------------------------------------------------------------
    /// A verifier string is not `SCRAM-SHA-256$iter:salt$stored:server`; never echoes it.
    #[error("malformed SCRAM-SHA-256 verifier: {0}")]
    MalformedVerifier(&'static str),
    #[error("environment variable {0} is not set or not valid UTF-8")]
    SecretEnvMissing(String),
    #[error("cannot read secret file {path}: {source}")]
    SecretFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("secret from {0} is larger than {max} bytes", max = secrets::MAX_SECRET_BYTES)]
    SecretTooLarge(String),
    #[error("secret from {0} is empty")]
    SecretEmpty(String),
    /// Services authenticate with SCRAM only; an MD5 hash cannot verify a SCRAM exchange.
    #[error("secret from {0} is an MD5 hash; use a SCRAM-SHA-256 verifier or a password")]
    Md5SecretNotSupported(String),
    /// An upstream role needs a password to log in; a verifier cannot be used for that.
    #[error("upstream password from {0} is a SCRAM verifier; a password is needed")]
    VerifierAsPassword(String),

    // ---- Clients authenticating to the proxy ---------------------------------------------
    #[error("client selected an invalid SASL authentication mechanism {0:?}")]
    UnsupportedMechanism(String),
    #[error("malformed SCRAM message: {0}")]
    MalformedScramMessage(String),
    #[error("{0}")]
    UnsupportedScramFeature(&'static str),
    #[error("SCRAM channel binding negotiation error: {0}")]
    ChannelBindingNegotiation(&'static str),
    #[error("SCRAM channel binding check failed")]
    ChannelBindingMismatch,
    /// Wrong password, unknown service (mock verifier) or a nonce that does not match: one
    /// variant for all, so that nothing distinguishes them.
    #[error("password authentication failed")]
    AuthenticationFailed,
    #[error("SCRAM exchange step out of order")]
    ScramOutOfOrder,

    // ---- The proxy authenticating to the upstream server ---------------------------------
    /// The upstream server sent an ErrorResponse (wrong password, no pg_hba entry, ...).
    #[error("upstream server refused the login: {code} {message}")]
    UpstreamRejected { code: String, message: String },
    /// GSSAPI, SSPI, Kerberos and other methods the proxy cannot perform.
    #[error("upstream server requested unsupported authentication method {0}")]
    UnsupportedUpstreamMethod(String),
    #[error("upstream server requested a password for role {0:?} but none is configured")]
    UpstreamPasswordMissing(String),
    /// The server's SCRAM messages were invalid or its signature did not verify (it does not
    /// know the password: possibly not the real server).
    #[error("upstream SCRAM exchange failed: {0}")]
    UpstreamScram(String),
    #[error("channel binding is required but the upstream server authenticated without it")]
    UpstreamChannelBindingRequired,
    #[error("upstream protocol violation during authentication: {0}")]
    UpstreamProtocol(String),
    #[error("upstream authentication message of {0} bytes exceeds the limit")]
    UpstreamFrameTooLarge(usize),
    #[error("upstream server closed the connection during authentication")]
    UpstreamClosed,
    #[error("I/O error during upstream authentication: {0}")]
    Io(#[from] std::io::Error),
}

impl AuthError {
    /// The error to send to the client `user` (the service name from the startup packet).
    ///
    /// Failures of the client's own credentials map to one indistinguishable 28P01; broken
    /// SCRAM messages to 08P01 as in Postgres; problems with the proxy's configuration or
    /// the upstream login to a generic upstream failure (details belong in the proxy's log,
    /// not with the client), except upstream refusals a client can act on (unknown database,
    /// too many connections, server starting up or shutting down), which keep their SQLSTATE.
    pub fn to_pg_error(&self, user: &str) -> PgError {
        match self {
            AuthError::AuthenticationFailed => PgError::auth_failed(user),
            AuthError::UnsupportedMechanism(_)
            | AuthError::MalformedScramMessage(_)
            | AuthError::ScramOutOfOrder => PgError::protocol_violation(self.to_string()),
            AuthError::UnsupportedScramFeature(_) => {
                PgError::fatal(sqlstate::FEATURE_NOT_SUPPORTED, self.to_string())
            }
            AuthError::ChannelBindingNegotiation(_) | AuthError::ChannelBindingMismatch => {
                PgError::fatal(sqlstate::INVALID_AUTHORIZATION, self.to_string())
            }
            AuthError::UpstreamRejected { code, message }
                if code.starts_with("3D") || code.starts_with("53") || code.starts_with("57") =>
            {
                PgError::fatal(passthrough_code(code), message.clone())
            }
            AuthError::UpstreamClosed | AuthError::Io(_) => {
                PgError::upstream_unavailable("connection to the upstream server was lost")
            }
            _ => PgError::fatal(
                sqlstate::UNABLE_TO_CONNECT,
                "the proxy could not log in to the upstream server",
            ),
        }
    }
}

/// `PgError` carries `&'static str` codes; keep the upstream's code when it is one a client
/// reacts to, otherwise its class's generic code.
fn passthrough_code(code: &str) -> &'static str {
    match code {
        "3D000" => "3D000", // invalid_catalog_name: database does not exist
        "53300" => sqlstate::TOO_MANY_CONNECTIONS,
        "57P01" => sqlstate::ADMIN_SHUTDOWN,
        "57P02" => "57P02", // crash_shutdown
        "57P03" => "57P03", // cannot_connect_now: starting up / recovery
        c if c.starts_with("3D") => "3D000",
        c if c.starts_with("53") => "53000", // insufficient_resources
        _ => "57000",                        // operator_intervention
    }
}

/// A SCRAM-SHA-256 verifier for `password` with [`DEFAULT_ITERATIONS`] and a random salt,
/// in Postgres's text form (`pgpurpose hash-password`).
pub fn hash_password(password: &str) -> String {
    ScramVerifier::from_password(password, DEFAULT_ITERATIONS).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_password_makes_a_verifier_for_that_password() {
        let text = hash_password("hunter2");
        assert!(text.starts_with("SCRAM-SHA-256$4096:"), "{text}");
        let verifier = ScramVerifier::parse(&text).unwrap();
        let mut server = ScramServer::new(verifier.clone(), None);
        let mut client = postgres_protocol::authentication::sasl::ScramSha256::new(
            b"hunter2",
            postgres_protocol::authentication::sasl::ChannelBinding::unsupported(),
        );
        let first = server
            .client_first(SCRAM_SHA_256, client.message())
            .unwrap();
        client.update(&first).unwrap();
        let last = server.client_final(client.message()).unwrap();
        client.finish(&last).unwrap();
        assert_ne!(hash_password("hunter2"), text, "fresh salt each time");
    }

    #[test]
    fn client_errors_map_to_postgres_sqlstates() {
        let cases: Vec<(AuthError, &str)> = vec![
            (AuthError::AuthenticationFailed, sqlstate::INVALID_PASSWORD),
            (
                AuthError::MalformedScramMessage("x".into()),
                sqlstate::PROTOCOL_VIOLATION,
            ),
            (
                AuthError::ChannelBindingMismatch,
                sqlstate::INVALID_AUTHORIZATION,
            ),
            (
                AuthError::UnsupportedScramFeature("authzid"),
                sqlstate::FEATURE_NOT_SUPPORTED,
            ),
            (
                AuthError::UpstreamRejected {
                    code: "3D000".into(),
                    message: "database \"nope\" does not exist".into(),
                },
                "3D000",
            ),
            (
                AuthError::UpstreamRejected {
                    code: "28P01".into(),
                    message: "password authentication failed for user \"app_rw\"".into(),
                },
                sqlstate::UNABLE_TO_CONNECT,
            ),
            (
                AuthError::UpstreamPasswordMissing("app".into()),
                sqlstate::UNABLE_TO_CONNECT,
            ),
            (AuthError::UpstreamClosed, sqlstate::CONNECTION_FAILURE),
        ];
        for (err, code) in cases {
            let pg = err.to_pg_error("svc");
            assert_eq!(pg.code, code, "{err:?}");
            // Upstream role names and messages about the proxy's own login stay in the log.
            assert!(!pg.message.contains("app_rw"), "{pg}");
        }
        assert_eq!(
            AuthError::AuthenticationFailed.to_pg_error("svc").message,
            "password authentication failed for user \"svc\""
        );
    }
}
