//! permessage-deflate (RFC 7692) for the edge's sockets: the handshake's offer and answer
//! ([`negotiate`], called by [`crate::upgrade`]), bounded inflation of compressed client
//! messages ([`inflate`], called by [`super::frame::Decoder`]) and compression of outgoing
//! frames at or above a threshold ([`Deflate::encode`], called by [`super::Conn`]).
//!
//! Both directions run without context takeover, so no socket keeps a compressor or an
//! inflater between messages: one of each per worker thread serves every socket, reset before
//! each message, and an idle socket pays nothing for compression.

use bytes::{Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use std::cell::RefCell;

/// The extension's name in `Sec-WebSocket-Extensions`.
pub const NAME: &str = "permessage-deflate";

/// The four bytes a sync flush ends with, stripped from every compressed message on the wire
/// (RFC 7692 7.2.1) and put back before inflating (7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Compression of one connection's outgoing messages, once negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deflate {
    /// Messages with a payload of fewer bytes are sent plain.
    pub threshold: usize,
}

/// What the edge answers to an offer it accepts. The edge asks no context takeover both ways:
/// a client that offered none must follow it (RFC 7692 7.1.1.2).
const ACCEPTED: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// The response to the client's `Sec-WebSocket-Extensions` header values: the value to answer
/// with when one of its offers of permessage-deflate is acceptable, `None` to decline (no
/// offer, or none the edge can honour). Offers are taken in the client's order of preference.
/// An offer with an unknown or repeated parameter, or a bad value, is declined (7.1); one that
/// limits the server's window below 15 bits too, since the edge compresses with a 32 KiB
/// window. The client's own window needs no limit: the edge inflates with the full window.
pub fn negotiate<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Option<String> {
    for value in values {
        let Ok(value) = std::str::from_utf8(value) else {
            continue;
        };
        for offer in value.split(',') {
            if let Some(answer) = accept(offer) {
                return Some(answer);
            }
        }
    }
    None
}

/// The answer to one offer (`permessage-deflate; param; param=value`), if acceptable.
fn accept(offer: &str) -> Option<String> {
    let mut parts = offer.split(';').map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case(NAME) {
        return None;
    }
    let mut seen = [false; 4];
    let mut server_window = None;
    for param in parts {
        let (name, value) = match param.split_once('=') {
            Some((name, value)) => {
                let value = value.trim();
                let value = value
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(value);
                (name.trim(), Some(value))
            }
            None => (param, None),
        };
        let index = match name {
            "server_no_context_takeover" => 0,
            "client_no_context_takeover" => 1,
            "server_max_window_bits" => 2,
            "client_max_window_bits" => 3,
            _ => return None,
        };
        if std::mem::replace(&mut seen[index], true) {
            return None;
        }
        let bits = match value {
            None => None,
            Some(v) if v.len() <= 2 && v.bytes().all(|b| b.is_ascii_digit()) => {
                let bits: u8 = v.parse().ok()?;
                if !(8..=15).contains(&bits) {
                    return None;
                }
                Some(bits)
            }
            Some(_) => return None,
        };
        match index {
            0 | 1 if bits.is_some() => return None,
            2 => server_window = Some(bits?),
            _ => {}
        }
    }
    match server_window {
        None => Some(ACCEPTED.to_string()),
        Some(15) => Some(format!("{ACCEPTED}; server_max_window_bits=15")),
        Some(_) => None,
    }
}

/// Why a compressed message cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// It inflates to more than the limit.
    TooBig,
    /// It is not a DEFLATE stream.
    Corrupt,
}

thread_local! {
    static INFLATER: RefCell<Option<Decompress>> = const { RefCell::new(None) };
    static COMPRESSOR: RefCell<Option<Compress>> = const { RefCell::new(None) };
    /// The last frames compressed on this thread and what they became. Fan-out sends the same
    /// `Bytes` to every member of a topic; with no context takeover the compressed form is the
    /// same for all of them, so it is made once. Holding the input keeps its memory alive, so
    /// an equal pointer and length can only be the same bytes.
    static LAST: RefCell<Option<(Bytes, Bytes)>> = const { RefCell::new(None) };
}

