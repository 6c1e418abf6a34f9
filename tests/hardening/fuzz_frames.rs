//! Fuzz target: frontend message framing, through the functions the relay itself calls
//! (`protocol::startup::take_startup_packet`, `protocol::frame::take_frame`,
//! `protocol::frontend::{query_text, parse_message}`).
//!
//! Inputs: byte streams built from the seed corpus (`fuzz/corpus/frames/*.hex`), from
//! well-formed messages of every frontend type, and from random headers with truncated,
//! negative, oversized and boundary lengths, then mutated. Each stream is fed whole and in
//! random chunks (as reads arrive from a socket).
//!
//! Properties: no panic; the chunked and the whole feeding yield the same packets, frames and
//! error; a frame is never larger than the limit and is exactly the bytes it claims; a length
//! over the limit is refused as soon as the header is in (before any body is buffered); a
//! decoded Query / Parse re-encodes to the very same bytes.

use std::time::Instant;

use bytes::BytesMut;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use pgpurpose::protocol::frame::{put_frame, take_frame, FrameError, HEADER_LEN};
use pgpurpose::protocol::frontend::{parse_message, put_parse, put_query, query_text};
use pgpurpose::protocol::startup::{
    encode_startup, take_startup_packet, StartupError, StartupPacket, MAX_STARTUP_PACKET,
};

/// The relay's default message limit is configurable; the fuzzer uses a small one so that
/// "oversized" is cheap to reach, and the 1 GiB protocol maximum.
const LIMITS: &[usize] = &[64, 4096, 1 << 30];

/// Frontend message types (and a few that are not).
const TAGS: &[u8] = b"QPBEDCSHXFdcfp\0\xff";

/// Decode a `.hex` corpus file: hex digits, whitespace and `#` comments.
pub fn decode_hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .flat_map(|l| l.bytes())
        .filter(u8::is_ascii_hexdigit)
        .collect();
    digits
        .chunks(2)
        .filter(|p| p.len() == 2)
        .filter_map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
        .collect()
}

fn seeds() -> Vec<Vec<u8>> {
    crate::corpus_files("fuzz/corpus/frames")
        .into_iter()
        .filter(|(p, _)| p.extension().is_some_and(|e| e == "hex"))
        .map(|(_, b)| decode_hex(&String::from_utf8_lossy(&b)))
        .collect()
}

