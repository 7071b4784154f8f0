//! The HTTP server of `floodgate run` (`[http] listen`, default
//! `127.0.0.1:9898`, localhost only), on hyper's HTTP/1 server.
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
//! The server reads a [`Status`] (a plain data type below the service), so
//! it knows nothing of Kafka or partitions.
//!
//! **Hardening.** hyper parses HTTP/1.0 and HTTP/1.1; this module adds the
//! limits of a server that serves four read-only resources and nothing else.
//!
//! * read-only: `GET` and `HEAD` only; any other method gets
//!   `405 Method Not Allowed` with `Allow: GET, HEAD`;
//! * bounded requests: the request line and headers together may use at most
//!   [`MAX_HEAD_BYTES`] (8 KiB, counted as `name: value\r\n` per header): a
//!   longer request line gets `414`, longer headers `431`. hyper's read
//!   buffer is capped at [`MAX_READ_BUFFER`]; a head too long even for that,
//!   or with more than 100 headers, gets hyper's `431`. A request that
//!   announces a body (`Content-Length` > 0 or `Transfer-Encoding`) gets
//!   `413`: nothing here takes a body, and none is read;
//! * slow clients: the whole request head must arrive within
//!   [`HEAD_TIMEOUT`] (`408` otherwise, the slow-loris defence), and the
//!   response must be written within [`WRITE_TIMEOUT`] after that;
//! * at most [`MAX_CONNECTIONS`] connections at once; more are closed at once;
//! * one request per connection (`Connection: close`), no keep-alive state;
//! * HTTP/1 only: a request line with another version gets hyper's `400`,
//!   the HTTP/2 connection preface is closed without an answer.
//!
//! **Shutdown** (as mini-redis drains its connections): when the
//! [`Shutdown`] notice fires the listener is closed at once; a connection
//! whose request is being answered finishes its response, one still waiting
//! for a request head is closed (FIN, no answer); the server returns once
//! every connection is closed, or after [`DRAIN_TIMEOUT`] (the rest are then
//! dropped).
//!
//! **Closing.** After its exchange a connection is closed for writing and
//! the client's unread input (an oversized head, a body) is read and
//! discarded for a moment (at most 256 KiB within 500 ms), so that closing
//! does not reset the connection before the client has read the answer.

use std::convert::Infallible;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING, X_CONTENT_TYPE_OPTIONS};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::shutdown::Shutdown;
use crate::status::Status;

/// Longest request line plus headers, in bytes.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// hyper's read buffer per connection: room for a head just over
/// [`MAX_HEAD_BYTES`], so that such a head is answered with our `414`/`431`
/// rather than cut off by the buffer.
pub const MAX_READ_BUFFER: usize = 2 * MAX_HEAD_BYTES;
/// The request head must be complete within this time.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// After the head's deadline, the response must be written within this time.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// At shutdown, how long open connections get to finish.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// A response body: the whole of it, in memory.
pub type Body = Full<Bytes>;

/// A plain-text response.
fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    with_type(status, "text/plain; charset=utf-8", body.into().into_bytes())
}

/// A response with `content_type` and the headers every response carries.
fn with_type(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    r
}

/// Serves until `shutdown` fires, then drains open connections (see the
/// module docs).
pub async fn serve(listener: TcpListener, status: Status, mut shutdown: Shutdown) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    // The connections' own stop notice: a watch keeps its value, so a
    // connection started just before shutdown cannot miss it.
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.recv() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
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
        let stop = stop_rx.clone();
        connections.spawn(async move {
            connection(stream, status, stop).await;
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let open = connections.len();
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async { while connections.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::debug!(open, left = connections.len(), "http: connections still open after the drain timeout; dropping them");
        connections.abort_all();
    }
}

/// How a connection's exchange ended.
enum Ended {
    /// hyper finished: the response is written, or the client closed, or
    /// hyper answered a malformed head itself.
    Served,
    /// No complete request head within [`HEAD_TIMEOUT`].
    HeadTimeout,
    /// Shutdown while no request had arrived.
    Shutdown,
    /// The response could not be written in time.
    WriteTimeout,
}

/// Serves one connection: one request at most, then a graceful close.
async fn connection(stream: TcpStream, status: Status, mut stop: watch::Receiver<bool>) {
    // Set by the service when hyper hands it a complete request head.
    let head_received = Arc::new(AtomicBool::new(false));
    let service = {
        let head_received = head_received.clone();
        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
            head_received.store(true, Ordering::SeqCst);
            std::future::ready(Ok::<_, Infallible>(respond(&req, &status)))
        })
    };
    let mut conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(false)
        .max_buf_size(MAX_READ_BUFFER)
        // Our own head timeout answers 408; hyper's would close silently.
        .header_read_timeout(None)
        .serve_connection(TokioIo::new(stream), service);
    let deadline = tokio::time::sleep(HEAD_TIMEOUT);
    tokio::pin!(deadline);
    let mut head_deadline_passed = false;
    let mut stopping = *stop.borrow();
    let ended = loop {
        if stopping && !head_received.load(Ordering::SeqCst) {
            break Ended::Shutdown;
        }
        tokio::select! {
            r = poll_fn(|cx| conn.poll_without_shutdown(cx)) => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "http connection");
                }
                break Ended::Served;
            }
            _ = &mut deadline => {
                if !head_received.load(Ordering::SeqCst) {
                    break Ended::HeadTimeout;
                }
                if head_deadline_passed {
                    break Ended::WriteTimeout;
                }
                head_deadline_passed = true;
                deadline.as_mut().reset(tokio::time::Instant::now() + WRITE_TIMEOUT);
            }
            changed = stop.changed(), if !stopping => {
                // A closed channel (the server is gone) means stop as well.
                stopping = changed.is_err() || *stop.borrow();
                if stopping {
                    // Finish the request being answered, take no other.
                    std::pin::Pin::new(&mut conn).graceful_shutdown();
                }
            }
        }
    };
    if matches!(ended, Ended::WriteTimeout) {
        return;
    }
    let mut stream = conn.into_parts().io.into_inner();
    if matches!(ended, Ended::HeadTimeout) {
        let body = "request head not received in time\n";
        let answer = format!(
            "HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        if tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(answer.as_bytes())).await.is_err() {
            return;
        }
    }
    close(stream).await;
}