/// Inflates one compressed message (its payload, all fragments together, without the tail),
/// refusing as soon as it would exceed `max` bytes: no more than `max` + 1 bytes are ever
/// allocated for it, whatever it claims to hold.
pub fn inflate(compressed: &[u8], max: usize) -> Result<BytesMut, InflateError> {
    INFLATER.with(|cell| {
        let mut cell = cell.borrow_mut();
        let inflater = cell.get_or_insert_with(|| Decompress::new(false));
        // No client context takeover: every message starts afresh (and so does one after a
        // message that failed half way).
        inflater.reset(false);
        let limit = max.saturating_add(1);
        let mut out: Vec<u8> = Vec::with_capacity(
            compressed
                .len()
                .saturating_mul(4)
                .saturating_add(64)
                .min(limit),
        );
        for input in [compressed, &TAIL[..]] {
            let mut input = input;
            loop {
                if out.len() == out.capacity() {
                    if out.len() >= limit {
                        return Err(InflateError::TooBig);
                    }
                    let more = out.len().max(1024).min(limit - out.len());
                    out.reserve_exact(more);
                }
                let (before, made) = (inflater.total_in(), out.len());
                let status = inflater
                    .decompress_vec(input, &mut out, FlushDecompress::Sync)
                    .map_err(|_| InflateError::Corrupt)?;
                let used = usize::try_from(inflater.total_in() - before)
                    .map_err(|_| InflateError::Corrupt)?;
                input = input.get(used..).ok_or(InflateError::Corrupt)?;
                if out.len() > max {
                    return Err(InflateError::TooBig);
                }
                match status {
                    // A final block: whatever follows is not part of the message.
                    Status::StreamEnd => return Ok(BytesMut::from(&out[..])),
                    _ if input.is_empty() && out.len() < out.capacity() => break,
                    // Neither input taken nor output made with room to spare: stuck.
                    _ if used == 0 && out.len() == made && out.len() < out.capacity() => {
                        return Err(InflateError::Corrupt);
                    }
                    _ => {}
                }
            }
        }
        Ok(BytesMut::from(&out[..]))
    })
}

/// Compresses one message payload; `None` when compressing would not make it smaller.
fn compress(payload: &[u8]) -> Option<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        let compressor = cell.get_or_insert_with(|| Compress::new(Compression::fast(), false));
        compressor.reset();
        let mut out = Vec::with_capacity(payload.len() / 2 + 64);
        let mut input = payload;
        loop {
            if out.len() == out.capacity() {
                out.reserve(out.capacity().max(64));
            }
            let (before, made) = (compressor.total_in(), out.len());
            compressor
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .ok()?;
            let used = usize::try_from(compressor.total_in() - before).ok()?;
            input = input.get(used..)?;
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
            if used == 0 && out.len() == made && out.len() < out.capacity() {
                return None;
            }
        }
        if !out.ends_with(&TAIL) {
            return None;
        }
        out.truncate(out.len() - TAIL.len());
        (out.len() < payload.len()).then_some(out)
    })
}

