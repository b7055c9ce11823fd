//! Outbound HTTP (`wasi:http/outgoing-handler`, with `wasi:http/types`):
//! denied unless the release allows the destination.
//!
//! The allow-list is the config var `RENGA_ALLOWED_OUTBOUND_HOSTS`, in
//! Spin's `allowed_outbound_hosts` syntax: `https://api.example.com`,
//! `https://*.example.com:443`, `http://127.0.0.1:8080`, `*://cache:6379`,
//! `http://10.0.0.0/8:*`, separated by commas or spaces. A port left out is
//! the scheme's default. A denied call gets `HTTP-request-denied` as a
//! value; every call gets a log line on the app's log,
//! `renga[outbound]: method=GET host=... status=200 service=12ms dyno=web.1`.
//! Connect and first-byte timeouts are capped by the server, and each dyno
//! has a limit on outbound requests in flight at once.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::uri::Scheme;
use wasmtime::component::Linker;
use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpCtx, WasiHttpHooks};

use super::{Capability, DynoInputs, ImportName, InstanceInputs, ReleaseInputs};
use crate::logplex::{AppLog, Process, Source};
use crate::runtime::DynoState;

/// The config var that holds the allow-list.
pub const ALLOWED_HOSTS_VAR: &str = "RENGA_ALLOWED_OUTBOUND_HOSTS";

/// How outbound requests are bounded on this server.
#[derive(Clone, Debug)]
pub struct OutboundConfig {
    /// Longest wait for a connection (a guest may ask for less).
    pub connect_timeout: Duration,
    /// Longest wait for the response head.
    pub first_byte_timeout: Duration,
    /// Longest pause while the response body flows.
    pub between_bytes_timeout: Duration,
    /// Outbound requests one dyno may have in flight at once.
    pub per_dyno: usize,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        OutboundConfig {
            connect_timeout: Duration::from_secs(10),
            first_byte_timeout: Duration::from_secs(30),
            between_bytes_timeout: Duration::from_secs(30),
            per_dyno: 16,
        }
    }
}

pub struct Outbound {
    config: OutboundConfig,
}

impl Outbound {
    pub fn new(config: OutboundConfig) -> Outbound {
        Outbound { config }
    }
}

/// What one dyno's instances share: the release's allow-list and the dyno's
/// outbound requests in flight.
pub struct OutboundDyno {
    allowed: Arc<AllowedHosts>,
    in_flight: Arc<tokio::sync::Semaphore>,
    config: OutboundConfig,
    log: AppLog,
    name: Process,
    meter: Arc<crate::metrics::DynoMeter>,
}

/// One instance's `wasi:http` state.
pub struct OutboundInstance {
    pub(crate) http: WasiHttpCtx,
    pub(crate) hooks: OutboundHooks,
}

impl Capability for Outbound {
    type Release = Arc<AllowedHosts>;
    type Dyno = Arc<OutboundDyno>;
    type Instance = OutboundInstance;

    fn link(&self, linker: &mut Linker<DynoState>) -> anyhow::Result<()> {
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)?;
        Ok(())
    }

    fn link_concurrent(&self, linker: &mut Linker<DynoState>) -> anyhow::Result<()> {
        // WASI 0.3's `wasi:http/{types,client}`: its outbound requests go
        // through the same hooks, so the same allow-list and limits.
        wasmtime_wasi_http::p3::add_to_linker(linker)?;
        Ok(())
    }

    fn claims(&self, import: &ImportName) -> bool {
        import.is("wasi", "http", &["0.2.*", "0.3.*"])
    }

    fn configure(&self, release: &ReleaseInputs<'_>) -> anyhow::Result<Arc<AllowedHosts>> {
        let list = release.config.get(ALLOWED_HOSTS_VAR).unwrap_or("");
        AllowedHosts::parse(list)
            .map(Arc::new)
            .map_err(|e| anyhow::anyhow!("{ALLOWED_HOSTS_VAR}: {e}"))
    }

    fn dyno(&self, release: &Arc<AllowedHosts>, dyno: &DynoInputs<'_>) -> Arc<OutboundDyno> {
        Arc::new(OutboundDyno {
            allowed: release.clone(),
            in_flight: Arc::new(tokio::sync::Semaphore::new(self.config.per_dyno)),
            config: self.config.clone(),
            log: dyno.log.clone(),
            name: dyno.name.clone(),
            meter: dyno.meter.clone(),
        })
    }

    fn instance(
        &self,
        _release: &Arc<AllowedHosts>,
        dyno: &Arc<OutboundDyno>,
        _inputs: &mut InstanceInputs<'_>,
    ) -> OutboundInstance {
        OutboundInstance {
            http: WasiHttpCtx::new(),
            hooks: OutboundHooks { dyno: dyno.clone() },
        }
    }
}

