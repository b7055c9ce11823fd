//! Log lines as drains receive them: RFC 5424 messages, each prefixed with
//! its length in bytes and a space (the octet counting of RFC 6587, which
//! Heroku's `application/logplex-1` bodies use too):
//!
//! ```text
//! 71 <190>1 2026-12-05T20:03:04.123456+00:00 d.8f2c… app web.1 - - hello
//! ```
//!
//! HOSTNAME is the drain's token, APP-NAME the line's source (`app`, or
//! `renga` for the platform's own lines), PROCID the process (`web.1`,
//! `router`), MSGID and STRUCTURED-DATA are `-`. App lines are
//! `local7.info` (PRI 190) as Heroku's are; the platform's are
//! `local3.info` (PRI 158), Heroku's facility for its router and dyno
//! manager.

use std::io::Write as _;

use crate::logplex::{LogLine, Source, timestamp};

/// `local7.info` and `local3.info`.
const PRI_APP: u8 = 23 * 8 + 6;
const PRI_PLATFORM: u8 = 19 * 8 + 6;

/// Appends one octet-counted frame for `line` to `out`.
pub fn write_frame(out: &mut Vec<u8>, line: &LogLine, hostname: &str) {
    let pri = match line.source {
        Source::App => PRI_APP,
        Source::Renga => PRI_PLATFORM,
    };
    let mut message = Vec::with_capacity(96 + line.message.len());
    let _ = write!(
        message,
        "<{pri}>1 {} {hostname} {} {} - - {}",
        timestamp(line.time),
        line.source.as_str(),
        procid(&line.process),
        line.message
    );
    let _ = write!(out, "{} ", message.len());
    out.extend_from_slice(&message);
}

/// PROCID is 1 to 128 printable ASCII characters with no space.
fn procid(process: &str) -> std::borrow::Cow<'_, str> {
    let ok = |c: char| c.is_ascii_graphic();
    if !process.is_empty() && process.len() <= 128 && process.chars().all(ok) {
        process.into()
    } else if process.is_empty() {
        "-".into()
    } else {
        process
            .chars()
            .map(|c| if ok(c) { c } else { '_' })
            .take(128)
            .collect::<String>()
            .into()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    /// Splits an octet-counted stream back into its messages.
    fn split(mut stream: &[u8]) -> Vec<String> {
        let mut messages = Vec::new();
        while !stream.is_empty() {
            let space = stream.iter().position(|&b| b == b' ').unwrap();
            let len: usize = std::str::from_utf8(&stream[..space])
                .unwrap()
                .parse()
                .unwrap();
            let end = space + 1 + len;
            messages.push(String::from_utf8(stream[space + 1..end].to_vec()).unwrap());
            stream = &stream[end..];
        }
        messages
    }

    #[test]
    fn frames_are_octet_counted_rfc5424_messages() {
        let time = SystemTime::UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        let mut out = Vec::new();
        let line = |source, process: &str, message: &str| LogLine {
            time,
            source,
            process: process.into(),
            message: message.into(),
        };
        write_frame(
            &mut out,
            &line(Source::App, "web.1", "héllo wörld"),
            "d.abc",
        );
        write_frame(&mut out, &line(Source::Renga, "router", "at=info"), "d.abc");
        write_frame(&mut out, &line(Source::App, "bad proc", ""), "d.abc");
        assert_eq!(
            split(&out),
            [
                "<190>1 2023-11-14T22:13:20.123456+00:00 d.abc app web.1 - - héllo wörld",
                "<158>1 2023-11-14T22:13:20.123456+00:00 d.abc renga router - - at=info",
                "<190>1 2023-11-14T22:13:20.123456+00:00 d.abc app bad_proc - - ",
            ]
        );
        // The count is in bytes, not characters.
        assert!(out.starts_with(b"73 <190>1"), "73 bytes, 71 characters");
    }
}