/// A server frame's header: FIN, RSV1 and opcode, then the length unmasked.
fn put_head(out: &mut BytesMut, first: u8, len: usize) {
    out.extend_from_slice(&[first]);
    match len {
        0..=125 => out.extend_from_slice(&[len as u8]),
        126..=65_535 => {
            out.extend_from_slice(&[126]);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.extend_from_slice(&[127]);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
}

/// One server frame at the start of `data`: first byte, where its payload starts and ends.
fn split_frame(data: &[u8]) -> Option<(u8, usize, usize)> {
    let (&first, rest) = data.split_first()?;
    let (&second, rest) = rest.split_first()?;
    if second & 0x80 != 0 {
        return None;
    }
    let (len, head) = match second {
        126 => (u64::from(u16::from_be_bytes(*rest.first_chunk()?)), 4),
        127 => (u64::from_be_bytes(*rest.first_chunk()?), 10),
        n => (u64::from(n), 2),
    };
    let end = usize::try_from(len).ok()?.checked_add(head)?;
    (end <= data.len()).then_some((first, head, end))
}

impl Deflate {
    /// `data` — whole server frames laid end to end, as [`super::Conn::send_frames`] takes
    /// them — with every unfragmented text or binary frame of `threshold` bytes or more
    /// compressed (RSV1 set). Control frames, fragments, small frames and frames that would
    /// not shrink stay as they are; when nothing changes `data` itself comes back.
    pub fn encode(&self, data: Bytes) -> Bytes {
        if data.len() < self.threshold.saturating_add(2) {
            return data;
        }
        if let Some(out) = LAST.with(|last| match &*last.borrow() {
            Some((input, output))
                if input.as_ptr() == data.as_ptr() && input.len() == data.len() =>
            {
                Some(output.clone())
            }
            _ => None,
        }) {
            return out;
        }
        let mut out: Option<BytesMut> = None;
        let mut at = 0;
        while at < data.len() {
            let Some((first, head, end)) = split_frame(&data[at..]) else {
                // Not frames this edge encoded: leave them alone.
                return data;
            };
            let payload = &data[at + head..at + end];
            let opcode = first & 0x0f;
            let plain_data = first & 0xf0 == 0x80 && (opcode == 0x1 || opcode == 0x2);
            let compressed = if plain_data && payload.len() >= self.threshold {
                compress(payload)
            } else {
                None
            };
            match compressed {
                Some(small) => {
                    let out = out.get_or_insert_with(|| {
                        let mut out = BytesMut::with_capacity(data.len());
                        out.extend_from_slice(&data[..at]);
                        out
                    });
                    put_head(out, first | 0x40, small.len());
                    out.extend_from_slice(&small);
                }
                None => {
                    if let Some(out) = out.as_mut() {
                        out.extend_from_slice(&data[at..at + end]);
                    }
                }
            }
            at += end;
        }
        match out {
            Some(out) => {
                let out = out.freeze();
                LAST.with(|last| *last.borrow_mut() = Some((data, out.clone())));
                out
            }
            None => data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(offer: &str) -> Option<String> {
        negotiate([offer.as_bytes()])
    }

    #[test]
    fn offers_are_accepted_without_context_takeover_or_declined() {
        // What browsers and Node's ws send.
        assert_eq!(
            answer("permessage-deflate; client_max_window_bits").as_deref(),
            Some(ACCEPTED)
        );
        assert_eq!(answer("permessage-deflate").as_deref(), Some(ACCEPTED));
        assert_eq!(
            answer("permessage-deflate; server_max_window_bits=15; client_max_window_bits=\"10\"")
                .as_deref(),
            Some(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=15"
            )
        );
        // A small server window the edge cannot honour: the next offer is taken.
        assert_eq!(
            answer(
                "permessage-deflate; server_max_window_bits=10, permessage-deflate; client_no_context_takeover"
            )
            .as_deref(),
            Some(ACCEPTED)
        );
        for declined in [
            "",
            "x-webkit-deflate-frame",
            "permessage-deflate; server_max_window_bits=9",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; client_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; client_max_window_bits=abc",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; unknown_param",
        ] {
            assert_eq!(answer(declined), None, "{declined:?}");
        }
        assert_eq!(negotiate([&[0xff, 0xfe][..]]), None);
    }

    fn server_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        put_head(&mut out, first, payload.len());
        out.extend_from_slice(payload);
        out.to_vec()
    }

    #[test]
    fn large_frames_are_compressed_and_inflate_back_small_ones_stay_plain() {
        let deflate = Deflate { threshold: 256 };
        let big = br#"{"type":"sync","order":{"items":[]}}"#.repeat(20);
        let mut data = server_frame(0x81, b"small");
        data.extend(server_frame(0x89, b"ping"));
        data.extend(server_frame(0x81, &big));
        let out = deflate.encode(Bytes::from(data.clone()));
        assert_eq!(&out[..13], &data[..13], "small text and ping unchanged");
        let rest = &out[13..];
        let (first, head, end) = split_frame(rest).expect("a frame");
        assert_eq!(first, 0xc1, "FIN, RSV1, text");
        assert_eq!(end, rest.len());
        assert!(end - head < big.len() / 4, "{} bytes", end - head);
        let back = inflate(&rest[head..end], 1 << 16).expect("inflates");
        assert_eq!(&back[..], &big[..]);
        // The same frames again are the same answer, made once.
        assert_eq!(
            deflate.encode(out.clone()),
            out,
            "already compressed: unchanged"
        );
        let shared = Bytes::from(data);
        assert_eq!(deflate.encode(shared.clone()), deflate.encode(shared));
    }

    #[test]
    fn frames_that_do_not_shrink_stay_plain() {
        let deflate = Deflate { threshold: 4 };
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let noise: Vec<u8> = (0..400)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let data = Bytes::from(server_frame(0x82, &noise));
        assert_eq!(deflate.encode(data.clone()), data);
    }

    #[test]
    fn a_deflate_bomb_stops_at_the_limit() {
        let zeros = vec![0u8; 10 << 20];
        let bomb = compress(&zeros).expect("compresses");
        // Small enough to pass as one 64 KiB message.
        assert!(bomb.len() < 65_536, "{}", bomb.len());
        assert_eq!(inflate(&bomb, 65_536), Err(InflateError::TooBig));
        // The thread's inflater is usable again right after.
        let ok = compress(&[b'a'; 1000]).expect("compresses");
        assert_eq!(inflate(&ok, 1000).map(|b| b.len()), Ok(1000));
        assert_eq!(inflate(&ok, 999), Err(InflateError::TooBig));
    }

    #[test]
    fn garbage_is_corrupt_not_a_panic() {
        assert_eq!(inflate(&[0xff; 64], 1000), Err(InflateError::Corrupt));
        assert_eq!(inflate(&[], 1000).map(|b| b.len()), Ok(0));
    }
}
