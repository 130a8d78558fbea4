//! git's pkt-line framing (gitprotocol-common): what the gate writes itself
//! (the smart-HTTP service header, `ERR` lines). Everything else on the wire
//! is git's own.

/// The flush packet.
pub const FLUSH: &[u8] = b"0000";

/// Largest payload of one packet.
pub const MAX_PAYLOAD: usize = 65516;

/// One packet carrying `data` (cut to [`MAX_PAYLOAD`]).
pub fn encode(data: &[u8]) -> Vec<u8> {
    let data = &data[..data.len().min(MAX_PAYLOAD)];
    let mut out = format!("{:04x}", data.len() + 4).into_bytes();
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_as_git_does() {
        assert_eq!(encode(b"# service=git-upload-pack\n"), b"001e# service=git-upload-pack\n");
        assert_eq!(encode(&vec![b'x'; 70_000]).len(), 65520);
    }
}
