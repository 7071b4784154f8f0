//! The HTTP server of `floodgate run` (`[http] listen`, default
//! `127.0.0.1:9898`, localhost only).
//!
//! * `/metrics` — Prometheus text format.
//! * `/healthz` — 200 while the process runs.
//! * `/readyz` — 200 once partitions are assigned, rebuilt and caught up
//!   (lag ≤ `kafka.ready_max_lag`) and signals are being delivered; 503 with
//!   the reason otherwise.
//! * `/api/campaigns` — JSON: top campaigns (state, R, P(viral), forecast),
//!   targets (forecast summed over this instance's partitions, replicas) and
//!   partitions (rebuilt, position, lag, watermark).
//!
//! **Hardening.** The server is a deliberately small HTTP/1.x responder, not
//! a general web server: it serves four read-only resources and nothing else.
//!
//! * read-only: `GET` and `HEAD` only; any other method gets
//!   `405 Method Not Allowed` with `Allow: GET, HEAD`;
//! * bounded requests: the request line and headers together may use at most
//!   [`MAX_HEAD_BYTES`] (8 KiB): a longer request line gets `414`, longer
//!   headers `431`; a request that announces a body (`Content-Length` > 0 or
//!   `Transfer-Encoding`) gets `413` — nothing here takes a body;
//! * slow clients: the whole request head must arrive within
//!   [`HEAD_TIMEOUT`] (`408` otherwise, the slow-loris defence), and a
//!   response must be written within [`WRITE_TIMEOUT`];
//! * at most [`MAX_CONNECTIONS`] connections at once; more are closed at once;
//! * one request per connection (`Connection: close`), no keep-alive state.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::service::Status;
use crate::shutdown::Shutdown;

/// Longest request line plus headers, in bytes.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// The request head must be complete within this time.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// A response must be written within this time.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 64;

/// A response: status, content type, body, extra headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Body.
    pub body: Vec<u8>,
    /// Extra headers.
    pub headers: Vec<(&'static str, &'static str)>,
}

impl Response {
    fn text(status: u16, body: impl Into<String>) -> Response {
        Response { status, content_type: "text/plain; charset=utf-8", body: body.into().into_bytes(), headers: Vec::new() }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// Serves until `shutdown` fires.
pub async fn serve(listener: TcpListener, status: Status, mut shutdown: Shutdown) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.recv() => return,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of file descriptors and the like: back off a little.
                tracing::debug!(error = %e, "http accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::debug!("http: too many connections; closing a new one");
            drop(stream);
            continue;
        };
        let status = status.clone();
        tokio::spawn(async move {
            connection(stream, &status).await;
            drop(permit);
        });
    }
}

/// What reading a request head gave.
enum Head {
    Complete(Vec<u8>),
    /// The peer closed before a complete head.
    Closed,
    /// No line break within the limit.
    LineTooLong,
    /// Line break, but no end of headers within the limit.
    HeadersTooLarge,
}

async fn read_head(stream: &mut TcpStream) -> std::io::Result<Head> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(Head::Closed);
        }
        let scan_from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = find_head_end(&buf[scan_from..]) {
            let end = scan_from + end;
            if end > MAX_HEAD_BYTES {
                return Ok(too_large(&buf));
            }
            buf.truncate(end);
            return Ok(Head::Complete(buf));
        }
        if buf.len() > MAX_HEAD_BYTES {
            return Ok(too_large(&buf));
        }
    }
}

fn too_large(buf: &[u8]) -> Head {
    if buf[..buf.len().min(MAX_HEAD_BYTES)].contains(&b'\n') {
        Head::HeadersTooLarge
    } else {
        Head::LineTooLong
    }
}

/// The index just past the blank line ending a request head (`\r\n\r\n` or `\n\n`).
fn find_head_end(b: &[u8]) -> Option<usize> {
    for i in 0..b.len() {
        if b[i] == b'\n' {
            if b.get(i + 1) == Some(&b'\n') {
                return Some(i + 2);
            }
            if b.get(i + 1) == Some(&b'\r') && b.get(i + 2) == Some(&b'\n') {
                return Some(i + 3);
            }
        }
    }
    None
}

