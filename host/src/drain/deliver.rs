//! Delivery: one task per drain takes batches from its outlet and sends
//! them, over one kept connection, until the drain is removed.
//!
//! A batch that fails is sent again (the same `Logplex-Frame-Id`, so a
//! receiver can tell a repeat) after a backoff that doubles up to 10 s.
//! Meanwhile the app's lines queue in the outlet; when it is full the
//! oldest go, and once a second at most the task writes Heroku's `L10` to
//! the app's log (for everyone else who reads it) and puts the same report
//! at the head of its own next batch.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_util::task::AbortOnDropHandle;

use super::frame::write_frame;
use super::{Drain, Transport};
use crate::logplex::{AppLog, LogLine, Outlet, Source, timestamp};

/// Lines a drain may fall behind by before it loses the oldest, unless the
/// server says otherwise.
pub const DEFAULT_BUFFER_LINES: usize = 10_000;

/// The most lines in one batch (one POST, or one write to a syslog stream).
const MAX_BATCH_LINES: usize = 500;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// One batch, sent and (for HTTP) answered.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How often, at most, a drain reports lost lines.
const REPORT_EVERY: Duration = Duration::from_secs(1);
/// What a receiver may answer a batch with; more ends the connection.
const MAX_REPLY_BYTES: usize = 64 * 1024;

/// What drains may reach, and whom they trust: the server's policy.
pub struct DrainPolicy {
    /// Whether drains may go to loopback, private, link-local and other
    /// non-public addresses (off by default: a drain is a connection the
    /// platform makes for a tenant, and must not reach the platform's own
    /// network).
    pub allow_private: bool,
    /// Lines each drain may fall behind by before it loses the oldest.
    pub buffer_lines: usize,
    https: Arc<rustls::ClientConfig>,
    syslog: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for DrainPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DrainPolicy")
            .field("allow_private", &self.allow_private)
            .field("buffer_lines", &self.buffer_lines)
            .finish_non_exhaustive()
    }
}

impl DrainPolicy {
    /// Trusts Mozilla's root certificates, and the operator's own
    /// authority from a PEM file when given.
    pub fn new(
        allow_private: bool,
        buffer_lines: usize,
        extra_ca: Option<&Path>,
    ) -> anyhow::Result<DrainPolicy> {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject as _;

        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = extra_ca {
            let mut added = 0;
            for cert in CertificateDer::pem_file_iter(path)
                .with_context(|| format!("reading drain CA certificates from {}", path.display()))?
            {
                let cert = cert.with_context(|| format!("reading {}", path.display()))?;
                roots
                    .add(cert)
                    .with_context(|| format!("a certificate in {}", path.display()))?;
                added += 1;
            }
            if added == 0 {
                bail!("{} holds no PEM certificate", path.display());
            }
        }
        let config = |alpn: &[&[u8]]| -> anyhow::Result<Arc<rustls::ClientConfig>> {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots.clone())
                .with_no_client_auth();
            config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            Ok(Arc::new(config))
        };
        Ok(DrainPolicy {
            allow_private,
            buffer_lines: buffer_lines.max(1),
            https: config(&[b"http/1.1"])?,
            syslog: config(&[])?,
        })
    }

    fn allows(&self, ip: IpAddr) -> bool {
        self.allow_private || is_public(ip)
    }
}

/// Whether an address is on the public internet: not loopback, private,
/// shared (CGNAT), link-local, unique-local, multicast, documentation or
/// unspecified.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
                || (a == 192 && b == 0 && v4.octets()[2] == 0)
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            let embedded = |hi: u16, lo: u16| {
                IpAddr::V4(std::net::Ipv4Addr::new(
                    (hi >> 8) as u8,
                    hi as u8,
                    (lo >> 8) as u8,
                    lo as u8,
                ))
            };
            // NAT64 (64:ff9b::/96, 64:ff9b:1::/48) and 6to4 (2002::/16)
            // carry an IPv4 address that is what they reach.
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                return is_public(embedded(s[6], s[7]));
            }
            if s[0] == 0x2002 {
                return is_public(embedded(s[1], s[2]));
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // IPv4-compatible (deprecated) ::/96
                || s[..6] == [0; 6]
                || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1)
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] & 0xffc0) == 0xfec0
                || s[0] == 0x2001 && s[1] == 0x0db8)
        }
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A drain's kept connection (for HTTP, with the task that drives it,
/// which ends with it).
enum Connection {
    Http {
        sender: SendRequest<Full<Bytes>>,
        _driver: AbortOnDropHandle<()>,
    },
    Syslog(Box<dyn Io>),
}

