//! The client side of Postgres authentication: the proxy logging in to the upstream server
//! as a service's upstream role, right after it has sent the StartupMessage.
//!
//! Supports trust, cleartext password, MD5 and SCRAM-SHA-256(-PLUS) through
//! postgres-protocol's SCRAM client (which verifies the server's signature, so a server that
//! does not know the password is not believed). Every frame is length-checked against
//! [`MAX_AUTH_FRAME_BYTES`] before it is buffered. Bytes the server sends after
//! AuthenticationOk (ParameterStatus, BackendKeyData, ReadyForQuery) stay in the caller's
//! buffer. The caller bounds the whole exchange in time (the startup timeout).

use bytes::{Buf, BytesMut};
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{
    ChannelBinding, ScramSha256, SCRAM_SHA_256, SCRAM_SHA_256_PLUS,
};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::AuthError;

/// Largest backend message accepted during authentication (type byte and length included).
pub const MAX_AUTH_FRAME_BYTES: usize = 64 * 1024;

/// What the upstream connection can offer for SCRAM channel binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamChannelBinding {
    /// No TLS, or no binding data for the server's certificate: never bind (gs2 flag `n`).
    Disabled,
    /// TLS with the server certificate's `tls-server-end-point` hash
    /// ([`tls_server_end_point`](super::tls_server_end_point)): bind when the server offers
    /// SCRAM-SHA-256-PLUS, otherwise say we could have (`y`) so a downgrade is detected.
    Prefer(Vec<u8>),
    /// As `Prefer`, and refuse every login that is not a completed SCRAM-SHA-256-PLUS exchange
    /// (trust, password, MD5 or plain SCRAM), like libpq's `channel_binding=require`.
    Require(Vec<u8>),
}

/// Authentication request codes (the int32 after the 'R' header).
mod code {
    pub const OK: u32 = 0;
    pub const KERBEROS_V5: u32 = 2;
    pub const CLEARTEXT: u32 = 3;
    pub const MD5: u32 = 5;
    pub const SCM_CREDENTIAL: u32 = 6;
    pub const GSS: u32 = 7;
    pub const GSS_CONTINUE: u32 = 8;
    pub const SSPI: u32 = 9;
    pub const SASL: u32 = 10;
    pub const SASL_CONTINUE: u32 = 11;
    pub const SASL_FINAL: u32 = 12;
}

/// Where a SCRAM exchange with the server stands.
enum Sasl {
    NotStarted,
    /// Sent SASLInitialResponse or SASLResponse; `plus` records the mechanism.
    InProgress {
        scram: Box<ScramSha256>,
        plus: bool,
    },
    /// The server's signature verified.
    Finished {
        plus: bool,
    },
}

