//! WebSocket frames (RFC 6455 §5) as the proxy relays them: parse one frame
//! from the front of a buffer, and encode one. Pure; the relay owns the
//! sockets.
//!
//! The proxy removes `Sec-WebSocket-Extensions` from the upgrade request, so
//! no extension (compression) is in use and a frame with a reserved bit set
//! is a protocol error, as is an unknown opcode or a fragmented or oversized
//! control frame.

/// Opcodes.
pub const CONTINUATION: u8 = 0x0;
/// A text data frame.
pub const TEXT: u8 = 0x1;
/// A binary data frame.
pub const BINARY: u8 = 0x2;
/// Close.
pub const CLOSE: u8 = 0x8;
/// Ping.
pub const PING: u8 = 0x9;
/// Pong.
pub const PONG: u8 = 0xA;

/// Close codes the proxy sends.
pub const GOING_AWAY: u16 = 1001;
/// Close code: the message broke a policy.
pub const POLICY_VIOLATION: u16 = 1008;
/// Close code: the message is too big.
pub const MESSAGE_TOO_BIG: u16 = 1009;
/// Close code: the stream broke the protocol.
pub const PROTOCOL_ERROR: u16 = 1002;

/// One frame, payload unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The last frame of its message.
    pub fin: bool,
    /// What it is ([`TEXT`], [`CLOSE`], …; 0: a continuation).
    pub opcode: u8,
    /// The masking key the sender used (client frames are masked).
    pub mask: Option<[u8; 4]>,
    /// The payload, unmasked.
    pub payload: Vec<u8>,
}

impl Frame {
    /// A data frame (text, binary or continuation).
    pub fn is_data(&self) -> bool {
        self.opcode <= BINARY
    }

    /// A close frame with a status code and a reason (cut to fit the
    /// 125-byte control payload).
    pub fn close(code: u16, reason: &str, mask: Option<[u8; 4]>) -> Frame {
        let mut payload = code.to_be_bytes().to_vec();
        let mut end = reason.len().min(123);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        payload.extend_from_slice(&reason.as_bytes()[..end]);
        Frame { fin: true, opcode: CLOSE, mask, payload }
    }
}

/// A stream that is not a valid WebSocket stream for this proxy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A payload over the limit (its length).
    #[error("frame payload of {0} bytes is over the proxy's limit")]
    TooLarge(u64),
    /// Reserved bits set.
    #[error("reserved bits set (no extension was negotiated)")]
    Reserved,
    /// An opcode WebSocket does not define.
    #[error("unknown opcode {0:#x}")]
    Opcode(u8),
    /// A control frame fragmented or too long.
    #[error("control frame fragmented or over 125 bytes")]
    Control,
}

impl FrameError {
    /// The close code to answer with.
    pub fn close_code(&self) -> u16 {
        match self {
            FrameError::TooLarge(_) => MESSAGE_TOO_BIG,
            _ => PROTOCOL_ERROR,
        }
    }
}

/// Parse the frame at the front of `buf`: `Ok(None)` when more bytes are
/// needed, else the frame and how many bytes it took. Payloads over
/// `max_payload` are refused before they are buffered.
pub fn parse(buf: &[u8], max_payload: u64) -> Result<Option<(Frame, usize)>, FrameError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let fin = buf[0] & 0x80 != 0;
    if buf[0] & 0x70 != 0 {
        return Err(FrameError::Reserved);
    }
    let opcode = buf[0] & 0x0f;
    if !matches!(opcode, CONTINUATION | TEXT | BINARY | CLOSE | PING | PONG) {
        return Err(FrameError::Opcode(opcode));
    }
    let masked = buf[1] & 0x80 != 0;
    let (len, mut at) = match buf[1] & 0x7f {
        126 => {
            let Some(b) = buf.get(2..4) else { return Ok(None) };
            (u64::from(u16::from_be_bytes([b[0], b[1]])), 4)
        }
        127 => {
            let Some(b) = buf.get(2..10) else { return Ok(None) };
            (u64::from_be_bytes(b.try_into().expect("8 bytes")), 10)
        }
        n => (u64::from(n), 2),
    };
    if opcode >= CLOSE && (!fin || len > 125) {
        return Err(FrameError::Control);
    }
    if len > max_payload {
        return Err(FrameError::TooLarge(len));
    }
    let mask = if masked {
        let Some(m) = buf.get(at..at + 4) else { return Ok(None) };
        at += 4;
        Some([m[0], m[1], m[2], m[3]])
    } else {
        None
    };
    let len = len as usize; // ≤ max_payload, which fits in memory
    let Some(body) = buf.get(at..at + len) else { return Ok(None) };
    let mut payload = body.to_vec();
    if let Some(m) = mask {
        apply_mask(&mut payload, m);
    }
    Ok(Some((Frame { fin, opcode, mask, payload }, at + len)))
}