struct Worker {
    drain: Drain,
    policy: Arc<DrainPolicy>,
    connection: Option<Connection>,
    /// Delivery fails (said once in the app's log, until it works again).
    failing: bool,
    reporter: Reporter,
}

/// What a drain says in its app's log: lost lines and delivery trouble.
struct Reporter {
    outlet: Arc<Outlet>,
    log: AppLog,
    /// Lost lines reported to the app's log but not yet to the drain.
    unsent_loss: Option<(u64, SystemTime)>,
    last_report: Option<Instant>,
}

/// Drain tasks running, server-wide (for `/server/stats`).
static LIVE: AtomicUsize = AtomicUsize::new(0);

pub fn live_drains() -> usize {
    LIVE.load(Ordering::Relaxed)
}

struct Live;

impl Live {
    fn count() -> Live {
        LIVE.fetch_add(1, Ordering::Relaxed);
        Live
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Runs a drain until its outlet is closed (the drain removed, or its app
/// destroyed).
pub async fn run(drain: Drain, outlet: Arc<Outlet>, log: AppLog, policy: Arc<DrainPolicy>) {
    let _live = Live::count();
    let mut worker = Worker {
        drain,
        policy,
        connection: None,
        failing: false,
        reporter: Reporter {
            outlet: outlet.clone(),
            log,
            unsent_loss: None,
            last_report: None,
        },
    };
    loop {
        // While a loss waits to be reported, wait for lines only until the
        // report is due.
        let take = outlet.take(MAX_BATCH_LINES);
        let lines = if outlet.has_lost() {
            match tokio::time::timeout(REPORT_EVERY, take).await {
                Ok(lines) => lines,
                Err(_) => {
                    // No line to carry the report: it goes on its own.
                    worker.reporter.report_loss();
                    if worker.reporter.unsent_loss.is_some() {
                        worker.deliver(Vec::new()).await;
                    }
                    continue;
                }
            }
        } else {
            take.await
        };
        if lines.is_empty() {
            break;
        }
        worker.reporter.report_loss();
        worker.deliver(lines).await;
        if outlet.is_closed() {
            break;
        }
    }
}

impl Reporter {
    /// Writes `L10` to the app's log (not to this drain: it gets the report
    /// in its next batch), at most once a second.
    fn report_loss(&mut self) {
        if self.last_report.is_some_and(|t| t.elapsed() < REPORT_EVERY) {
            return;
        }
        let Some((lost, since)) = self.outlet.take_lost() else {
            return;
        };
        self.last_report = Some(Instant::now());
        self.log
            .push_except(loss_line(lost, since), Some(&self.outlet));
        self.unsent_loss = Some(match self.unsent_loss {
            Some((before, first)) => (before + lost, first),
            None => (lost, since),
        });
    }

    /// A line from the drain itself, to the app's log but not to itself.
    fn say(&self, message: String) {
        self.log.push_except(
            LogLine {
                time: SystemTime::now(),
                source: Source::Renga,
                process: "logplex".into(),
                message,
            },
            Some(&self.outlet),
        );
    }
}

impl Worker {
    /// Sends one batch until it is delivered or the drain is removed.
    async fn deliver(&mut self, lines: Vec<Arc<LogLine>>) {
        let mut body = Vec::with_capacity(lines.len() * 160);
        let mut count = lines.len();
        if let Some((lost, since)) = self.reporter.unsent_loss.take() {
            write_frame(&mut body, &loss_line(lost, since), &self.drain.token);
            count += 1;
        }
        for line in &lines {
            write_frame(&mut body, line, &self.drain.token);
        }
        drop(lines);
        if count == 0 {
            return;
        }
        let body = Bytes::from(body);
        let frame_id = uuid::Uuid::new_v4().simple().to_string();
        let outlet = self.reporter.outlet.clone();
        let mut backoff = FIRST_BACKOFF;
        let mut fresh_retry = true;
        loop {
            let reused = self.connection.is_some();
            let outcome = {
                let Worker {
                    drain,
                    policy,
                    connection,
                    reporter,
                    ..
                } = &mut *self;
                let attempt = tokio::time::timeout(
                    SEND_TIMEOUT,
                    send(drain, policy, connection, body.clone(), count, &frame_id),
                );
                let mut attempt = pin!(attempt);
                let mut closed = pin!(outlet.closed());
                let mut tick = tokio::time::interval(REPORT_EVERY);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        result = &mut attempt => break result.unwrap_or_else(|_| {
                            Err(anyhow!("no answer in {}s", SEND_TIMEOUT.as_secs()))
                        }),
                        () = &mut closed => return,
                        // A slow receiver: lines lost meanwhile are reported
                        // while the batch is still on its way.
                        _ = tick.tick() => reporter.report_loss(),
                    }
                }
            };
            match outcome {
                Ok(()) => {
                    if self.failing {
                        self.failing = false;
                        self.reporter
                            .say(format!("drain {}: delivering again", self.drain.token));
                    }
                    return;
                }
                Err(e) if e.downcast_ref::<Refused>().is_some() => {
                    // The receiver will never take this batch (a 4xx other
                    // than 408 and 429): drop it rather than stall behind it.
                    self.connection = None;
                    self.reporter.say(format!(
                        "Error L13 (drain delivery error): drain {}: {e}; dropped {count} messages",
                        self.drain.token
                    ));
                    return;
                }
                Err(_) if reused && fresh_retry => {
                    // A kept connection the receiver closed meanwhile: send
                    // again at once on a new one.
                    self.connection = None;
                    fresh_retry = false;
                    continue;
                }
                Err(e) => {
                    self.connection = None;
                    if !self.failing {
                        self.failing = true;
                        let reason = format!("{e:#}");
                        let code = if reason.contains("certificate") {
                            "Error L14 (certificate validation error)"
                        } else {
                            "Error L13 (drain delivery error)"
                        };
                        self.reporter.say(format!(
                            "{code}: drain {}: {reason}; retrying",
                            self.drain.token
                        ));
                    }
                }
            }
            // Back off, reporting losses meanwhile.
            let until = Instant::now() + backoff;
            while let Some(left) = until.checked_duration_since(Instant::now()) {
                tokio::select! {
                    () = tokio::time::sleep(left.min(REPORT_EVERY)) => {}
                    () = outlet.closed() => return,
                }
                self.reporter.report_loss();
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

fn loss_line(lost: u64, since: SystemTime) -> LogLine {
    LogLine {
        time: SystemTime::now(),
        source: Source::Renga,
        process: "logplex".into(),
        message: format!(
            "Error L10 (output buffer overflow): {lost} messages dropped since {}.",
            timestamp(since)
        ),
    }
}

/// A receiver's answer that sending again would not change.
#[derive(Debug, thiserror::Error)]
#[error("the drain answered {0}")]
struct Refused(http::StatusCode);

/// Sends one batch over the drain's connection, connecting first if there
/// is none (or the receiver closed it).
async fn send(
    drain: &Drain,
    policy: &DrainPolicy,
    connection: &mut Option<Connection>,
    body: Bytes,
    count: usize,
    frame_id: &str,
) -> anyhow::Result<()> {
    if connection.as_mut().is_none_or(|c| match c {
        Connection::Http { sender, .. } => sender.is_closed(),
        // A syslog receiver never writes: a read that is ready means it
        // hung up (or broke the connection), and a write now would vanish
        // into the socket's buffer.
        Connection::Syslog(stream) => {
            let mut probe = [0u8; 256];
            futures::FutureExt::now_or_never(stream.read(&mut probe)).is_some()
        }
    }) {
        *connection = Some(connect(drain, policy).await?);
    }
    match connection.as_mut().expect("connected above") {
        Connection::Syslog(stream) => {
            stream.write_all(&body).await?;
            stream.flush().await?;
            Ok(())
        }
        Connection::Http { sender, .. } => {
            let url = &drain.url;
            let mut request = http::Request::post(url.target.as_str())
                .header(http::header::HOST, url.authority())
                .header(http::header::CONTENT_TYPE, "application/logplex-1")
                .header(
                    http::header::USER_AGENT,
                    concat!("renga-logplex/", env!("CARGO_PKG_VERSION")),
                )
                .header("Logplex-Msg-Count", count)
                .header("Logplex-Frame-Id", frame_id)
                .header("Logplex-Drain-Token", drain.token.as_str());
            if let Some(credentials) = &url.credentials {
                use base64::Engine as _;
                let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
                request = request.header(http::header::AUTHORIZATION, format!("Basic {encoded}"));
            }
            let request = request.body(Full::new(body))?;
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let status = response.status();
            // Read the answer, so the connection can carry the next batch.
            if Limited::new(response.into_body(), MAX_REPLY_BYTES)
                .collect()
                .await
                .is_err()
            {
                *connection = None;
            }
            if status.is_success() {
                Ok(())
            } else if status.is_client_error()
                && status != http::StatusCode::REQUEST_TIMEOUT
                && status != http::StatusCode::TOO_MANY_REQUESTS
            {
                Err(Refused(status).into())
            } else {
                Err(anyhow!("the drain answered {status}"))
            }
        }
    }
}

/// Connects to the drain's host, on an address the policy allows, with TLS
/// when the URL asks for it.
async fn connect(drain: &Drain, policy: &DrainPolicy) -> anyhow::Result<Connection> {
    let url = &drain.url;
    let addresses: Vec<SocketAddr> = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio::net::lookup_host((url.host.as_str(), url.port)),
    )
    .await
    .map_err(|_| {
        anyhow!(
            "resolving {} took over {}s",
            url.host,
            CONNECT_TIMEOUT.as_secs()
        )
    })?
    .with_context(|| format!("resolving {}", url.host))?
    .collect();
    let allowed: Vec<SocketAddr> = addresses
        .iter()
        .copied()
        .filter(|a| policy.allows(a.ip()))
        .collect();
    if allowed.is_empty() {
        if addresses.is_empty() {
            bail!("{} has no address", url.host);
        }
        bail!(
            "{} is a private address; this server sends drains to public addresses only",
            addresses[0].ip()
        );
    }
    let mut last = None;
    let mut tcp = None;
    for address in allowed {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => {
                tcp = Some(stream);
                break;
            }
            Ok(Err(e)) => last = Some(anyhow!("connecting to {address}: {e}")),
            Err(_) => {
                last = Some(anyhow!(
                    "connecting to {address} took over {}s",
                    CONNECT_TIMEOUT.as_secs()
                ))
            }
        }
    }
    let tcp = tcp.ok_or_else(|| last.unwrap_or_else(|| anyhow!("no address answered")))?;
    tcp.set_nodelay(true)?;
    let stream: Box<dyn Io> = if url.tls {
        let config = match url.transport {
            Transport::Http => policy.https.clone(),
            Transport::Syslog => policy.syslog.clone(),
        };
        let name = rustls_pki_types::ServerName::try_from(url.host.clone())
            .map_err(|e| anyhow!("{}: {e}", url.host))?;
        let tls = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio_rustls::TlsConnector::from(config).connect(name, tcp),
        )
        .await
        .map_err(|_| anyhow!("the TLS handshake took over {}s", CONNECT_TIMEOUT.as_secs()))?
        .context("TLS")?;
        Box::new(tls)
    } else {
        Box::new(tcp)
    };
    match url.transport {
        Transport::Syslog => Ok(Connection::Syslog(stream)),
        Transport::Http => {
            let (sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            let driver = tokio::spawn(async move {
                let _ = connection.await;
            });
            Ok(Connection::Http {
                sender,
                _driver: AbortOnDropHandle::new(driver),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "64:ff9b:1::1",
            "2002:7f00:1::1",
            "::127.0.0.1",
            "fec0::1",
            "192.0.0.8",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }
}