/// Log in to the upstream server as `user`. Call after sending the StartupMessage; returns
/// at AuthenticationOk with any following bytes left in `read_buf`.
pub async fn authenticate_upstream<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    read_buf: &mut BytesMut,
    user: &str,
    password: Option<&str>,
    channel_binding: UpstreamChannelBinding,
) -> Result<(), AuthError> {
    let require_binding = matches!(channel_binding, UpstreamChannelBinding::Require(_));
    let need_password = || password.ok_or_else(|| AuthError::UpstreamPasswordMissing(user.into()));
    let mut sasl = Sasl::NotStarted;
    let mut out = BytesMut::new();
    loop {
        let (tag, mut body) = read_frame(stream, read_buf).await?;
        match tag {
            b'R' => {}
            b'E' => return Err(parse_error_response(&body)),
            // Notices may arrive at any time; NegotiateProtocolVersion only says the server
            // ignored an option we did not send. Neither changes the login.
            b'N' | b'v' => continue,
            other => {
                return Err(AuthError::UpstreamProtocol(format!(
                    "unexpected message type {:?} during authentication",
                    char::from(other)
                )))
            }
        }
        if body.len() < 4 {
            return Err(AuthError::UpstreamProtocol(
                "authentication request too short".into(),
            ));
        }
        let request = body.get_u32();
        out.clear();
        match request {
            code::OK => {
                return match sasl {
                    Sasl::InProgress { .. } => Err(AuthError::UpstreamScram(
                        "server sent AuthenticationOk before completing SCRAM".into(),
                    )),
                    Sasl::Finished { plus: true } => Ok(()),
                    _ if require_binding => Err(AuthError::UpstreamChannelBindingRequired),
                    _ => Ok(()),
                };
            }
            code::CLEARTEXT | code::MD5 if require_binding => {
                return Err(AuthError::UpstreamChannelBindingRequired)
            }
            code::CLEARTEXT => {
                frontend::password_message(need_password()?.as_bytes(), &mut out)?;
            }
            code::MD5 => {
                if body.len() != 4 {
                    return Err(AuthError::UpstreamProtocol(
                        "MD5 salt is not 4 bytes".into(),
                    ));
                }
                let salt = [body[0], body[1], body[2], body[3]];
                let hash = md5_hash(user.as_bytes(), need_password()?.as_bytes(), salt);
                frontend::password_message(hash.as_bytes(), &mut out)?;
            }
            code::SASL => {
                if !matches!(sasl, Sasl::NotStarted) {
                    return Err(AuthError::UpstreamProtocol("SASL restarted".into()));
                }
                let (mechanism, binding, plus) = choose_mechanism(&body, &channel_binding)?;
                let scram = ScramSha256::new(need_password()?.as_bytes(), binding);
                frontend::sasl_initial_response(mechanism, scram.message(), &mut out)?;
                sasl = Sasl::InProgress {
                    scram: Box::new(scram),
                    plus,
                };
            }
            code::SASL_CONTINUE => {
                let Sasl::InProgress { scram, .. } = &mut sasl else {
                    return Err(AuthError::UpstreamProtocol(
                        "SASLContinue outside a SASL exchange".into(),
                    ));
                };
                scram
                    .update(&body)
                    .map_err(|e| AuthError::UpstreamScram(e.to_string()))?;
                frontend::sasl_response(scram.message(), &mut out)?;
            }
            code::SASL_FINAL => {
                let Sasl::InProgress { scram, plus } = &mut sasl else {
                    return Err(AuthError::UpstreamProtocol(
                        "SASLFinal outside a SASL exchange".into(),
                    ));
                };
                scram
                    .finish(&body)
                    .map_err(|e| AuthError::UpstreamScram(e.to_string()))?;
                sasl = Sasl::Finished { plus: *plus };
                continue; // nothing to send; AuthenticationOk follows
            }
            other => return Err(AuthError::UnsupportedUpstreamMethod(method_name(other))),
        }
        stream.write_all(&out).await?;
        stream.flush().await?;
    }
}

/// Pick the SCRAM variant the way tokio-postgres does, from the server's mechanism list.
fn choose_mechanism(
    list: &[u8],
    channel_binding: &UpstreamChannelBinding,
) -> Result<(&'static str, ChannelBinding, bool), AuthError> {
    let mut has_plain = false;
    let mut has_plus = false;
    let mut names = Vec::new();
    let mut rest = list;
    loop {
        let end = rest.iter().position(|&b| b == 0).ok_or_else(|| {
            AuthError::UpstreamProtocol("unterminated SASL mechanism list".into())
        })?;
        if end == 0 {
            break;
        }
        let name = &rest[..end];
        has_plain |= name == SCRAM_SHA_256.as_bytes();
        has_plus |= name == SCRAM_SHA_256_PLUS.as_bytes();
        names.push(String::from_utf8_lossy(name).into_owned());
        rest = &rest[end + 1..];
    }
    let data = match channel_binding {
        UpstreamChannelBinding::Disabled => None,
        UpstreamChannelBinding::Prefer(data) | UpstreamChannelBinding::Require(data) => {
            Some(data.clone())
        }
    };
    let require = matches!(channel_binding, UpstreamChannelBinding::Require(_));
    match data {
        Some(data) if has_plus => Ok((
            SCRAM_SHA_256_PLUS,
            ChannelBinding::tls_server_end_point(data),
            true,
        )),
        _ if require => Err(AuthError::UpstreamChannelBindingRequired),
        Some(_) if has_plain => Ok((SCRAM_SHA_256, ChannelBinding::unrequested(), false)),
        None if has_plain => Ok((SCRAM_SHA_256, ChannelBinding::unsupported(), false)),
        _ => Err(AuthError::UnsupportedUpstreamMethod(format!(
            "SASL ({})",
            names.join(", ")
        ))),
    }
}