/// Encode a frame (masked with its key, if it has one).
pub fn encode(frame: &Frame) -> Vec<u8> {
    let len = frame.payload.len();
    let mut out = Vec::with_capacity(len + 14);
    out.push(if frame.fin { 0x80 } else { 0 } | frame.opcode);
    let mask_bit = if frame.mask.is_some() { 0x80 } else { 0 };
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if let Ok(short) = u16::try_from(len) {
        out.push(mask_bit | 126);
        out.extend_from_slice(&short.to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    let start = out.len() + frame.mask.map_or(0, |_| 4);
    if let Some(m) = frame.mask {
        out.extend_from_slice(&m);
    }
    out.extend_from_slice(&frame.payload);
    if let Some(m) = frame.mask {
        apply_mask(&mut out[start..], m);
    }
    out
}

fn apply_mask(data: &mut [u8], mask: [u8; 4]) {
    for (i, b) in data.iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_rfc_examples() {
        // RFC 6455 §5.7: unmasked "Hello", masked "Hello", a ping.
        let (f, n) = parse(&[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f], 1 << 20).unwrap().unwrap();
        assert_eq!((f.fin, f.opcode, f.payload.as_slice(), n), (true, TEXT, &b"Hello"[..], 7));
        let masked = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        let (f, n) = parse(&masked, 1 << 20).unwrap().unwrap();
        assert_eq!((f.payload.as_slice(), f.mask, n), (&b"Hello"[..], Some([0x37, 0xfa, 0x21, 0x3d]), 11));
        assert_eq!(encode(&f), masked);
        let (f, _) = parse(&[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f], 1 << 20).unwrap().unwrap();
        assert_eq!(f.opcode, PING);
        // Incomplete input asks for more.
        assert_eq!(parse(&masked[..10], 1 << 20), Ok(None));
        assert_eq!(parse(&[0x82, 126, 1], 1 << 20), Ok(None));
    }

    #[test]
    fn refuses_what_this_proxy_does_not_relay() {
        assert_eq!(parse(&[0xC1, 0x00], 10), Err(FrameError::Reserved)); // RSV1: compression
        assert_eq!(parse(&[0x83, 0x00], 10), Err(FrameError::Opcode(3)));
        assert_eq!(parse(&[0x09, 0x00], 10), Err(FrameError::Control)); // fragmented ping
        assert_eq!(parse(&[0x89, 126, 0, 200], 1000), Err(FrameError::Control));
        assert_eq!(parse(&[0x82, 127, 0, 0, 0, 1, 0, 0, 0, 0], 1 << 20), Err(FrameError::TooLarge(1 << 32)));
    }

    #[test]
    fn close_frames_carry_code_and_a_fitting_reason() {
        let f = Frame::close(POLICY_VIOLATION, &"é".repeat(100), None);
        assert_eq!(&f.payload[..2], &1008u16.to_be_bytes());
        assert!(f.payload.len() <= 125 && std::str::from_utf8(&f.payload[2..]).is_ok());
    }

    proptest! {
        #[test]
        fn encode_then_parse_round_trips(
            fin: bool,
            opcode in prop::sample::select(vec![CONTINUATION, TEXT, BINARY]),
            mask: Option<[u8; 4]>,
            payload in prop::collection::vec(any::<u8>(), 0..70_000),
        ) {
            let frame = Frame { fin, opcode, mask, payload };
            let bytes = encode(&frame);
            prop_assert_eq!(parse(&bytes, 1 << 20), Ok(Some((frame, bytes.len()))));
            // Any strict prefix needs more bytes.
            prop_assert_eq!(parse(&bytes[..bytes.len() / 2], 1 << 20), Ok(None));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse(&bytes, 1 << 20);
        }
    }
}
