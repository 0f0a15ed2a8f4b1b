//! WebSocket frames on the server side (RFC 6455). Encoding uses fastwebsockets' header
//! formatting; decoding is done here so that reading is cancel-safe (it works on bytes already
//! read, never inside a pending read) and an idle connection holds no read buffer at all.
//! The decoder enforces the limits the edge promises: a message (all its fragments together)
//! over the maximum size is refused with 1009, broken framing with 1002, bad UTF-8 with 1007.
//! With permessage-deflate negotiated ([`Decoder::inflating`]), a message whose first frame has
//! RSV1 set is inflated ([`super::deflate`]) within the same maximum size.

use super::deflate::{self, InflateError};
use bytes::{Buf, Bytes, BytesMut};
use fastwebsockets::{Frame, OpCode, Payload};

/// Close codes the edge sends (RFC 6455 section 7.4).
pub mod close {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// The server is going away (drain): reconnect elsewhere.
    pub const GOING_AWAY: u16 = 1001;
    /// The peer broke the protocol.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// Text that is not UTF-8.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// Policy violation (authentication failed, or a device was taken over).
    pub const POLICY: u16 = 1008;
    /// Message too big.
    pub const TOO_BIG: u16 = 1009;
    /// Unexpected server error.
    pub const SERVER_ERROR: u16 = 1011;
    /// Try again later (the client reads too slowly).
    pub const TRY_AGAIN_LATER: u16 = 1013;
}

fn encode(opcode: OpCode, payload: &[u8]) -> Bytes {
    let mut frame = Frame::new(true, opcode, None, Payload::Borrowed(payload));
    let mut head = [0u8; 10];
    let size = frame.fmt_head(&mut head);
    let mut out = BytesMut::with_capacity(size + payload.len());
    out.extend_from_slice(&head[..size]);
    out.extend_from_slice(payload);
    out.freeze()
}

/// A complete text frame carrying `json`.
pub fn text(json: &[u8]) -> Bytes {
    encode(OpCode::Text, json)
}

/// A close frame with a code and a reason (cut to fit a control frame).
pub fn close_frame(code: u16, reason: &str) -> Bytes {
    let mut payload = Vec::with_capacity(2 + reason.len().min(123));
    payload.extend_from_slice(&code.to_be_bytes());
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    encode(OpCode::Close, &payload)
}

/// A ping frame.
pub fn ping(payload: &[u8]) -> Bytes {
    encode(OpCode::Ping, payload)
}

/// A pong frame answering a ping.
pub fn pong(payload: &[u8]) -> Bytes {
    encode(OpCode::Pong, payload)
}

/// What the peer sent, once a message is complete.
#[derive(Debug, PartialEq)]
pub enum Message {
    /// A text message (UTF-8 checked).
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A ping; answer with a pong carrying the same payload.
    Ping(Bytes),
    /// A pong.
    Pong,
    /// A close, with the peer's code when it sent one.
    Close(Option<u16>),
}

/// Why the peer's bytes cannot be a WebSocket stream; each maps to a close code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A message is larger than allowed.
    #[error("message larger than {0} bytes")]
    TooBig(usize),
    /// Framing is broken.
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// A text message is not UTF-8.
    #[error("text is not valid UTF-8")]
    InvalidUtf8,
}

impl DecodeError {
    /// The close code to answer with.
    pub fn close_code(&self) -> u16 {
        match self {
            DecodeError::TooBig(_) => close::TOO_BIG,
            DecodeError::Protocol(_) => close::PROTOCOL_ERROR,
            DecodeError::InvalidUtf8 => close::INVALID_PAYLOAD,
        }
    }
}

/// Reassembles client frames into messages from bytes read off the socket.
#[derive(Debug)]
pub struct Decoder {
    max_message: usize,
    /// Bytes read but not yet decoded. Empty (and unallocated) while the connection is idle.
    pub buffer: BytesMut,
    /// The opcode, compression (RSV1) and data of a fragmented message in progress.
    partial: Option<(OpCode, bool, BytesMut)>,
    /// permessage-deflate was negotiated: RSV1 marks a compressed message.
    inflate: bool,
}

impl Decoder {
    /// A decoder refusing messages over `max_message` bytes.
    pub fn new(max_message: usize) -> Self {
        Decoder {
            max_message,
            buffer: BytesMut::new(),
            partial: None,
            inflate: false,
        }
    }