fn method_name(request: u32) -> String {
    let name = match request {
        code::KERBEROS_V5 => "Kerberos V5",
        code::SCM_CREDENTIAL => "SCM credentials",
        code::GSS | code::GSS_CONTINUE => "GSSAPI",
        code::SSPI => "SSPI",
        _ => "unknown",
    };
    format!("{name} ({request})")
}

/// Read one complete backend message from `stream` into `buf` and split it off:
/// (type, body). Refuses lengths below 4 or above [`MAX_AUTH_FRAME_BYTES`] before buffering.
async fn read_frame<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
) -> Result<(u8, BytesMut), AuthError> {
    loop {
        if buf.len() >= 5 {
            let declared = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
            let len = usize::try_from(declared)
                .ok()
                .filter(|&len| len >= 4)
                .ok_or_else(|| {
                    AuthError::UpstreamProtocol(format!("invalid message length {declared}"))
                })?;
            let total = len + 1;
            if total > MAX_AUTH_FRAME_BYTES {
                return Err(AuthError::UpstreamFrameTooLarge(total));
            }
            if buf.len() >= total {
                let mut frame = buf.split_to(total);
                let tag = frame[0];
                frame.advance(5);
                return Ok((tag, frame));
            }
            buf.reserve(total - buf.len());
        } else {
            buf.reserve(1024);
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(AuthError::UpstreamClosed);
        }
    }
}

