//! A guest's stdout and stderr, turned into log lines `app[web.1]: LINE`.
//!
//! Bytes are split on newlines; a partial line waits for its end (or for the
//! instance to finish) so that a line written in pieces is one log line.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use crate::logplex::{AppLog, MAX_LINE_BYTES, Process, Source};

/// How much a guest may write in one call (the same bound wasmtime's own
/// stdio uses).
pub(super) const WRITE_BUDGET: usize = 64 * 1024;

/// Where a command process's standard streams go when they do not go to the
/// log: the pipes of an attached caller (`renga run`), or a worker's stdin,
/// which the platform closes to ask it to stop.
#[derive(Default)]
pub struct ProcessIo {
    pub stdin: Option<Box<dyn tokio::io::AsyncRead + Send + Sync + Unpin>>,
    pub stdout: Option<Box<dyn tokio::io::AsyncWrite + Send + Sync + Unpin>>,
    pub stderr: Option<Box<dyn tokio::io::AsyncWrite + Send + Sync + Unpin>>,
    /// Becomes `true` when the platform asks the process to stop (a worker
    /// scaled down or replaced). A native process gets SIGTERM then; a
    /// component, which has no signals, sees its stdin closed.
    pub terminate: Option<tokio::sync::watch::Receiver<bool>>,
}

/// One instance's stdout (or stderr). Every stream the guest opens on it
/// shares one line buffer.
#[derive(Clone)]
pub(crate) struct GuestOutput {
    lines: Arc<Mutex<LineBuffer>>,
}

impl GuestOutput {
    pub(crate) fn new(log: AppLog, process: Process) -> GuestOutput {
        GuestOutput {
            lines: Arc::new(Mutex::new(LineBuffer {
                log,
                process,
                partial: Vec::new(),
            })),
        }
    }

    fn write(&self, bytes: &[u8]) {
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write(bytes);
    }
}

struct LineBuffer {
    log: AppLog,
    process: Process,
    partial: Vec<u8>,
}

impl LineBuffer {
    fn write(&mut self, mut bytes: &[u8]) {
        while let Some(newline) = bytes.iter().position(|&b| b == b'\n') {
            self.partial.extend_from_slice(&bytes[..newline]);
            self.emit();
            bytes = &bytes[newline + 1..];
        }
        self.partial.extend_from_slice(bytes);
        // A guest that never writes a newline still gets its output logged,
        // in pieces, rather than growing the host's memory without bound.
        while self.partial.len() >= MAX_LINE_BYTES {
            let rest = self.partial.split_off(MAX_LINE_BYTES);
            self.emit();
            self.partial = rest;
        }
    }

    fn emit(&mut self) {
        let mut line = std::mem::take(&mut self.partial);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let message = match String::from_utf8(line) {
            Ok(text) => text,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
        self.log.emit(Source::App, &self.process, message);
    }
}

impl Drop for LineBuffer {
    fn drop(&mut self) {
        if !self.partial.is_empty() {
            self.emit();
        }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        GuestOutput::write(self, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_BUDGET)
    }
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        GuestOutput::write(&self, buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_become_whole_lines() {
        let log = AppLog::new(10);
        let out = GuestOutput::new(log.clone(), "web.1".into());
        out.write(b"hel");
        out.write(b"lo\r\nwor");
        out.write(b"ld\nunfinished");
        drop(out);
        let lines: Vec<_> = log.recent(10).iter().map(|l| l.message.clone()).collect();
        assert_eq!(lines, ["hello", "world", "unfinished"]);
        assert!(
            log.recent(1)[0]
                .to_string()
                .contains(" app[web.1]: unfinished")
        );
    }
}
