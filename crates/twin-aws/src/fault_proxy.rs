//! Test tooling: a local HTTP proxy in front of an AWS emulator that counts API calls and injects
//! faults (throttling, eventual-consistency errors, fatal errors) into chosen operations. It works
//! for in-process clients and for the `deployer` binary alike: point `AWS_ENDPOINT_URL` at it.
//!
//! Each request is forwarded on its own upstream connection with `Connection: close`, so every
//! request's head passes through here and is counted.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy saw of one request.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// The operation, as well as it can be told: `X-Amz-Target`'s operation, a query
    /// protocol's `Action`, or `METHOD /first-path-segment`.
    pub operation: String,
}

impl RequestInfo {
    /// Whether the call changes something (not a Get/List/Describe/Head/read-only call).
    pub fn is_mutating(&self) -> bool {
        let op = self.operation.rsplit('.').next().unwrap_or(&self.operation);
        if self.operation.contains(' ') {
            // IoT's ListAttachedPolicies is a POST.
            if self.operation == "POST /attached-policies" {
                return false;
            }
            return !matches!(self.method.as_str(), "GET" | "HEAD");
        }
        !["Get", "List", "Describe", "Head", "Query", "Scan", "Batch"]
            .iter()
            .any(|p| op.starts_with(p))
    }
}

/// A fault to inject: the first `times` requests matching `matches` get this response.
pub struct Fault {
    /// Which requests.
    pub matches: Box<dyn Fn(&RequestInfo) -> bool + Send + Sync>,
    /// How many of them (then requests pass through).
    pub times: usize,
    /// HTTP status to answer.
    pub status: u16,
    /// Error code (sent in `x-amzn-ErrorType` and in the body for JSON and XML protocols).
    pub code: String,
    /// Error message.
    pub message: String,
}

impl Fault {
    /// A fault on requests whose method is `method` and whose path contains `path_part`.
    pub fn on_path(
        method: &str,
        path_part: &str,
        times: usize,
        status: u16,
        code: &str,
        message: &str,
    ) -> Fault {
        let (m, p) = (method.to_string(), path_part.to_string());
        Fault {
            matches: Box::new(move |r| r.method == m && r.path.contains(&p)),
            times,
            status,
            code: code.to_string(),
            message: message.to_string(),
        }
    }

    /// A fault on requests whose operation (target, action) ends with `op`.
    pub fn on_operation(op: &str, times: usize, status: u16, code: &str, message: &str) -> Fault {
        let o = op.to_string();
        Fault {
            matches: Box::new(move |r| r.operation.ends_with(&o)),
            times,
            status,
            code: code.to_string(),
            message: message.to_string(),
        }
    }
}

/// Counters of what passed through.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Requests per operation.
    pub calls: BTreeMap<String, usize>,
    /// Total requests.
    pub total: usize,
    /// Requests that change something.
    pub mutating: usize,
    /// Faults injected.
    pub injected: usize,
    /// Requests the cloud applied whose answer was dropped.
    pub dropped_after: usize,
}

/// Random faults on a share of all requests, as an unreliable network and cloud give them.
#[derive(Debug, Clone, Copy)]
pub struct Chaos {
    /// Share of requests that fail (0.0–1.0).
    pub rate: f64,
    /// Seed of the deterministic pseudo-random sequence (a failing run can be replayed).
    pub seed: u64,
}

/// What chaos did to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChaosKind {
    /// 503 ServiceUnavailable, the request not forwarded.
    Unavailable,
    /// A throttling error, the request not forwarded.
    Throttled,
    /// The connection closed before the request was forwarded.
    DroppedBefore,
    /// Forwarded and applied by the cloud, then the connection closed without the answer.
    DroppedAfter,
}

struct ChaosState {
    chaos: Chaos,
    rng: u64,
}

impl ChaosState {
    /// xorshift64*: small, deterministic, good enough to pick faults.
    fn next(&mut self) -> f64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn pick(&mut self) -> Option<ChaosKind> {
        if self.next() >= self.chaos.rate {
            return None;
        }
        Some(match (self.next() * 4.0) as u32 {
            0 => ChaosKind::Unavailable,
            1 => ChaosKind::Throttled,
            2 => ChaosKind::DroppedBefore,
            _ => ChaosKind::DroppedAfter,
        })
    }
}

struct Shared {
    upstream: SocketAddr,
    faults: Mutex<Vec<Fault>>,
    chaos: Mutex<Option<ChaosState>>,
    stats: Mutex<Stats>,
}