/// Sends a guest's request if its release allows the destination.
pub(crate) struct OutboundHooks {
    dyno: Arc<OutboundDyno>,
}

type IoFuture = Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>;
type SendFuture = Box<
    dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), wasmtime_wasi_http::Error>>
        + Send,
>;

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: IoFuture,
    ) -> SendFuture {
        let dyno = self.dyno.clone();
        dyno.meter.outbound();
        Box::new(async move { dyno.send(request, options).await })
    }
}

impl OutboundDyno {
    async fn send(
        &self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<(http::Response<WasiBody>, IoFuture), wasmtime_wasi_http::Error> {
        use http_body_util::BodyExt;

        let started = Instant::now();
        let method = request.method().clone();
        let uri = request.uri();
        let host = uri.authority().map(|a| a.to_string()).unwrap_or_default();
        let path = uri.path().to_string();
        // The router's format: `at=error code=... desc="..."` first when
        // the call failed.
        let line = |status: &str, error: Option<(&str, &str)>| {
            let at = match error {
                Some((code, desc)) => format!("at=error code={code} desc=\"{desc}\""),
                None => "at=info".to_string(),
            };
            self.log.emit(
                Source::Renga,
                &Process::from("outbound"),
                format!(
                    "{at} method={method} path=\"{path}\" host={host} dyno={} service={}ms status={status}",
                    self.name,
                    started.elapsed().as_millis(),
                ),
            );
        };
        if !self.allowed.allows(uri) {
            line(
                "denied",
                Some(("denied", &format!("{host} is not in {ALLOWED_HOSTS_VAR}"))),
            );
            return Err(wasmtime_wasi_http::Error::HttpRequestDenied);
        }
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            line(
                "limited",
                Some((
                    "limited",
                    &format!(
                        "{} already has {} outbound requests in flight",
                        self.name, self.config.per_dyno
                    ),
                )),
            );
            return Err(wasmtime_wasi_http::Error::ConnectionLimitReached);
        };
        let capped =
            |asked: Option<Duration>, most: Duration| Some(asked.unwrap_or(most).min(most));
        let options = RequestOptions {
            connect_timeout: capped(
                options.and_then(|o| o.connect_timeout),
                self.config.connect_timeout,
            ),
            first_byte_timeout: capped(
                options.and_then(|o| o.first_byte_timeout),
                self.config.first_byte_timeout,
            ),
            between_bytes_timeout: capped(
                options.and_then(|o| o.between_bytes_timeout),
                self.config.between_bytes_timeout,
            ),
        };
        match wasmtime_wasi_http::default_send_request(request, Some(options)).await {
            Ok((response, io)) => {
                line(response.status().as_str(), None);
                // The request counts against the dyno's limit until its
                // connection is done (the body read, or dropped).
                let io: IoFuture = Box::new(async move {
                    let result = io.await;
                    drop(permit);
                    result
                });
                Ok((response.map(BodyExt::boxed_unsync), io))
            }
            Err(e) => {
                line("error", Some(("failed", &format!("{e}"))));
                Err(e)
            }
        }
    }
}

