//! On a cluster: a request for an app whose web dynos run on other hosts is
//! handed to one of their routers, over kept HTTP/1.1 connections, and its
//! answer comes back as that router gave it (status, headers, H-codes and
//! all; the serving router writes the log line, naming itself and this
//! host).
//!
//! Forwarded requests carry `Renga-Forwarded-By: SECRET HOST`. The secret
//! is the cluster's (every host reads it from the ledger), so a router
//! trusts the forwarding headers of a forwarded request, and never forwards
//! it again, only when another host sent it; a client that sends the header
//! itself has it removed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::header::HeaderName;
use http::{HeaderMap, HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;

pub(super) static FORWARDED_BY: HeaderName = HeaderName::from_static("renga-forwarded-by");

/// How long a forward may take to connect to another host's router.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// After a host's router did not take a connection, how long it is left
/// out (its dynos are placed elsewhere once it misses its heartbeats).
const SKIP_AFTER_FAILURE: Duration = Duration::from_secs(2);

/// Kept connections per host.
const KEPT: usize = 64;

/// What this router knows of the cluster.
#[derive(Clone)]
pub struct ClusterRouting {
    /// This host's name, in log lines.
    pub host: Arc<str>,
    /// The cluster's forwarding secret.
    pub secret: String,
}

impl std::fmt::Debug for ClusterRouting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterRouting")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

impl ClusterRouting {
    /// The host a trusted forwarded request came from, removing the header
    /// whoever sent it.
    pub(super) fn forwarded_by(&self, headers: &mut HeaderMap) -> Option<String> {
        let value = headers.remove(&FORWARDED_BY)?;
        let (secret, host) = value.to_str().ok()?.split_once(' ')?;
        let same = secret.len() == self.secret.len()
            && secret
                .bytes()
                .zip(self.secret.bytes())
                .fold(0u8, |diff, (a, b)| diff | (a ^ b))
                == 0;
        same.then(|| host.to_string())
    }

    fn header(&self) -> HeaderValue {
        HeaderValue::from_str(&format!("{} {}", self.secret, self.host))
            .expect("host names and secrets are header-safe")
    }
}

/// Another host's router.
pub struct Peer {
    pub host: Arc<str>,
    pub addr: SocketAddr,
    kept: Mutex<Vec<SendRequest<Incoming>>>,
    /// Left out until then (ms since `born`), after a failed connection.
    skip_until: AtomicU64,
    born: Instant,
}

impl Peer {
    pub fn new(host: &str, addr: SocketAddr) -> Peer {
        Peer {
            host: host.into(),
            addr,
            kept: Mutex::new(Vec::new()),
            skip_until: AtomicU64::new(0),
            born: Instant::now(),
        }
    }

    fn now(&self) -> u64 {
        self.born.elapsed().as_millis() as u64
    }

    fn skipped(&self) -> bool {
        self.skip_until.load(Ordering::Relaxed) > self.now()
    }

    fn kept(&self) -> Option<SendRequest<Incoming>> {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.retain(|s| !s.is_closed());
        let ready = kept.iter().position(|s| s.is_ready())?;
        Some(kept.swap_remove(ready))
    }

    fn keep(&self, sender: SendRequest<Incoming>) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() < KEPT {
            kept.push(sender);
        }
    }

    async fn connect(&self) -> Option<SendRequest<Incoming>> {
        let connected = async {
            let stream = tokio::net::TcpStream::connect(self.addr).await.ok()?;
            let _ = stream.set_nodelay(true);
            let (sender, connection) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .ok()?;
            tokio::spawn(connection);
            Some(sender)
        };
        let sender = tokio::time::timeout(CONNECT_TIMEOUT, connected)
            .await
            .ok()
            .flatten();
        if sender.is_none() {
            self.skip_until.store(
                self.now() + SKIP_AFTER_FAILURE.as_millis() as u64,
                Ordering::Relaxed,
            );
        }
        sender
    }
}

/// The hosts running an app's web dynos, when this host runs none; taken
/// in turn.
pub struct Elsewhere {
    peers: Vec<Arc<Peer>>,
    next: AtomicUsize,
}

impl Elsewhere {
    pub fn new(peers: Vec<Arc<Peer>>) -> Elsewhere {
        Elsewhere {
            peers,
            next: AtomicUsize::new(0),
        }
    }

    pub fn hosts(&self) -> impl Iterator<Item = &str> {
        self.peers.iter().map(|p| p.host.as_ref())
    }
}

pub(super) enum Forwarded {
    /// Another host's router answered.
    Answer(Response<Incoming>),
    /// No host took the request, which comes back to be served here.
    Unreachable(Request<Incoming>),
    /// A host took the request and then failed (it went away, or answered
    /// nothing in time).
    Failed { host: Arc<str>, timed_out: bool },
}

/// Sends `request` (its forwarding headers already set) to one of the
/// hosts in `elsewhere`, waiting up to `wait` for the answer's head.
pub(super) async fn forward(
    cluster: &ClusterRouting,
    elsewhere: &Elsewhere,
    mut request: Request<Incoming>,
    wait: Duration,
) -> Forwarded {
    let count = elsewhere.peers.len();
    let first = elsewhere.next.fetch_add(1, Ordering::Relaxed);
    let (mut parts, body) = request.into_parts();
    crate::backend::for_next_hop(&mut parts);
    parts.headers.insert(&FORWARDED_BY, cluster.header());
    request = Request::from_parts(parts, body);
    for turn in 0..count {
        let peer = &elsewhere.peers[(first + turn) % count];
        if peer.skipped() {
            continue;
        }
        let mut retried = false;
        let mut sender = match peer.kept() {
            Some(sender) => sender,
            None => {
                retried = true;
                match peer.connect().await {
                    Some(sender) => sender,
                    None => continue,
                }
            }
        };
        loop {
            match tokio::time::timeout(wait, sender.try_send_request(request)).await {
                Err(_) => {
                    return Forwarded::Failed {
                        host: peer.host.clone(),
                        timed_out: true,
                    };
                }
                Ok(Ok(response)) => {
                    peer.keep(sender);
                    return Forwarded::Answer(response);
                }
                Ok(Err(mut e)) => match e.take_message() {
                    // Not sent: a kept connection the other side closed,
                    // or a host gone. Again on a new connection, then on
                    // the next host.
                    Some(unsent) => {
                        request = unsent;
                        if retried {
                            break;
                        }
                        retried = true;
                        match peer.connect().await {
                            Some(fresh) => sender = fresh,
                            None => break,
                        }
                    }
                    None => {
                        return Forwarded::Failed {
                            host: peer.host.clone(),
                            timed_out: false,
                        };
                    }
                },
            }
        }
    }
    // Served here after all: the secret goes no further.
    request.headers_mut().remove(&FORWARDED_BY);
    Forwarded::Unreachable(request)
}
