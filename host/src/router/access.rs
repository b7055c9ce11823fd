//! The router's log line, one per request, in Heroku's format:
//!
//! ```text
//! at=info method=GET path="/" host=hello.localhost request_id=... fwd="127.0.0.1" dyno=web.1 connect=0ms service=3ms status=200 bytes=17 protocol=http
//! at=error code=H12 desc="Request timeout" method=GET path="/slow" ... status=503 bytes=0 protocol=http
//! ```
//!
//! The line is written when the response body ends (or the client goes), so
//! `service` and `bytes` are what really happened.

use std::fmt::Write as _;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;

use super::Slot;
use crate::backend::ResponseBody;
use crate::logplex::{AppLog, Process, Source};
use crate::metrics::DynoMeter;

static ROUTER: LazyLock<Process> = LazyLock::new(|| Process::from("router"));

/// A Heroku router error code and its description.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ErrorCode {
    pub code: &'static str,
    pub desc: &'static str,
}

pub(super) const H10: ErrorCode = ErrorCode {
    code: "H10",
    desc: "App crashed",
};
pub(super) const H11: ErrorCode = ErrorCode {
    code: "H11",
    desc: "Backlog too deep",
};
pub(super) const H12: ErrorCode = ErrorCode {
    code: "H12",
    desc: "Request timeout",
};
pub(super) const H13: ErrorCode = ErrorCode {
    code: "H13",
    desc: "Connection closed without response",
};
pub(super) const H14: ErrorCode = ErrorCode {
    code: "H14",
    desc: "No web processes running",
};
pub(super) const H18: ErrorCode = ErrorCode {
    code: "H18",
    desc: "Server Request Interrupted",
};
pub(super) const H20: ErrorCode = ErrorCode {
    code: "H20",
    desc: "App boot timeout",
};
pub(super) const H80: ErrorCode = ErrorCode {
    code: "H80",
    desc: "Maintenance mode",
};
pub(super) const H99: ErrorCode = ErrorCode {
    code: "H99",
    desc: "Platform error",
};
pub(super) const R14: ErrorCode = ErrorCode {
    code: "R14",
    desc: "Memory quota exceeded",
};

/// Everything the line needs, gathered while the request is handled.
pub(super) struct Access {
    pub log: AppLog,
    /// Where the request is counted: the dyno's meter once it has one, the
    /// app's router meter before.
    pub meter: Arc<DynoMeter>,
    pub method: http::Method,
    pub path: String,
    pub host: String,
    pub request_id: String,
    pub fwd: String,
    pub dyno: Option<Process>,
    pub connect: Duration,
    /// Time spent waking the app from zero, when this request woke it.
    pub wake: Option<Duration>,
    pub started: Instant,
    pub status: u16,
    pub error: Option<ErrorCode>,
    pub protocol: &'static str,
    /// On a cluster: the host that served the request, and the one that
    /// forwarded it here.
    pub served_by: Option<Arc<str>>,
    pub forwarded_by: Option<String>,
}

impl Access {
    /// The app's own time: the whole request less connecting and waking.
    fn service(&self) -> Duration {
        self.started
            .elapsed()
            .saturating_sub(self.connect)
            .saturating_sub(self.wake.unwrap_or_default())
    }

    fn line(&self, bytes: u64, service: Duration) -> String {
        let mut line = String::with_capacity(256);
        match self.error {
            Some(e) => {
                let _ = write!(line, "at=error code={} desc=\"{}\" ", e.code, e.desc);
            }
            None => line.push_str("at=info "),
        }
        let _ = write!(
            line,
            "method={} path=\"{}\" host={} request_id={} fwd=\"{}\" dyno={} connect={}ms service={}ms ",
            self.method,
            self.path,
            self.host,
            self.request_id,
            self.fwd,
            self.dyno.as_deref().unwrap_or(""),
            self.connect.as_millis(),
            service.as_millis(),
        );
        if let Some(wake) = self.wake {
            let _ = write!(line, "wake={}ms ", wake.as_millis());
        }
        let _ = write!(
            line,
            "status={} bytes={} protocol={}",
            self.status, bytes, self.protocol,
        );
        if let Some(host) = &self.served_by {
            let _ = write!(line, " served_by={host}");
        }
        if let Some(host) = &self.forwarded_by {
            let _ = write!(line, " forwarded_by={host}");
        }
        line
    }