/// The destinations a release allows, in Spin's syntax.
#[derive(Debug, Default)]
pub struct AllowedHosts {
    rules: Vec<Rule>,
    all: bool,
}

#[derive(Debug)]
struct Rule {
    /// `None`: any scheme.
    scheme: Option<String>,
    host: HostPattern,
    ports: Ports,
}

#[derive(Debug)]
enum HostPattern {
    Any,
    Exact(String),
    /// `*.example.com`: any name under it (not the name itself).
    Under(String),
    Network(IpAddr, u8),
}

#[derive(Debug)]
enum Ports {
    Any,
    Range(u16, u16),
}

impl AllowedHosts {
    /// Parses the list; an entry that does not parse is named in the error.
    pub fn parse(list: &str) -> Result<AllowedHosts, String> {
        let mut allowed = AllowedHosts::default();
        for entry in list
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|e| !e.is_empty())
        {
            if entry == "insecure:allow-all" {
                allowed.all = true;
                continue;
            }
            allowed
                .rules
                .push(Rule::parse(entry).map_err(|why| format!("`{entry}` {why}"))?);
        }
        Ok(allowed)
    }

    pub fn is_empty(&self) -> bool {
        !self.all && self.rules.is_empty()
    }

    /// Whether a request to `uri` may go out.
    pub fn allows(&self, uri: &http::Uri) -> bool {
        if self.all {
            return true;
        }
        let (Some(scheme), Some(host)) = (uri.scheme(), uri.host()) else {
            return false;
        };
        let port = match uri.port_u16() {
            Some(port) => port,
            None if *scheme == Scheme::HTTPS => 443,
            None if *scheme == Scheme::HTTP => 80,
            None => return false,
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        self.rules
            .iter()
            .any(|rule| rule.allows(scheme.as_str(), &host, port))
    }
}

impl Rule {
    fn parse(entry: &str) -> Result<Rule, String> {
        let (scheme, rest) = entry
            .split_once("://")
            .ok_or("needs a scheme: write it as `https://host` or `*://host:port`")?;
        let scheme = match scheme {
            "*" => None,
            s if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '+') => {
                Some(s.to_ascii_lowercase())
            }
            _ => return Err(format!("has a scheme renga does not know: {scheme}")),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') && !looks_like_network(rest) {
            return Err("has a path: only a scheme, a host and a port may be given".into());
        }
        let (host, port) = split_port(rest);
        let ports = match port {
            None => match scheme.as_deref() {
                Some("https") => Ports::Range(443, 443),
                Some("http") => Ports::Range(80, 80),
                _ => return Err("needs a port: only http and https have a default".into()),
            },
            Some("*") => Ports::Any,
            Some(port) => match port.split_once('-') {
                Some((low, high)) => {
                    let (low, high) = (parse_port(low)?, parse_port(high)?);
                    if low > high {
                        return Err(format!("has an empty port range: {port}"));
                    }
                    Ports::Range(low, high)
                }
                None => {
                    let port = parse_port(port)?;
                    Ports::Range(port, port)
                }
            },
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let host = if host == "*" {
            HostPattern::Any
        } else if let Some(under) = host.strip_prefix("*.") {
            check_name(under)?;
            HostPattern::Under(format!(".{}", under.to_ascii_lowercase()))
        } else if let Some((ip, bits)) = host.split_once('/') {
            let ip: IpAddr = ip
                .parse()
                .map_err(|_| format!("has a network that is not an address: {host}"))?;
            let most = if ip.is_ipv4() { 32 } else { 128 };
            let bits: u8 =
                bits.parse().ok().filter(|b| *b <= most).ok_or_else(|| {
                    format!("has a network prefix that is not 0 to {most}: {host}")
                })?;
            HostPattern::Network(ip, bits)
        } else if let Ok(ip) = host.parse::<IpAddr>() {
            HostPattern::Network(ip, if ip.is_ipv4() { 32 } else { 128 })
        } else {
            check_name(host)?;
            HostPattern::Exact(host.to_ascii_lowercase())
        };
        Ok(Rule {
            scheme,
            host,
            ports,
        })
    }

    fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        if self.scheme.as_deref().is_some_and(|s| s != scheme) {
            return false;
        }
        let port_ok = match self.ports {
            Ports::Any => true,
            Ports::Range(low, high) => (low..=high).contains(&port),
        };
        port_ok
            && match &self.host {
                HostPattern::Any => true,
                HostPattern::Exact(name) => name == host,
                HostPattern::Under(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
                HostPattern::Network(net, bits) => host
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| in_network(ip, *net, *bits)),
            }
    }
}

/// `10.0.0.0/8:*` has a slash that is not a path.
fn looks_like_network(rest: &str) -> bool {
    let (host, _) = split_port(rest);
    host.split_once('/')
        .is_some_and(|(ip, bits)| ip.parse::<IpAddr>().is_ok() && bits.parse::<u8>().is_ok())
}

/// `host:port` into its parts; an IPv6 address is written in brackets.
fn split_port(rest: &str) -> (&str, Option<&str>) {
    if rest.starts_with('[') {
        return match rest.find(']') {
            Some(end) => (
                &rest[..=end],
                rest[end + 1..].strip_prefix(':').filter(|p| !p.is_empty()),
            ),
            None => (rest, None),
        };
    }
    match rest.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (rest, None),
    }
}

fn parse_port(port: &str) -> Result<u16, String> {
    port.parse()
        .map_err(|_| format!("has a port that is not a number from 0 to 65535: {port}"))
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
    if ok {
        Ok(())
    } else {
        Err(format!("has a host that is not a name: {name}"))
    }
}

fn in_network(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(list: &str, url: &str) -> bool {
        AllowedHosts::parse(list)
            .unwrap()
            .allows(&url.parse().unwrap())
    }

    #[test]
    fn spin_syntax_allows_what_it_names() {
        assert!(allows(
            "https://api.example.com",
            "https://api.example.com/v1"
        ));
        assert!(allows(
            "https://api.example.com",
            "https://API.example.com:443/"
        ));
        assert!(!allows(
            "https://api.example.com",
            "http://api.example.com/"
        ));
        assert!(!allows(
            "https://api.example.com",
            "https://api.example.com:8443/"
        ));
        assert!(!allows("https://api.example.com", "https://example.com/"));
        assert!(allows(
            "https://*.example.com:443",
            "https://a.b.example.com/"
        ));
        assert!(!allows("https://*.example.com:443", "https://example.com/"));
        assert!(!allows(
            "https://*.example.com:443",
            "https://badexample.com/"
        ));
        assert!(allows("http://127.0.0.1:8080", "http://127.0.0.1:8080/x"));
        assert!(!allows("http://127.0.0.1:8080", "http://127.0.0.1:8081/x"));
        assert!(allows("*://cache:6379", "http://cache:6379/"));
        assert!(allows("http://10.0.0.0/8:*", "http://10.2.3.4:99/"));
        assert!(!allows("http://10.0.0.0/8:*", "http://11.2.3.4:99/"));
        assert!(allows("http://[::1]:8080", "http://[::1]:8080/"));
        assert!(allows(
            "http://localhost:8000-8010",
            "http://localhost:8005/"
        ));
        assert!(allows(
            "https://a.com, http://127.0.0.1:1",
            "http://127.0.0.1:1/"
        ));
        assert!(allows("insecure:allow-all", "http://anything:1/"));
        assert!(!allows("", "http://127.0.0.1/"));
    }

    #[test]
    fn bad_entries_are_named() {
        for (list, why) in [
            ("api.example.com", "needs a scheme"),
            ("https://api.example.com/v1", "has a path"),
            ("*://cache", "needs a port"),
            ("http://host:99999", "not a number"),
            ("http://10.0.0.0/33:*", "prefix"),
            ("http://b@d:1", "not a name"),
        ] {
            let err = AllowedHosts::parse(list).unwrap_err();
            assert!(err.contains(why), "{list}: {err}");
        }
    }
}