async fn connection(mut stream: TcpStream, status: &Status) {
    let head = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream)).await {
        Err(_) => Err(Response::text(408, "request head not received in time\n")),
        Ok(Err(_)) | Ok(Ok(Head::Closed)) => return,
        Ok(Ok(Head::LineTooLong)) => Err(Response::text(414, format!("request line longer than {MAX_HEAD_BYTES} bytes\n"))),
        Ok(Ok(Head::HeadersTooLarge)) => Err(Response::text(431, format!("request head longer than {MAX_HEAD_BYTES} bytes\n"))),
        Ok(Ok(Head::Complete(h))) => Ok(h),
    };
    let (response, head_only, clean) = match head {
        Err(r) => (r, false, false),
        Ok(h) => {
            let (r, is_head) = respond(&h, status);
            let clean = r.status < 400;
            (r, is_head, clean)
        }
    };
    let write = async {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n",
            response.status,
            reason(response.status),
            response.content_type,
            response.body.len()
        );
        for (k, v) in &response.headers {
            out.push_str(k);
            out.push_str(": ");
            out.push_str(v);
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
        stream.write_all(out.as_bytes()).await?;
        if !head_only {
            stream.write_all(&response.body).await?;
        }
        stream.flush().await?;
        stream.shutdown().await
    };
    if tokio::time::timeout(WRITE_TIMEOUT, write).await.is_err() {
        return;
    }
    if !clean {
        // The client may still be sending (an oversized head or a body):
        // read a little of it so that closing does not reset the connection
        // before the client has read the error response.
        let mut sink = [0u8; 4096];
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            let mut left = 256 * 1024usize;
            while left > 0 {
                match stream.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => left = left.saturating_sub(n),
                }
            }
        })
        .await;
    }
}

/// The response to a complete request head, and whether it is a `HEAD` request.
pub fn respond(head: &[u8], status: &Status) -> (Response, bool) {
    let Ok(text) = std::str::from_utf8(head) else {
        return (Response::text(400, "request head is not UTF-8\n"), false);
    };
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return (Response::text(400, "malformed request line\n"), false);
    };
    if !version.starts_with("HTTP/") {
        return (Response::text(400, "malformed request line\n"), false);
    }
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return (Response::text(505, "HTTP/1.0 and HTTP/1.1 only\n"), false);
    }
    if method != "GET" && method != "HEAD" {
        let mut r = Response::text(405, "read-only: GET and HEAD only\n");
        r.headers.push(("Allow", "GET, HEAD"));
        return (r, false);
    }
    let is_head = method == "HEAD";
    for line in lines {
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            return (Response::text(400, "malformed header line\n"), is_head);
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("transfer-encoding")
            || (name.eq_ignore_ascii_case("content-length") && value.parse::<u64>().map_or(true, |n| n > 0))
        {
            return (Response::text(413, "requests take no body\n"), is_head);
        }
    }
    let path = target.split(['?', '#']).next().unwrap_or("");
    (route(path, status), is_head)
}

fn route(path: &str, s: &Status) -> Response {
    match path {
        "/metrics" => Response {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: s.metrics.render().into_bytes(),
            headers: Vec::new(),
        },
        "/healthz" => Response::text(200, "ok\n"),
        "/readyz" => {
            if s.ready.load(Ordering::SeqCst) {
                Response::text(200, "ready\n")
            } else {
                let reason = s.not_ready_reason.lock().map(|r| r.clone()).unwrap_or_default();
                Response::text(503, format!("not ready: {reason}\n"))
            }
        }
        "/api/campaigns" => {
            let view = s.api.lock().map(|v| v.clone()).unwrap_or_default();
            match serde_json::to_vec(&view) {
                Ok(body) => Response { status: 200, content_type: "application/json", body, headers: Vec::new() },
                Err(_) => Response::text(503, "could not serialise the view\n"),
            }
        }
        _ => Response::text(404, "not found: /metrics /healthz /readyz /api/campaigns\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_end_of_a_head() {
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nrest"), Some(27));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\n\n"), Some(16));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
    }
}