/// SQLSTATE ('C') and message ('M') of an ErrorResponse body.
fn parse_error_response(body: &[u8]) -> AuthError {
    let mut code = String::new();
    let mut message = String::new();
    let mut rest = body;
    while let Some((&field, tail)) = rest.split_first() {
        if field == 0 {
            break;
        }
        let Some(end) = tail.iter().position(|&b| b == 0) else {
            break;
        };
        let value = String::from_utf8_lossy(&tail[..end]);
        match field {
            b'C' => code = value.into_owned(),
            b'M' => message = value.into_owned(),
            _ => {}
        }
        rest = &tail[end + 1..];
    }
    if code.is_empty() {
        // Not a well-formed ErrorResponse; still a refusal, with an internal-error class.
        code = "XX000".to_owned();
    }
    AuthError::UpstreamRejected { code, message }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        out.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    /// Feed a hostile or broken server's bytes, which a real Postgres never sends (the
    /// behaviour against a real server is tested in tests/upstream_auth.rs). Returns the
    /// result, what we sent, and what is left over.
    async fn run(
        server_bytes: Vec<u8>,
        password: Option<&str>,
        binding: UpstreamChannelBinding,
    ) -> (Result<(), AuthError>, Vec<u8>, BytesMut) {
        let (mut ours, mut theirs) = tokio::io::duplex(1 << 20);
        theirs.write_all(&server_bytes).await.unwrap();
        // The server says no more: reads past its bytes see end of stream.
        theirs.shutdown().await.unwrap();
        let mut buf = BytesMut::new();
        let result = authenticate_upstream(&mut ours, &mut buf, "bob", password, binding).await;
        drop(ours);
        let mut sent = Vec::new();
        theirs.read_to_end(&mut sent).await.unwrap();
        (result, sent, buf)
    }

    #[tokio::test]
    async fn hostile_or_broken_server_input() {
        let err_body =
            b"SFATAL\0VFATAL\0C28P01\0Mpassword authentication failed for user \"bob\"\0\0";
        let (result, _, _) = run(
            frame(b'E', err_body),
            Some("pw"),
            UpstreamChannelBinding::Disabled,
        )
        .await;
        match result {
            Err(AuthError::UpstreamRejected { code, message }) => {
                assert_eq!(code, "28P01");
                assert_eq!(message, "password authentication failed for user \"bob\"");
            }
            other => panic!("{other:?}"),
        }

        let (result, _, _) = run(
            frame(b'R', &7u32.to_be_bytes()),
            Some("pw"),
            UpstreamChannelBinding::Disabled,
        )
        .await;
        assert!(
            matches!(&result, Err(AuthError::UnsupportedUpstreamMethod(m)) if m == "GSSAPI (7)"),
            "{result:?}"
        );

        let (result, sent, _) = run(
            frame(b'R', &3u32.to_be_bytes()),
            None,
            UpstreamChannelBinding::Disabled,
        )
        .await;
        assert!(matches!(result, Err(AuthError::UpstreamPasswordMissing(_))));
        assert!(sent.is_empty());

        let mut huge = vec![b'R'];
        huge.put_i32(MAX_AUTH_FRAME_BYTES as i32);
        let (result, _, _) = run(huge, Some("pw"), UpstreamChannelBinding::Disabled).await;
        assert!(
            matches!(result, Err(AuthError::UpstreamFrameTooLarge(_))),
            "{result:?}"
        );

        for bad_len in [-1i32, 0, 3] {
            let mut bytes = vec![b'R'];
            bytes.put_i32(bad_len);
            let (result, _, _) = run(bytes, Some("pw"), UpstreamChannelBinding::Disabled).await;
            assert!(
                matches!(result, Err(AuthError::UpstreamProtocol(_))),
                "{result:?}"
            );
        }

        // The connection ends mid-frame.
        let (result, _, _) = run(
            vec![b'R', 0, 0],
            Some("pw"),
            UpstreamChannelBinding::Disabled,
        )
        .await;
        assert!(
            matches!(result, Err(AuthError::UpstreamClosed)),
            "{result:?}"
        );

        // A server that claims success in the middle of SCRAM is not believed.
        let mut sasl = 10u32.to_be_bytes().to_vec();
        sasl.extend_from_slice(b"SCRAM-SHA-256\0\0");
        let mut script = frame(b'R', &sasl);
        script.extend_from_slice(&frame(b'R', &0u32.to_be_bytes()));
        let (result, _, _) = run(script, Some("pw"), UpstreamChannelBinding::Disabled).await;
        assert!(
            matches!(result, Err(AuthError::UpstreamScram(_))),
            "{result:?}"
        );

        // Channel binding required: trust and MD5 are refused.
        let (result, _, _) = run(
            frame(b'R', &0u32.to_be_bytes()),
            None,
            UpstreamChannelBinding::Require(vec![1; 32]),
        )
        .await;
        assert!(matches!(
            result,
            Err(AuthError::UpstreamChannelBindingRequired)
        ));
        let (result, _, _) = run(
            frame(b'R', &sasl),
            Some("pw"),
            UpstreamChannelBinding::Require(vec![1; 32]),
        )
        .await;
        assert!(matches!(
            result,
            Err(AuthError::UpstreamChannelBindingRequired)
        ));
    }

    #[test]
    fn mechanism_choice() {
        let both = b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0";
        let plain = b"SCRAM-SHA-256\0\0";
        let data = vec![9u8; 32];
        let pick = |list: &[u8], cb: UpstreamChannelBinding| {
            choose_mechanism(list, &cb).map(|(m, _, plus)| (m, plus))
        };
        assert_eq!(
            pick(both, UpstreamChannelBinding::Prefer(data.clone())).unwrap(),
            (SCRAM_SHA_256_PLUS, true)
        );
        assert_eq!(
            pick(both, UpstreamChannelBinding::Disabled).unwrap(),
            (SCRAM_SHA_256, false)
        );
        assert_eq!(
            pick(plain, UpstreamChannelBinding::Prefer(data.clone())).unwrap(),
            (SCRAM_SHA_256, false)
        );
        assert!(matches!(
            pick(plain, UpstreamChannelBinding::Require(data)),
            Err(AuthError::UpstreamChannelBindingRequired)
        ));
        assert!(matches!(
            pick(b"OAUTHBEARER\0\0", UpstreamChannelBinding::Disabled),
            Err(AuthError::UnsupportedUpstreamMethod(_))
        ));
        assert!(matches!(
            pick(b"SCRAM-SHA-256", UpstreamChannelBinding::Disabled),
            Err(AuthError::UpstreamProtocol(_))
        ));
    }
}