/// Closes for writing, then reads and discards what the client still sends
/// (at most 256 KiB within 500 ms) before the socket is dropped.
async fn close(mut stream: TcpStream) {
    if tokio::time::timeout(WRITE_TIMEOUT, stream.shutdown()).await.is_err() {
        return;
    }
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

/// The request line's length as sent (`METHOD target HTTP/1.x\r\n`).
fn request_line_bytes<B>(req: &Request<B>) -> usize {
    let uri = req.uri();
    let target = uri.scheme_str().map_or(0, |s| s.len() + 3)
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path_and_query().map_or(0, |p| p.as_str().len());
    req.method().as_str().len() + 1 + target + 1 + "HTTP/1.1\r\n".len()
}

/// The head's length as sent: request line, `name: value\r\n` per header,
/// and the blank line.
fn head_bytes<B>(req: &Request<B>) -> usize {
    let headers: usize = req.headers().iter().map(|(name, value)| name.as_str().len() + 2 + value.len() + 2).sum();
    request_line_bytes(req) + headers + 2
}

/// The response to a request (of which only the head is looked at).
pub fn respond<B>(req: &Request<B>, status: &Status) -> Response<Body> {
    if request_line_bytes(req) > MAX_HEAD_BYTES {
        return text(StatusCode::URI_TOO_LONG, format!("request line longer than {MAX_HEAD_BYTES} bytes\n"));
    }
    if head_bytes(req) > MAX_HEAD_BYTES {
        return text(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, format!("request head longer than {MAX_HEAD_BYTES} bytes\n"));
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "read-only: GET and HEAD only\n");
        r.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let announces_body = req.headers().contains_key(TRANSFER_ENCODING)
        || req
            .headers()
            .get_all(CONTENT_LENGTH)
            .iter()
            .any(|v| v.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()).is_none_or(|n| n > 0));
    if announces_body {
        return text(StatusCode::PAYLOAD_TOO_LARGE, "requests take no body\n");
    }
    route(req.uri().path(), status)
}

/// The response for a resource.
fn route(path: &str, s: &Status) -> Response<Body> {
    match path {
        "/metrics" => with_type(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", s.metrics.render().into_bytes()),
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => match s.readiness() {
            Ok(()) => text(StatusCode::OK, "ready\n"),
            Err(reason) => text(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {reason}\n")),
        },
        "/api/campaigns" => match serde_json::to_vec(&s.api_view()) {
            Ok(body) => with_type(StatusCode::OK, "application/json", body),
            Err(_) => text(StatusCode::SERVICE_UNAVAILABLE, "could not serialise the view\n"),
        },
        _ => text(StatusCode::NOT_FOUND, "not found: /metrics /healthz /readyz /api/campaigns\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> Status {
        Status::new(crate::sink::metrics::Metrics::new(), "starting")
    }

    fn request(method: Method, uri: &str, headers: &[(&'static str, &str)]) -> Request<()> {
        let mut req = Request::new(());
        *req.method_mut() = method;
        *req.uri_mut() = uri.parse().unwrap_or_default();
        for (k, v) in headers {
            if let Ok(v) = HeaderValue::from_str(v) {
                req.headers_mut().append(*k, v);
            }
        }
        req
    }

    #[test]
    fn counts_the_head_as_sent() {
        let req = request(Method::GET, "/metrics?x=1", &[("host", "x")]);
        // "GET /metrics?x=1 HTTP/1.1\r\n" + "host: x\r\n" + "\r\n"
        assert_eq!(request_line_bytes(&req), 27);
        assert_eq!(head_bytes(&req), 27 + 9 + 2);
    }

    #[test]
    fn checks_size_then_method_then_body_then_route() {
        let s = status();
        let long = format!("/metrics?{}", "a".repeat(MAX_HEAD_BYTES));
        assert_eq!(respond(&request(Method::POST, &long, &[]), &s).status(), StatusCode::URI_TOO_LONG);
        let pad = "b".repeat(MAX_HEAD_BYTES);
        assert_eq!(respond(&request(Method::POST, "/", &[("x-pad", &pad)]), &s).status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        let r = respond(&request(Method::POST, "/metrics", &[("content-length", "2")]), &s);
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers().get(ALLOW).map(HeaderValue::as_bytes), Some(&b"GET, HEAD"[..]));
        assert_eq!(respond(&request(Method::GET, "/metrics", &[("content-length", "5")]), &s).status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(respond(&request(Method::GET, "/metrics", &[("content-length", "x")]), &s).status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(respond(&request(Method::GET, "/healthz", &[("content-length", "0")]), &s).status(), StatusCode::OK);
        assert_eq!(respond(&request(Method::GET, "/readyz", &[]), &s).status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(respond(&request(Method::HEAD, "/nope", &[]), &s).status(), StatusCode::NOT_FOUND);
    }
}
