//! Framing of regular (typed) protocol messages: one type byte, then a big-endian `i32` length
//! that counts itself but not the type byte.

use bytes::BytesMut;
use thiserror::Error;

/// Bytes of a typed message header: type byte plus length.
pub const HEADER_LEN: usize = 5;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("invalid message length {0}")]
    InvalidLength(i32),
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
}

/// The header of a typed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub tag: u8,
    /// Total bytes on the wire, header included.
    pub frame_len: usize,
}

impl FrameHeader {
    pub fn body_len(&self) -> usize {
        self.frame_len - HEADER_LEN
    }
}

/// Read the header at the start of `buf`, if five bytes are there. Lengths below 4 are invalid
/// (the length counts itself) and lengths above `limit` are refused before any body is buffered.
pub fn peek_header(buf: &[u8], limit: usize) -> Result<Option<FrameHeader>, FrameError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if len < 4 {
        return Err(FrameError::InvalidLength(len));
    }
    let frame_len = len as usize + 1;
    if frame_len > limit {
        return Err(FrameError::TooLarge {
            size: frame_len,
            limit,
        });
    }
    Ok(Some(FrameHeader {
        tag: buf[0],
        frame_len,
    }))
}

/// Split one complete frame off the front of `buf`, if it is all there.
pub fn take_frame(
    buf: &mut BytesMut,
    limit: usize,
) -> Result<Option<(FrameHeader, BytesMut)>, FrameError> {
    match peek_header(buf, limit)? {
        Some(h) if buf.len() >= h.frame_len => Ok(Some((h, buf.split_to(h.frame_len)))),
        _ => Ok(None),
    }
}

/// Append a frame with the given tag and body.
pub fn put_frame(out: &mut BytesMut, tag: u8, body: &[u8]) {
    out.reserve(HEADER_LEN + body.len());
    out.extend_from_slice(&[tag]);
    out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_complete_frames_and_waits_for_partial_ones() {
        let mut buf = BytesMut::new();
        put_frame(&mut buf, b'Q', b"select 1\0");
        buf.extend_from_slice(&[b'S', 0, 0]);
        let (h, frame) = take_frame(&mut buf, 1 << 20).unwrap().unwrap();
        assert_eq!(h.tag, b'Q');
        assert_eq!(h.body_len(), 9);
        assert_eq!(&frame[5..], b"select 1\0");
        assert_eq!(take_frame(&mut buf, 1 << 20).unwrap(), None);
        assert_eq!(buf.len(), 3);
    }

    #[test]
    fn refuses_invalid_and_oversized_lengths_before_buffering() {
        assert_eq!(
            peek_header(&[b'Q', 0, 0, 0, 3], 100),
            Err(FrameError::InvalidLength(3))
        );
        assert_eq!(
            peek_header(&[b'Q', 0xff, 0xff, 0xff, 0xff], 100),
            Err(FrameError::InvalidLength(-1))
        );
        assert_eq!(
            peek_header(&[b'Q', 0, 0, 1, 0], 100),
            Err(FrameError::TooLarge {
                size: 257,
                limit: 100
            })
        );
    }
}