    /// The same decoder for a connection that negotiated permessage-deflate.
    pub fn inflating(mut self) -> Self {
        self.inflate = true;
        self
    }

    /// Drops the buffer's memory when it holds nothing, so idle connections cost nothing.
    pub fn shrink_if_idle(&mut self) {
        if self.buffer.is_empty() && self.buffer.capacity() > 0 {
            self.buffer = BytesMut::new();
        }
    }

    /// The next complete message in the buffer, `Ok(None)` when more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<Message>, DecodeError> {
        loop {
            let Some((fin, opcode, compressed, payload)) = self.next_frame()? else {
                return Ok(None);
            };
            match opcode {
                OpCode::Ping => return Ok(Some(Message::Ping(payload.freeze()))),
                OpCode::Pong => return Ok(Some(Message::Pong)),
                OpCode::Close => return close_message(&payload).map(Some),
                OpCode::Text | OpCode::Binary => {
                    if self.partial.is_some() {
                        return Err(DecodeError::Protocol("new message inside a fragmented one"));
                    }
                    if fin {
                        return self.finish(opcode, compressed, payload).map(Some);
                    }
                    self.partial = Some((opcode, compressed, payload));
                }
                OpCode::Continuation => {
                    let Some((first, compressed, mut data)) = self.partial.take() else {
                        return Err(DecodeError::Protocol("continuation without a message"));
                    };
                    if data.len().saturating_add(payload.len()) > self.max_message {
                        return Err(DecodeError::TooBig(self.max_message));
                    }
                    data.extend_from_slice(&payload);
                    if fin {
                        return self.finish(first, compressed, data).map(Some);
                    }
                    self.partial = Some((first, compressed, data));
                }
            }
        }
    }

    /// One frame off the buffer, unmasked, with whether RSV1 marks it compressed.
    #[allow(clippy::type_complexity)]
    fn next_frame(&mut self) -> Result<Option<(bool, OpCode, bool, BytesMut)>, DecodeError> {
        let buf = &self.buffer;
        if buf.len() < 2 {
            return Ok(None);
        }
        let (b0, b1) = (buf[0], buf[1]);
        if b0 & 0b0011_0000 != 0 {
            return Err(DecodeError::Protocol("reserved bits set"));
        }
        let opcode =
            OpCode::try_from(b0 & 0x0f).map_err(|_| DecodeError::Protocol("unknown opcode"))?;
        let fin = b0 & 0x80 != 0;
        // RFC 7692 6: RSV1 only once permessage-deflate is negotiated, and only on the first
        // frame of a data message (never on a continuation or a control frame).
        let compressed = b0 & 0b0100_0000 != 0;
        if compressed && !(self.inflate && matches!(opcode, OpCode::Text | OpCode::Binary)) {
            return Err(DecodeError::Protocol("reserved bits set"));
        }
        if b1 & 0x80 == 0 {
            return Err(DecodeError::Protocol("client frame not masked"));
        }
        let control = matches!(opcode, OpCode::Close | OpCode::Ping | OpCode::Pong);
        let (len, head): (u64, usize) = match b1 & 0x7f {
            126 => {
                if buf.len() < 4 {
                    return Ok(None);
                }
                (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
            }
            127 => {
                if buf.len() < 10 {
                    return Ok(None);
                }
                let mut len = [0u8; 8];
                len.copy_from_slice(&buf[2..10]);
                let len = u64::from_be_bytes(len);
                // RFC 6455 5.2: the most significant bit of a 64-bit length must be 0.
                if len >> 63 != 0 {
                    return Err(DecodeError::Protocol("64-bit length with its top bit set"));
                }
                (len, 10)
            }
            n => (u64::from(n), 2),
        };
        if control && (!fin || len > 125) {
            return Err(DecodeError::Protocol(
                "control frame fragmented or over 125 bytes",
            ));
        }
        // Refuse from the header alone, before buffering anything of an oversized frame. Every
        // sum of lengths from the wire is checked: a wrapped sum would pass as a small frame.
        let too_big = DecodeError::TooBig(self.max_message);
        let pending = self.partial.as_ref().map_or(0, |(_, _, d)| d.len() as u64);
        let message_len = len.checked_add(pending).ok_or_else(|| too_big.clone())?;
        if !control && message_len > self.max_message as u64 {
            return Err(too_big);
        }
        let len = usize::try_from(len).map_err(|_| too_big.clone())?;
        let total = (head + 4).checked_add(len).ok_or(too_big)?;
        if buf.len() < total {
            self.buffer.reserve(total - buf.len());
            return Ok(None);
        }
        let mut mask = [0u8; 4];
        mask.copy_from_slice(&buf[head..head + 4]);
        self.buffer.advance(head + 4);
        let mut payload = self.buffer.split_to(len);
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i & 3];
        }
        Ok(Some((fin, opcode, compressed, payload)))
    }

    /// A complete message: inflated if it came compressed, its text checked.
    fn finish(&self, op: OpCode, packed: bool, data: BytesMut) -> Result<Message, DecodeError> {
        let data = if packed {
            deflate::inflate(&data, self.max_message).map_err(|e| match e {
                InflateError::TooBig => DecodeError::TooBig(self.max_message),
                InflateError::Corrupt => DecodeError::Protocol("compressed data is not DEFLATE"),
            })?
        } else {
            data
        };
        finish(op, data)
    }
}

