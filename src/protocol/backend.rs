//! Backend messages the proxy writes itself (authentication exchange, its own BackendKeyData,
//! ReadyForQuery) and the few it reads (ErrorResponse fields).

use bytes::BytesMut;

use super::frame::put_frame;

/// Transaction status byte of `ReadyForQuery`.
pub const STATUS_IDLE: u8 = b'I';
pub const STATUS_IN_TRANSACTION: u8 = b'T';
pub const STATUS_FAILED: u8 = b'E';

pub fn put_auth_ok(out: &mut BytesMut) {
    put_frame(out, b'R', &0i32.to_be_bytes());
}

/// AuthenticationSASL listing the mechanisms.
pub fn put_auth_sasl(out: &mut BytesMut, mechanisms: &[&str]) {
    let mut body = 10i32.to_be_bytes().to_vec();
    for m in mechanisms {
        body.extend_from_slice(m.as_bytes());
        body.push(0);
    }
    body.push(0);
    put_frame(out, b'R', &body);
}

pub fn put_auth_sasl_continue(out: &mut BytesMut, data: &[u8]) {
    let mut body = 11i32.to_be_bytes().to_vec();
    body.extend_from_slice(data);
    put_frame(out, b'R', &body);
}

pub fn put_auth_sasl_final(out: &mut BytesMut, data: &[u8]) {
    let mut body = 12i32.to_be_bytes().to_vec();
    body.extend_from_slice(data);
    put_frame(out, b'R', &body);
}

pub fn put_backend_key_data(out: &mut BytesMut, process_id: i32, secret_key: i32) {
    let mut body = [0u8; 8];
    body[..4].copy_from_slice(&process_id.to_be_bytes());
    body[4..].copy_from_slice(&secret_key.to_be_bytes());
    put_frame(out, b'K', &body);
}

pub fn put_ready_for_query(out: &mut BytesMut, status: u8) {
    put_frame(out, b'Z', &[status]);
}

pub fn put_parameter_status(out: &mut BytesMut, name: &str, value: &str) {
    let mut body = Vec::with_capacity(name.len() + value.len() + 2);
    body.extend_from_slice(name.as_bytes());
    body.push(0);
    body.extend_from_slice(value.as_bytes());
    body.push(0);
    put_frame(out, b'S', &body);
}

/// NegotiateProtocolVersion: the newest protocol version we support (3.0) and the protocol
/// options (`_pq_.*` startup parameters) we do not understand. The version goes on the wire as
/// the full version code (196608), as Postgres sends it: libpq compares it with full codes and
/// refuses a bare minor number ("0" reads as protocol 0.0).
pub fn put_negotiate_protocol_version(out: &mut BytesMut, unsupported: &[&str]) {
    let mut body = super::startup::PROTOCOL_3_0.to_be_bytes().to_vec();
    body.extend_from_slice(&(unsupported.len() as i32).to_be_bytes());
    for opt in unsupported {
        body.extend_from_slice(opt.as_bytes());
        body.push(0);
    }
    put_frame(out, b'v', &body);
}

/// One field of an ErrorResponse/NoticeResponse body, by its code byte.
pub fn error_field(frame: &[u8], code: u8) -> Option<&str> {
    let body = frame.get(super::frame::HEADER_LEN..)?;
    let mut rest = body;
    while let Some((&field, tail)) = rest.split_first() {
        if field == 0 {
            return None;
        }
        let end = tail.iter().position(|b| *b == 0)?;
        if field == code {
            return std::str::from_utf8(&tail[..end]).ok();
        }
        rest = &tail[end + 1..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::PgError;

    #[test]
    fn negotiate_protocol_version_carries_the_full_version_code() {
        let mut out = BytesMut::new();
        put_negotiate_protocol_version(&mut out, &["_pq_.x"]);
        // Checked against Postgres 15's answer to a 3.2 startup with one unknown option.
        let mut want = vec![b'v', 0, 0, 0, 19, 0, 3, 0, 0, 0, 0, 0, 1];
        want.extend_from_slice(b"_pq_.x\0");
        assert_eq!(out.to_vec(), want);
    }

    #[test]
    fn reads_fields_of_error_responses() {
        let frame = PgError::forbidden("no").with_hint("h").to_frame();
        assert_eq!(error_field(&frame, b'C'), Some("42501"));
        assert_eq!(error_field(&frame, b'M'), Some("no"));
        assert_eq!(error_field(&frame, b'H'), Some("h"));
        assert_eq!(error_field(&frame, b'D'), None);
        assert_eq!(error_field(&frame[..7], b'M'), None);
    }
}
