//! The untyped packets that open a connection: SSLRequest, GSSENCRequest, CancelRequest and the
//! StartupMessage with its parameters.

use bytes::{Buf, BytesMut};
use thiserror::Error;

/// Protocol version 3.0 as a startup code.
pub const PROTOCOL_3_0: i32 = 196_608;
const SSL_REQUEST: i32 = 80_877_103;
const GSSENC_REQUEST: i32 = 80_877_104;
const CANCEL_REQUEST: i32 = 80_877_102;
/// Postgres refuses startup packets above 10000 bytes; so do we.
pub const MAX_STARTUP_PACKET: usize = 10_000;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum StartupError {
    #[error("invalid startup packet length {0}")]
    InvalidLength(i32),
    #[error("unsupported frontend protocol {major}.{minor}")]
    UnsupportedProtocol { major: i32, minor: i32 },
    #[error("invalid startup packet layout")]
    Malformed,
    #[error("startup parameters are not valid UTF-8")]
    NotUtf8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket {
    SslRequest,
    GssEncRequest,
    Cancel {
        process_id: i32,
        secret_key: i32,
    },
    Startup {
        minor_version: i32,
        params: Vec<(String, String)>,
    },
}

/// Parse one startup packet from the front of `buf` if it is complete.
pub fn take_startup_packet(buf: &mut BytesMut) -> Result<Option<StartupPacket>, StartupError> {
    if buf.len() < 8 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if len < 8 || len as usize > MAX_STARTUP_PACKET {
        return Err(StartupError::InvalidLength(len));
    }
    let len = len as usize;
    if buf.len() < len {
        return Ok(None);
    }
    let mut packet = buf.split_to(len);
    packet.advance(4);
    let code = packet.get_i32();
    match code {
        SSL_REQUEST if len == 8 => Ok(Some(StartupPacket::SslRequest)),
        GSSENC_REQUEST if len == 8 => Ok(Some(StartupPacket::GssEncRequest)),
        CANCEL_REQUEST if len == 16 => Ok(Some(StartupPacket::Cancel {
            process_id: packet.get_i32(),
            secret_key: packet.get_i32(),
        })),
        SSL_REQUEST | GSSENC_REQUEST | CANCEL_REQUEST => Err(StartupError::Malformed),
        code if code >> 16 == 3 => {
            let params = parse_params(&packet)?;
            Ok(Some(StartupPacket::Startup {
                minor_version: code & 0xffff,
                params,
            }))
        }
        code => Err(StartupError::UnsupportedProtocol {
            major: code >> 16,
            minor: code & 0xffff,
        }),
    }
}

/// Name/value pairs, each a C string, ended by an empty name.
fn parse_params(body: &[u8]) -> Result<Vec<(String, String)>, StartupError> {
    let mut params = Vec::new();
    let mut parts = body.split(|b| *b == 0);
    loop {
        let name = parts.next().ok_or(StartupError::Malformed)?;
        if name.is_empty() {
            break;
        }
        let value = parts.next().ok_or(StartupError::Malformed)?;
        let name = std::str::from_utf8(name).map_err(|_| StartupError::NotUtf8)?;
        let value = std::str::from_utf8(value).map_err(|_| StartupError::NotUtf8)?;
        params.push((name.to_owned(), value.to_owned()));
    }
    // After the terminating empty name there must be nothing but the final split remainder.
    match parts.next() {
        Some(rest) if rest.is_empty() && parts.next().is_none() => Ok(params),
        _ => Err(StartupError::Malformed),
    }
}

/// Encode a StartupMessage (protocol 3.0) with the given parameters.
pub fn encode_startup(params: &[(&str, &str)]) -> BytesMut {
    let mut body = Vec::with_capacity(128);
    body.extend_from_slice(&PROTOCOL_3_0.to_be_bytes());
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut out = BytesMut::with_capacity(body.len() + 4);
    out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Encode an SSLRequest.
pub fn encode_ssl_request() -> [u8; 8] {
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&8i32.to_be_bytes());
    out[4..].copy_from_slice(&SSL_REQUEST.to_be_bytes());
    out
}

/// Encode a CancelRequest.
pub fn encode_cancel(process_id: i32, secret_key: i32) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..4].copy_from_slice(&16i32.to_be_bytes());
    out[4..8].copy_from_slice(&CANCEL_REQUEST.to_be_bytes());
    out[8..12].copy_from_slice(&process_id.to_be_bytes());
    out[12..].copy_from_slice(&secret_key.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_round_trip() {
        let mut buf = encode_startup(&[("user", "ads-service"), ("database", "app")]);
        let packet = take_startup_packet(&mut buf).unwrap().unwrap();
        assert_eq!(
            packet,
            StartupPacket::Startup {
                minor_version: 0,
                params: vec![
                    ("user".into(), "ads-service".into()),
                    ("database".into(), "app".into())
                ]
            }
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn special_requests() {
        let mut buf = BytesMut::from(&encode_ssl_request()[..]);
        assert_eq!(
            take_startup_packet(&mut buf).unwrap(),
            Some(StartupPacket::SslRequest)
        );
        let mut buf = BytesMut::from(&encode_cancel(7, -9)[..]);
        assert_eq!(
            take_startup_packet(&mut buf).unwrap(),
            Some(StartupPacket::Cancel {
                process_id: 7,
                secret_key: -9
            })
        );
    }

    #[test]
    fn malformed_packets_are_refused() {
        let mut buf = BytesMut::from(&[0u8, 0, 0, 4, 0, 3, 0, 0][..]);
        assert_eq!(
            take_startup_packet(&mut buf),
            Err(StartupError::InvalidLength(4))
        );
        // Missing the final terminator.
        let mut bad = encode_startup(&[("user", "x")]);
        let n = bad.len();
        bad.truncate(n - 1);
        bad[3] -= 1;
        assert_eq!(take_startup_packet(&mut bad), Err(StartupError::Malformed));
        let mut v2 = BytesMut::from(&[0u8, 0, 0, 8, 0, 2, 0, 0][..]);
        assert_eq!(
            take_startup_packet(&mut v2),
            Err(StartupError::UnsupportedProtocol { major: 2, minor: 0 })
        );
        let mut huge = BytesMut::from(&[0u8, 1, 0, 0, 0, 3, 0, 0][..]);
        assert!(take_startup_packet(&mut huge).is_err());
    }
}