    fn emit(&self, bytes: u64) {
        let service = self.service();
        self.meter.request(self.status, service);
        self.log
            .emit(Source::Renga, &ROUTER, self.line(bytes, service));
    }
}

/// The router's response body: the guest's stream or the router's own page,
/// counted, with the log line written at its end.
pub(super) struct AccessBody {
    inner: Inner,
    access: Option<Box<Access>>,
    bytes: u64,
    /// Keeps the dyno's in-flight count until the body is done: given back
    /// at its last frame, not when hyper drops the body (which on a kept
    /// connection can come after the client's next request has arrived and
    /// found every slot taken).
    slot: Option<Slot>,
}

enum Inner {
    Dyno(ResponseBody),
    Page(Full<Bytes>),
}

impl AccessBody {
    pub(super) fn dyno(body: ResponseBody, access: Access, slot: Slot) -> AccessBody {
        AccessBody {
            inner: Inner::Dyno(body),
            access: Some(Box::new(access)),
            bytes: 0,
            slot: Some(slot),
        }
    }

    pub(super) fn page(body: impl Into<Bytes>, access: Option<Access>) -> AccessBody {
        AccessBody {
            inner: Inner::Page(Full::new(body.into())),
            access: access.map(Box::new),
            bytes: 0,
            slot: None,
        }
    }

    /// Another host's answer, passed on as it comes (that host writes
    /// the log line).
    pub(super) fn forwarded(body: ResponseBody) -> AccessBody {
        AccessBody {
            inner: Inner::Dyno(body),
            access: None,
            bytes: 0,
            slot: None,
        }
    }

    fn finish(&mut self) {
        self.slot.take();
        if let Some(access) = self.access.take() {
            access.emit(self.bytes);
        }
    }
}

impl Drop for AccessBody {
    fn drop(&mut self) {
        self.finish();
    }
}

pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Body for AccessBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled: Poll<Option<Result<Frame<Bytes>, BoxError>>> = match &mut this.inner {
            Inner::Dyno(body) => body.as_mut().poll_frame(cx),
            Inner::Page(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|frame| frame.map(|r| r.map_err(|never| match never {}))),
        };
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes += data.len() as u64;
                }
                if this.is_end_stream() {
                    this.finish();
                }
            }
            Poll::Ready(Some(Err(_))) => {
                // The guest failed (or stalled) after the client had the
                // response head: the body is cut short. Heroku calls this
                // H18; the guest task logs why.
                if let Some(access) = this.access.as_mut() {
                    access.error = Some(H18);
                }
                this.finish();
            }
            Poll::Ready(None) => this.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Dyno(body) => body.is_end_stream(),
            Inner::Page(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Dyno(body) => body.size_hint(),
            Inner::Page(body) => body.size_hint(),
        }
    }
}

/// The page the router answers with when the app cannot.
pub(super) fn error_page(status: u16, title: &str, request_id: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{status} {title}</title></head>\n<body><h1>{title}</h1>\n<p>renga could not get an answer from this app. If you own it, run <code>renga logs --tail</code> to see why.</p>\n<p><small>request id: {request_id}</small></p></body></html>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_has_herokus_fields_in_order() {
        let access = Access {
            log: AppLog::new(1),
            meter: DynoMeter::off(),
            method: http::Method::GET,
            path: "/".into(),
            host: "hello.localhost".into(),
            request_id: "abc".into(),
            fwd: "127.0.0.1".into(),
            dyno: Some("web.1".into()),
            connect: Duration::ZERO,
            wake: None,
            started: Instant::now(),
            status: 200,
            error: None,
            protocol: "http",
            served_by: None,
            forwarded_by: None,
        };
        assert_eq!(
            access.line(17, Duration::ZERO),
            "at=info method=GET path=\"/\" host=hello.localhost request_id=abc fwd=\"127.0.0.1\" dyno=web.1 connect=0ms service=0ms status=200 bytes=17 protocol=http"
        );
        let failed = Access {
            error: Some(H12),
            status: 503,
            dyno: None,
            ..access
        };
        assert!(
            failed
                .line(0, Duration::ZERO)
                .starts_with("at=error code=H12 desc=\"Request timeout\" method=GET")
        );
        assert!(
            failed
                .line(0, Duration::ZERO)
                .contains(" dyno= connect=0ms")
        );
        let woken = Access {
            wake: Some(Duration::from_millis(2)),
            ..failed
        };
        assert!(
            woken
                .line(0, Duration::ZERO)
                .contains(" service=0ms wake=2ms status=503 ")
        );
    }
}
