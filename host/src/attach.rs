//! attach: the wire format between `renga run` and a one-off dyno.
//!
//! The CLI asks for `POST /apps/{app}/dynos` with `Upgrade: renga-attach`;
//! the API answers `101 Switching Protocols` and both sides then speak in
//! frames, Docker's attach framing plus two renga streams: an 8-byte header
//! (the stream, three zero bytes, the payload length as a big-endian u32)
//! and the payload.
//!
//! - stream 0, to the dyno: stdin bytes; an empty frame closes stdin.
//! - streams 1 and 2, from the dyno: stdout and stderr bytes.
//! - stream 3, from the dyno: the exit code, a big-endian i32; the last frame.
//! - stream 4, from the dyno: a platform message for the caller's terminal.

/// The `Upgrade` protocol name.
pub const PROTOCOL: &str = "renga-attach";

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const EXIT: u8 = 3;
pub const NOTE: u8 = 4;

/// The largest payload either side sends or accepts in one frame.
pub const MAX_FRAME: u32 = 1 << 20;

/// A frame's header.
pub fn header(stream: u8, len: usize) -> [u8; 8] {
    let len = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
    [stream, 0, 0, 0, len[0], len[1], len[2], len[3]]
}

/// A header's stream and length; `None` for one that is not well formed.
pub fn parse_header(header: [u8; 8]) -> Option<(u8, u32)> {
    let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    (header[1..4] == [0, 0, 0] && header[0] <= NOTE && len <= MAX_FRAME).then_some((header[0], len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_garbage_is_refused() {
        assert_eq!(parse_header(header(STDOUT, 5)), Some((STDOUT, 5)));
        assert_eq!(parse_header(header(STDIN, 0)), Some((STDIN, 0)));
        assert_eq!(parse_header(*b"GET / HT"), None);
        assert_eq!(parse_header(header(STDERR, (MAX_FRAME + 1) as usize)), None);
    }
}