/// A well-formed or deliberately broken typed message.
fn random_frame(rng: &mut StdRng) -> Vec<u8> {
    let tag = TAGS[rng.random_range(0..TAGS.len())];
    let body: Vec<u8> = match tag {
        b'Q' => {
            let sql = [
                "SELECT 1",
                "SELECT phone_2fa FROM users",
                "",
                "é",
                "SELECT '\\'",
            ][rng.random_range(0..5)];
            let mut b = sql.as_bytes().to_vec();
            if rng.random_bool(0.9) {
                b.push(0);
            }
            if rng.random_bool(0.1) {
                b.push(b'x');
            }
            b
        }
        b'P' => {
            let mut b = b"s1\0SELECT $1\0".to_vec();
            let n: i16 = [0, 1, 2, -1, i16::MAX][rng.random_range(0..5)];
            b.extend_from_slice(&n.to_be_bytes());
            for _ in 0..rng.random_range(0..3) {
                b.extend_from_slice(&25i32.to_be_bytes());
            }
            b
        }
        _ => (0..rng.random_range(0..24)).map(|_| rng.random()).collect(),
    };
    let mut out = vec![tag];
    let len: i64 = match rng.random_range(0..10) {
        0 => -1,
        1 => 0,
        2 => 3,
        3 => i32::MAX as i64,
        4 => (body.len() as i64 + 4) + rng.random_range(1..64),
        5 => (body.len() as i64 + 4) - rng.random_range(0..=body.len() as i64),
        _ => body.len() as i64 + 4,
    };
    out.extend_from_slice(&(len as i32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// A startup-phase packet: SSLRequest, GSSENCRequest, CancelRequest, StartupMessage, junk.
fn random_startup(rng: &mut StdRng) -> Vec<u8> {
    match rng.random_range(0..6) {
        0 => pgpurpose::protocol::startup::encode_ssl_request().to_vec(),
        1 => pgpurpose::protocol::startup::encode_cancel(rng.random(), rng.random()).to_vec(),
        2 => {
            let mut p = vec![0, 0, 0, 8];
            p.extend_from_slice(&80_877_104i32.to_be_bytes());
            p
        }
        3 => {
            let n = rng.random_range(0..4);
            let kv: Vec<(String, String)> = (0..n)
                .map(|i| (format!("k{i}"), "v".repeat(rng.random_range(0..20))))
                .collect();
            let refs: Vec<(&str, &str)> =
                kv.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            encode_startup(&refs).to_vec()
        }
        4 => {
            let len: i32 = [0, 7, 8, 9, 10_000, 10_001, -5, i32::MAX][rng.random_range(0..8)];
            let mut p = len.to_be_bytes().to_vec();
            p.extend_from_slice(&[0, 3, 0, rng.random_range(0..3)]);
            p.extend((0..rng.random_range(0..16)).map(|_| rng.random::<u8>()));
            p
        }
        _ => (0..rng.random_range(0..32)).map(|_| rng.random()).collect(),
    }
}

fn mutate_bytes(rng: &mut StdRng, mut b: Vec<u8>) -> Vec<u8> {
    for _ in 0..rng.random_range(0..4) {
        if b.is_empty() {
            b.push(rng.random());
            continue;
        }
        let i = rng.random_range(0..b.len());
        match rng.random_range(0..5) {
            0 => b[i] = rng.random(),
            1 => b[i] ^= 1 << rng.random_range(0..8),
            2 => {
                b.truncate(i);
            }
            3 => b.insert(i, [0u8, 0xff, 0x7f, 0x80][rng.random_range(0..4)]),
            _ => {
                let end = (i + rng.random_range(1..8)).min(b.len());
                let piece = b[i..end].to_vec();
                b.splice(i..i, piece);
            }
        }
    }
    b
}

/// Outcome of draining a stream through `take_startup_packet`.
#[derive(Debug, PartialEq)]
enum StartupRun {
    Packets(Vec<StartupPacket>, usize),
    Error(Vec<StartupPacket>, StartupError),
}

/// Feed `input` in chunks of the given sizes (the last chunk takes the rest), taking packets
/// as they complete, the way the session's startup loop does.
fn run_startup(input: &[u8], chunks: &[usize]) -> Result<StartupRun, String> {
    let mut buf = BytesMut::new();
    let mut packets = Vec::new();
    let mut fed = 0;
    let mut sizes = chunks.iter().copied().chain(std::iter::repeat(usize::MAX));
    while fed < input.len() {
        let n = sizes
            .next()
            .unwrap_or(usize::MAX)
            .max(1)
            .min(input.len() - fed);
        buf.extend_from_slice(&input[fed..fed + n]);
        fed += n;
        loop {
            let before = buf.len();
            match take_startup_packet(&mut buf) {
                Ok(Some(p)) => {
                    if buf.len() >= before {
                        return Err("a packet was taken without consuming bytes".into());
                    }
                    packets.push(p);
                }
                Ok(None) => {
                    // Waiting for more is only right when the declared length fits the limit.
                    if buf.len() >= 4 {
                        let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
                        if buf.len() >= 8 && (len < 8 || len as usize > MAX_STARTUP_PACKET) {
                            return Err(format!("waits for a packet of invalid length {len}"));
                        }
                    }
                    if buf.len() > MAX_STARTUP_PACKET {
                        return Err("buffered more than a startup packet may hold".into());
                    }
                    break;
                }
                Err(e) => return Ok(StartupRun::Error(packets, e)),
            }
        }
    }
    Ok(StartupRun::Packets(packets, buf.len()))
}

#[derive(Debug, PartialEq)]
enum FrameRun {
    Frames(Vec<Vec<u8>>, usize),
    Error(Vec<Vec<u8>>, FrameError),
}

/// Feed `input` in chunks through `take_frame`, checking every frame as the relay would use it.
fn run_frames(input: &[u8], chunks: &[usize], limit: usize) -> Result<FrameRun, String> {
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut fed = 0;
    let mut consumed = 0;
    let mut sizes = chunks.iter().copied().chain(std::iter::repeat(usize::MAX));
    while fed < input.len() {
        let n = sizes
            .next()
            .unwrap_or(usize::MAX)
            .max(1)
            .min(input.len() - fed);
        buf.extend_from_slice(&input[fed..fed + n]);
        fed += n;
        loop {
            match take_frame(&mut buf, limit) {
                Ok(Some((h, frame))) => {
                    if frame.len() != h.frame_len || frame.len() > limit || frame.len() < HEADER_LEN
                    {
                        return Err(format!("frame of {} bytes, header {h:?}", frame.len()));
                    }
                    if input.get(consumed..consumed + frame.len()) != Some(&frame[..]) {
                        return Err("frame bytes are not the next bytes of the stream".into());
                    }
                    consumed += frame.len();
                    check_decoders(&frame)?;
                    frames.push(frame.to_vec());
                }
                Ok(None) => {
                    if buf.len() >= HEADER_LEN {
                        let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
                        if len < 4 || len as usize + 1 > limit {
                            return Err(format!("waits for a frame of invalid length {len}"));
                        }
                    }
                    break;
                }
                Err(e) => return Ok(FrameRun::Error(frames, e)),
            }
        }
    }
    Ok(FrameRun::Frames(frames, buf.len()))
}

/// Query and Parse decode only what re-encodes to the same bytes.
fn check_decoders(frame: &[u8]) -> Result<(), String> {
    match frame[0] {
        b'Q' => {
            if let Ok(sql) = query_text(frame) {
                let mut again = BytesMut::new();
                put_query(&mut again, sql);
                if &again[..] != frame {
                    return Err("Query does not round-trip".into());
                }
            }
        }
        b'P' => {
            if let Ok(p) = parse_message(frame) {
                let mut again = BytesMut::new();
                put_parse(&mut again, &p, p.sql);
                if &again[..] != frame {
                    return Err("Parse does not round-trip".into());
                }
            }
        }
        _ => {
            // Any other frame must not decode as Query / Parse by accident of the tag check.
            let _ = query_text(frame);
            let _ = parse_message(frame);
        }
    }
    Ok(())
}

fn random_chunks(rng: &mut StdRng, len: usize) -> Vec<usize> {
    let mut v = Vec::new();
    let mut total = 0;
    while total < len && v.len() < 64 {
        let n = rng.random_range(1..=8usize.max(len / 4));
        v.push(n);
        total += n;
    }
    v
}

#[test]
fn fuzz_frontend_framing() {
    let budget = crate::fuzz_budget(10);
    let seed = crate::fuzz_seed();
    println!("fuzz_frames: seed {seed}, budget {budget:?}");
    let corpus = seeds();
    assert!(corpus.len() >= 10, "frame corpus too small");
    let mut rng = StdRng::seed_from_u64(seed);
    let start = Instant::now();
    let (mut execs, mut frames_taken, mut errors) = (0u64, 0u64, 0u64);
    let mut i = 0usize;
    while start.elapsed() < budget {
        let startup_phase = rng.random_bool(0.3);
        let stream: Vec<u8> = if i < corpus.len() {
            corpus[i].clone()
        } else if startup_phase {
            let mut s = random_startup(&mut rng);
            if rng.random_bool(0.5) {
                s.extend(random_startup(&mut rng));
            }
            mutate_bytes(&mut rng, s)
        } else {
            let mut s = if rng.random_bool(0.3) {
                corpus[rng.random_range(0..corpus.len())].clone()
            } else {
                Vec::new()
            };
            for _ in 0..rng.random_range(1..6) {
                s.extend(random_frame(&mut rng));
            }
            mutate_bytes(&mut rng, s)
        };
        i += 1;
        // Startup parsing: whole vs chunked.
        let whole = run_startup(&stream, &[]).unwrap_or_else(|e| panic!("{e}: {stream:02x?}"));
        let chunks = random_chunks(&mut rng, stream.len());
        let chunked =
            run_startup(&stream, &chunks).unwrap_or_else(|e| panic!("{e}: {stream:02x?}"));
        assert_eq!(
            whole, chunked,
            "startup: chunking changed the result for {stream:02x?}"
        );
        // Typed frames, after startup, under each limit.
        for &limit in LIMITS {
            let whole =
                run_frames(&stream, &[], limit).unwrap_or_else(|e| panic!("{e}: {stream:02x?}"));
            let chunked = run_frames(&stream, &chunks, limit)
                .unwrap_or_else(|e| panic!("{e}: {stream:02x?}"));
            assert_eq!(
                whole, chunked,
                "frames: chunking changed the result for {stream:02x?}"
            );
            match whole {
                FrameRun::Frames(f, _) => frames_taken += f.len() as u64,
                FrameRun::Error(f, _) => {
                    frames_taken += f.len() as u64;
                    errors += 1
                }
            }
        }
        execs += 1;
    }
    println!(
        "fuzz_frames: {execs} executions in {:.1}s ({frames_taken} frames taken, {errors} framing errors)",
        start.elapsed().as_secs_f64()
    );
    assert!(execs > 1000 && frames_taken > 0 && errors > 0);
}

#[test]
fn oversized_lengths_are_refused_before_the_body_arrives() {
    // Only the header is buffered: a declared length over the limit is an error at once.
    let mut buf = BytesMut::from(&[b'Q', 0x7f, 0xff, 0xff, 0xff][..]);
    assert!(matches!(
        take_frame(&mut buf, 4096),
        Err(FrameError::TooLarge { .. })
    ));
    let mut buf = BytesMut::from(&[0x00, 0x01, 0x00, 0x00, 0, 3, 0, 0][..]);
    assert_eq!(
        take_startup_packet(&mut buf),
        Err(StartupError::InvalidLength(65_536))
    );
    // A negative length is invalid, not a huge allocation.
    let mut buf = BytesMut::from(&[b'P', 0xff, 0xff, 0xff, 0xfe][..]);
    assert_eq!(
        take_frame(&mut buf, 1 << 30),
        Err(FrameError::InvalidLength(-2))
    );
    // Truncated frames wait; a frame exactly at the limit passes.
    let mut out = BytesMut::new();
    put_frame(&mut out, b'Q', b"SELECT 1\0");
    let full = out.len();
    let mut part = BytesMut::from(&out[..full - 1]);
    assert_eq!(take_frame(&mut part, full), Ok(None));
    assert!(take_frame(&mut out, full).expect("fits").is_some());
}