/// Whether a peer may send this close code (RFC 6455 7.4): 1000–1003, 1007–1014 and the
/// application ranges 3000–4999. 1005, 1006 and 1015 are only for reporting, never sent.
pub fn close_code_allowed(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// A close frame's payload: empty, or a code the wire allows and a UTF-8 reason.
fn close_message(payload: &[u8]) -> Result<Message, DecodeError> {
    let Some((code, reason)) = payload.split_first_chunk::<2>() else {
        return match payload.len() {
            0 => Ok(Message::Close(None)),
            _ => Err(DecodeError::Protocol("close payload of one byte")),
        };
    };
    let code = u16::from_be_bytes(*code);
    if !close_code_allowed(code) {
        return Err(DecodeError::Protocol("close code not allowed on the wire"));
    }
    if std::str::from_utf8(reason).is_err() {
        return Err(DecodeError::InvalidUtf8);
    }
    Ok(Message::Close(Some(code)))
}

fn finish(opcode: OpCode, data: BytesMut) -> Result<Message, DecodeError> {
    match opcode {
        OpCode::Text => {
            if std::str::from_utf8(&data).is_err() {
                return Err(DecodeError::InvalidUtf8);
            }
            Ok(Message::Text(data.freeze()))
        }
        _ => Ok(Message::Binary(data.freeze())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame, as a browser sends it.
    fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let mut out = vec![(u8::from(fin) << 7) | opcode];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n < 65536 => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        out
    }

    fn decode_all(bytes: &[u8], max: usize) -> Result<Vec<Message>, DecodeError> {
        let mut d = Decoder::new(max);
        d.buffer.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(m) = d.next_message()? {
            out.push(m);
        }
        Ok(out)
    }

    #[test]
    fn text_ping_and_close_decode() {
        let mut bytes = client_frame(true, 1, br#"{"type":"ping"}"#);
        bytes.extend(client_frame(true, 9, b"hb"));
        bytes.extend(client_frame(true, 8, &[0x03, 0xe8, b'b', b'y', b'e']));
        let msgs = decode_all(&bytes, 1024).expect("decode");
        assert_eq!(
            msgs,
            vec![
                Message::Text(Bytes::from_static(br#"{"type":"ping"}"#)),
                Message::Ping(Bytes::from_static(b"hb")),
                Message::Close(Some(1000)),
            ]
        );
    }

    #[test]
    fn bytes_arriving_one_at_a_time_give_the_same_messages() {
        let mut bytes = client_frame(false, 1, b"hello ");
        bytes.extend(client_frame(true, 9, b"p"));
        bytes.extend(client_frame(true, 0, &vec![b'w'; 300]));
        let mut d = Decoder::new(1 << 16);
        let mut got = Vec::new();
        for b in bytes {
            d.buffer.extend_from_slice(&[b]);
            while let Some(m) = d.next_message().expect("decode") {
                got.push(m);
            }
        }
        let mut expected = b"hello ".to_vec();
        expected.extend(vec![b'w'; 300]);
        assert_eq!(
            got,
            vec![
                Message::Ping(Bytes::from_static(b"p")),
                Message::Text(expected.into())
            ]
        );
        assert!(d.buffer.is_empty());
    }

    #[test]
    fn oversized_frames_are_refused_from_the_header() {
        let header_only = &client_frame(true, 1, &vec![b'x'; 70_000])[..14];
        assert_eq!(
            decode_all(header_only, 65_536),
            Err(DecodeError::TooBig(65_536))
        );
        assert_eq!(DecodeError::TooBig(1).close_code(), 1009);
    }

    #[test]
    fn fragments_may_not_add_up_past_the_limit() {
        let mut bytes = client_frame(false, 1, &vec![b'a'; 40_000]);
        bytes.extend(client_frame(false, 0, &vec![b'b'; 20_000]));
        bytes.extend(client_frame(true, 0, &vec![b'c'; 10_000]));
        assert_eq!(decode_all(&bytes, 65_536), Err(DecodeError::TooBig(65_536)));
    }

    #[test]
    fn protocol_violations_are_named() {
        let unmasked = [0x81, 0x01, b'x'];
        assert!(matches!(
            decode_all(&unmasked, 100),
            Err(DecodeError::Protocol(_))
        ));
        let reserved = client_frame(true, 1 | 0x40, b"x");
        assert!(matches!(
            decode_all(&reserved, 100),
            Err(DecodeError::Protocol(_))
        ));
        let stray = client_frame(true, 0, b"x");
        assert!(matches!(
            decode_all(&stray, 100),
            Err(DecodeError::Protocol(_))
        ));
        let big_ping = client_frame(true, 9, &[0; 126]);
        assert!(matches!(
            decode_all(&big_ping, 1000),
            Err(DecodeError::Protocol(_))
        ));
        let unknown = client_frame(true, 3, b"x");
        assert!(matches!(
            decode_all(&unknown, 100),
            Err(DecodeError::Protocol(_))
        ));
    }

    #[test]
    fn invalid_utf8_text_closes_with_1007() {
        let bad = client_frame(true, 1, &[0xff, 0xfe]);
        let err = decode_all(&bad, 100).expect_err("invalid");
        assert_eq!(err, DecodeError::InvalidUtf8);
        assert_eq!(err.close_code(), 1007);
    }

    #[test]
    fn encoded_frames_have_the_right_headers() {
        assert_eq!(&text(b"hi")[..], &[0x81, 2, b'h', b'i']);
        let long = text(&[b'x'; 300]);
        assert_eq!(&long[..4], &[0x81, 126, 0x01, 0x2c]);
        let close = close_frame(1009, "too big");
        assert_eq!(&close[..4], &[0x88, 9, 0x03, 0xf1]);
        assert_eq!(close_frame(1000, &"é".repeat(100)).len(), 2 + 2 + 122);
    }

    /// Issue 19: a fragment of 10 bytes, then a continuation claiming 2^64 - 10 bytes. The sum
    /// wrapped to 0 and passed the size check; `split_to` then panicked.
    #[test]
    fn a_length_that_wraps_with_the_pending_fragment_is_refused() {
        let mut bytes = vec![0x01, 0x8a, 0, 0, 0, 0];
        bytes.extend_from_slice(&[b'a'; 10]);
        bytes.extend_from_slice(&[0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xf6]);
        bytes.extend_from_slice(&[0, 0, 0, 0]);
        let err = decode_all(&bytes, 65_536).expect_err("refused");
        assert_eq!(err.close_code(), close::PROTOCOL_ERROR);
    }

    #[test]
    fn a_64_bit_length_with_its_top_bit_set_is_a_protocol_error() {
        let mut bytes = vec![0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1];
        bytes.extend_from_slice(&[0, 0, 0, 0]);
        assert!(matches!(
            decode_all(&bytes, usize::MAX),
            Err(DecodeError::Protocol(_))
        ));
        // The largest legal length is only too big.
        let mut bytes = vec![0x82, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        bytes.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(decode_all(&bytes, 1000), Err(DecodeError::TooBig(1000)));
    }

    #[test]
    fn close_codes_not_allowed_on_the_wire_are_protocol_errors() {
        for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, u16::MAX] {
            let frame = client_frame(true, 8, &code.to_be_bytes());
            assert!(
                matches!(decode_all(&frame, 100), Err(DecodeError::Protocol(_))),
                "close {code}"
            );
        }
        for code in [1000u16, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4999] {
            let frame = client_frame(true, 8, &code.to_be_bytes());
            assert_eq!(
                decode_all(&frame, 100),
                Ok(vec![Message::Close(Some(code))]),
                "close {code}"
            );
        }
    }

    #[test]
    fn an_idle_decoder_holds_no_memory() {
        let mut d = Decoder::new(100);
        d.buffer.extend_from_slice(&client_frame(true, 1, b"x"));
        assert!(d.next_message().expect("decode").is_some());
        d.shrink_if_idle();
        assert_eq!(d.buffer.capacity(), 0);
    }
}