/// A running proxy.
#[derive(Clone)]
pub struct FaultProxy {
    /// Where it listens, e.g. `http://127.0.0.1:40000`.
    pub endpoint: String,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port forwarding to `upstream` (host:port) on the
    /// current tokio runtime.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        Self::serve(listener, upstream)
    }

    /// Serves on an already bound listener.
    pub fn serve(listener: TcpListener, upstream: SocketAddr) -> std::io::Result<FaultProxy> {
        let endpoint = format!("http://{}", listener.local_addr()?);
        let shared = Arc::new(Shared {
            upstream,
            faults: Mutex::new(Vec::new()),
            chaos: Mutex::new(None),
            stats: Mutex::new(Stats::default()),
        });
        let s = shared.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    let _ = handle(conn, s).await;
                });
            }
        });
        Ok(FaultProxy { endpoint, shared })
    }

    /// Adds a fault.
    pub fn inject(&self, fault: Fault) {
        lock(&self.shared.faults).push(fault);
    }

    /// Fails a random share of every request from now on (or none with `None`).
    pub fn set_chaos(&self, chaos: Option<Chaos>) {
        *lock(&self.shared.chaos) = chaos.map(|c| ChaosState {
            chaos: c,
            rng: c.seed.max(1),
        });
    }

    /// A copy of the counters.
    pub fn stats(&self) -> Stats {
        lock(&self.shared.stats).clone()
    }

    /// Resets the counters.
    pub fn reset_stats(&self) {
        *lock(&self.shared.stats) = Stats::default();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn path_is(head: &str, prefix: &str) -> bool {
    head.split(' ')
        .nth(1)
        .is_some_and(|p| p.starts_with(prefix))
}

/// `GET /__proxy/stats` answers the counters as JSON; `POST /__proxy/reset` clears them.
async fn control(mut client: TcpStream, shared: &Shared, head: &str) -> std::io::Result<()> {
    let body = if path_is(head, "/__proxy/reset") {
        *lock(&shared.stats) = Stats::default();
        "{}".to_string()
    } else {
        let st = lock(&shared.stats).clone();
        serde_json::json!({
            "total": st.total, "mutating": st.mutating, "injected": st.injected, "calls": st.calls,
        })
        .to_string()
    };
    let resp = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    client.write_all(resp.as_bytes()).await?;
    client.shutdown().await
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn operation(method: &str, path: &str, head: &str, body: &[u8]) -> String {
    if let Some(t) = header(head, "x-amz-target") {
        return t.to_string();
    }
    let text = String::from_utf8_lossy(body);
    let query = path.split_once('?').map(|(_, q)| q).unwrap_or("");
    for part in text.split('&').chain(query.split('&')) {
        if let Some(a) = part.strip_prefix("Action=") {
            return a.to_string();
        }
    }
    let first = path
        .trim_start_matches('/')
        .split(['/', '?'])
        .next()
        .unwrap_or("");
    format!("{method} /{first}")
}

async fn handle(mut client: TcpStream, shared: Arc<Shared>) -> std::io::Result<()> {
    // Read the head.
    let mut buf = Vec::with_capacity(8192);
    let head_end = loop {
        let mut chunk = [0u8; 8192];
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut first = head.lines().next().unwrap_or("").split(' ');
    let method = first.next().unwrap_or("").to_string();
    let path = first.next().unwrap_or("").to_string();
    let length: usize = header(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // Small bodies are read whole (query protocols name the operation in them).
    while buf.len() < head_end + length.min(1 << 20) {
        let mut chunk = [0u8; 65536];
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    if path_is(&head, "/__proxy/") {
        return control(client, &shared, &head).await;
    }
    let info = RequestInfo {
        operation: operation(&method, &path, &head, &buf[head_end..]),
        method,
        path,
    };
    let mut fault = {
        let mut faults = lock(&shared.faults);
        faults
            .iter_mut()
            .find(|f| f.times > 0 && (f.matches)(&info))
            .map(|f| {
                f.times -= 1;
                (f.status, f.code.clone(), f.message.clone())
            })
    };
    let chaos = if fault.is_none() {
        lock(&shared.chaos).as_mut().and_then(ChaosState::pick)
    } else {
        None
    };
    match chaos {
        Some(ChaosKind::Unavailable) => {
            fault = Some((
                503,
                "ServiceUnavailable".into(),
                "injected: unavailable".into(),
            ))
        }
        Some(ChaosKind::Throttled) => {
            // S3's throttling answer (503 SlowDown), which JSON protocols read by its code too.
            fault = Some((
                503,
                "SlowDown".into(),
                "injected: please reduce your request rate".into(),
            ))
        }
        _ => {}
    }
    if let Some(kind) = chaos {
        lock(&shared.stats).injected += 1;
        if std::env::var_os("FAULT_PROXY_LOG").is_some() {
            eprintln!("fault-proxy: {kind:?} {} {}", info.method, info.path);
        }
    }
    if chaos == Some(ChaosKind::DroppedBefore) {
        lock(&shared.stats).total += 1;
        // Closing without a word: the client sees the connection reset.
        return Ok(());
    }
    {
        let mut st = lock(&shared.stats);
        st.total += 1;
        if info.is_mutating() {
            st.mutating += 1;
        }
        *st.calls.entry(info.operation.clone()).or_default() += 1;
        if fault.is_some() && chaos.is_none() {
            st.injected += 1;
        }
    }
    if let Some((status, code, message)) = fault {
        // Drain the rest of the body so the client is not cut off mid-send.
        let mut remaining = (head_end + length).saturating_sub(buf.len());
        while remaining > 0 {
            let mut chunk = [0u8; 65536];
            let n = client.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            remaining = remaining.saturating_sub(n);
        }
        // Query protocols (IAM, STS) answer in XML; the JSON and REST-JSON ones in JSON.
        let xml =
            header(&head, "content-type").is_some_and(|c| c.contains("x-www-form-urlencoded"));
        let body = if info.method == "HEAD" {
            // A HEAD answer has no body (S3 reads the error from the status alone).
            String::new()
        } else if xml {
            format!(
                "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>fault</RequestId></ErrorResponse>"
            )
        } else {
            serde_json::json!({"__type": code, "message": message, "Message": message}).to_string()
        };
        let resp = format!(
            "HTTP/1.1 {status} Injected\r\nx-amzn-ErrorType: {code}\r\nx-amzn-RequestId: fault\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            if xml { "text/xml" } else { "application/json" },
            body.len()
        );
        client.write_all(resp.as_bytes()).await?;
        client.shutdown().await?;
        return Ok(());
    }
    // Forward with `Connection: close` so the next request comes through here again.
    let mut new_head = String::new();
    for (i, line) in head.trim_end_matches("\r\n\r\n").split("\r\n").enumerate() {
        if i > 0 && line.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        new_head.push_str(line);
        new_head.push_str("\r\n");
    }
    new_head.push_str("Connection: close\r\n\r\n");
    let mut upstream = TcpStream::connect(shared.upstream).await?;
    upstream.write_all(new_head.as_bytes()).await?;
    upstream.write_all(&buf[head_end..]).await?;
    let (mut cr, mut cw) = client.split();
    let (mut ur, mut uw) = upstream.split();
    let to_upstream = async {
        let mut remaining = (head_end + length).saturating_sub(buf.len());
        let mut chunk = vec![0u8; 65536];
        while remaining > 0 {
            let n = cr.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            uw.write_all(&chunk[..n]).await?;
            remaining = remaining.saturating_sub(n);
        }
        Ok::<_, std::io::Error>(())
    };
    let drop_answer = chaos == Some(ChaosKind::DroppedAfter);
    let to_client = async {
        if drop_answer {
            // Let the cloud finish the call, then drop its answer.
            tokio::io::copy(&mut ur, &mut tokio::io::sink()).await?;
            return Ok(());
        }
        tokio::io::copy(&mut ur, &mut cw).await?;
        cw.shutdown().await
    };
    let (a, b) = tokio::join!(to_upstream, to_client);
    if drop_answer {
        lock(&shared.stats).dropped_after += 1;
    }
    a?;
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_operations_and_mutations() {
        let op = operation(
            "POST",
            "/",
            "X-Amz-Target: DynamoDB_20120810.CreateTable\r\n",
            b"",
        );
        assert_eq!(op, "DynamoDB_20120810.CreateTable");
        let r = RequestInfo {
            method: "POST".into(),
            path: "/".into(),
            operation: op,
        };
        assert!(r.is_mutating());
        let op = operation("POST", "/", "", b"Action=GetRole&RoleName=x");
        assert_eq!(op, "GetRole");
        let r = RequestInfo {
            method: "POST".into(),
            path: "/".into(),
            operation: op,
        };
        assert!(!r.is_mutating());
        let r = RequestInfo {
            method: "GET".into(),
            path: "/2015-03-31/functions/x".into(),
            operation: operation("GET", "/2015-03-31/functions/x", "", b""),
        };
        assert_eq!(r.operation, "GET /2015-03-31");
        assert!(!r.is_mutating());
    }
}
