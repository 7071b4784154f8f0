//! The HTTP server's hardening (src/http.rs, hyper), against the real server
//! on a real socket (in-process; no broker needed): read-only, bounded
//! request heads, no bodies, slow-loris timeout, connection cap, localhost
//! by default, open connections drained at shutdown.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use floodgate::status::Status;

struct Server {
    port: u16,
    stop: tokio::sync::broadcast::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn server() -> Server {
    let status = Status::new(floodgate::sink::metrics::Metrics::new(), "starting");
    let (stop, rx) = tokio::sync::broadcast::channel(1);
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = std_listener.local_addr().unwrap().port();
    std_listener.set_nonblocking(true).unwrap();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            floodgate::http::serve(listener, status, floodgate::shutdown::Shutdown::new(rx)).await;
        });
    });
    Server { port, stop, thread: Some(thread) }
}

/// Sends `request` (raw bytes) and returns the whole response text.
fn raw(port: u16, request: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let _ = s.write_all(request);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

fn status_of(response: &str) -> u16 {
    response.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("no status line in {response:?}"))
}

fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    let head = response.split("\r\n\r\n").next()?;
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[test]
fn http_serves_the_four_resources_to_get_and_head() {
    let srv = server();
    let r = raw(srv.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status_of(&r), 200, "{r}");
    assert!(r.ends_with("\r\n\r\nok\n"), "{r}");
    assert_eq!(header(&r, "connection"), Some("close"));
    let r = raw(srv.port, b"GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n");
    assert_eq!(status_of(&r), 200, "{r}");
    assert!(header(&r, "content-type").unwrap().starts_with("text/plain; version=0.0.4"), "{r}");
    assert!(r.contains("floodgate_events_total"), "{r}");
    let r = raw(srv.port, b"GET /readyz HTTP/1.0\r\n\r\n");
    assert_eq!(status_of(&r), 503, "{r}");
    assert!(r.contains("not ready: starting"), "{r}");
    let r = raw(srv.port, b"GET /api/campaigns HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status_of(&r), 200, "{r}");
    let body = r.split_once("\r\n\r\n").unwrap().1;
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["ready"], false);
    // HEAD: same headers, no body.
    let r = raw(srv.port, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status_of(&r), 200, "{r}");
    assert!(header(&r, "content-length").unwrap().parse::<usize>().unwrap() > 0);
    assert!(r.ends_with("\r\n\r\n"), "HEAD has no body: {r}");
    let r = raw(srv.port, b"GET /nope HTTP/1.1\r\n\r\n");
    assert_eq!(status_of(&r), 404, "{r}");
}

#[test]
fn http_is_read_only() {
    let srv = server();
    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"] {
        let r = raw(srv.port, format!("{method} /metrics HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        assert_eq!(status_of(&r), 405, "{method}: {r}");
        assert_eq!(header(&r, "allow"), Some("GET, HEAD"), "{method}: {r}");
    }
    // Also on unknown paths, and with a body announced.
    let r = raw(srv.port, b"POST /api/campaigns HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}");
    assert_eq!(status_of(&r), 405, "{r}");
}

#[test]
fn http_rejects_oversized_requests_and_bodies() {
    let srv = server();
    // Request line beyond 8 KiB: 414.
    let long_path = format!("GET /metrics?{} HTTP/1.1\r\n\r\n", "a".repeat(9000));
    let r = raw(srv.port, long_path.as_bytes());
    assert_eq!(status_of(&r), 414, "{r}");
    // Headers beyond 8 KiB: 431.
    let big_header = format!("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n", "b".repeat(9000));
    let r = raw(srv.port, big_header.as_bytes());
    assert_eq!(status_of(&r), 431, "{r}");
    // Many small headers adding up beyond 8 KiB: 431 too.
    let mut many = String::from("GET /metrics HTTP/1.1\r\n");
    for i in 0..400 {
        many.push_str(&format!("X-H{i}: {}\r\n", "c".repeat(20)));
    }
    many.push_str("\r\n");
    let r = raw(srv.port, many.as_bytes());
    assert_eq!(status_of(&r), 431, "{r}");
    // Just under the limit is fine.
    let fits = format!("GET /healthz HTTP/1.1\r\nX-Pad: {}\r\n\r\n", "d".repeat(8000));
    let r = raw(srv.port, fits.as_bytes());
    assert_eq!(status_of(&r), 200, "{r}");
    // A body (announced either way) on a GET: 413.
    let r = raw(srv.port, b"GET /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(status_of(&r), 413, "{r}");
    let r = raw(srv.port, b"GET /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
    assert_eq!(status_of(&r), 413, "{r}");
    // A large body after the head: answered with 413, not read into memory.
    let mut huge = b"GET /metrics HTTP/1.1\r\nContent-Length: 10000000\r\n\r\n".to_vec();
    huge.extend(std::iter::repeat_n(b'x', 1_000_000));
    let r = raw(srv.port, &huge);
    assert_eq!(status_of(&r), 413, "{r}");
    // A head too long even for the read buffer (hyper answers itself).
    let r = raw(srv.port, format!("GET /metrics?{} HTTP/1.1\r\n\r\n", "e".repeat(40_000)).as_bytes());
    assert_eq!(status_of(&r), 431, "{r}");
    // Garbage and other protocols: HTTP/1 only. (The hand-written server
    // answered 505 to other versions; hyper answers 400, and closes the
    // HTTP/2 preface without an answer.)
    assert_eq!(status_of(&raw(srv.port, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n")), 400);
    assert_eq!(raw(srv.port, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), "", "the HTTP/2 preface is not answered");
    assert_eq!(status_of(&raw(srv.port, b"GET /metrics HTTP/2.0\r\n\r\n")), 400);
}

#[test]
fn http_times_out_slow_clients() {
    let srv = server();
    // A silent connection (opened now, checked below: both time out together).
    let mut silent = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
    silent.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let silent_t0 = Instant::now();
    // Slow loris: a byte every 250 ms, never finishing the head.
    let s = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut writer = s.try_clone().unwrap();
    let t0 = Instant::now();
    let trickle = std::thread::spawn(move || {
        if writer.write_all(b"GET /metrics HTTP/1.1\r\n").is_err() {
            return;
        }
        for _ in 0..60 {
            std::thread::sleep(Duration::from_millis(250));
            if writer.write_all(b"X").is_err() {
                return;
            }
        }
    });
    let mut buf = Vec::new();
    let mut reader = s;
    let _ = reader.read_to_end(&mut buf);
    let elapsed = t0.elapsed();
    drop(reader);
    let _ = trickle.join();
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 408"), "slow head answered with 408: {text:?}");
    let limit = floodgate::http::HEAD_TIMEOUT;
    assert!(elapsed >= limit - Duration::from_millis(500) && elapsed < limit + Duration::from_secs(3), "answered after {elapsed:?}");
    // The silent connection is closed too, and the server still answers others.
    let mut buf = Vec::new();
    let _ = silent.read_to_end(&mut buf);
    assert!(silent_t0.elapsed() < limit + Duration::from_secs(3));
    assert!(String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 408"));
    assert_eq!(status_of(&raw(srv.port, b"GET /healthz HTTP/1.1\r\n\r\n")), 200);
}

#[test]
fn http_connections_beyond_the_limit_are_closed_not_queued() {
    let srv = server();
    // Hold every slot with idle connections; one more is closed at once,
    // and once they time out the server answers again.
    let held: Vec<TcpStream> =
        (0..floodgate::http::MAX_CONNECTIONS).map(|_| TcpStream::connect(("127.0.0.1", srv.port)).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut extra = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
    extra.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let _ = extra.write_all(b"GET /healthz HTTP/1.1\r\n\r\n");
    let mut buf = Vec::new();
    let t0 = Instant::now();
    let r = extra.read_to_end(&mut buf);
    assert!(t0.elapsed() < Duration::from_secs(2), "an extra connection is closed at once, not queued ({r:?})");
    assert!(buf.is_empty(), "{}", String::from_utf8_lossy(&buf));
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(status_of(&raw(srv.port, b"GET /healthz HTTP/1.1\r\n\r\n")), 200);
}

#[test]
fn http_shutdown_closes_waiting_connections_cleanly_and_returns() {
    let mut srv = server();
    // One connection idle, one half-way through its head: both are waiting
    // for a request when the shutdown notice comes.
    let mut idle = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
    let mut partial = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
    partial.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").unwrap();
    // A complete request sent before the notice keeps its whole answer.
    let mut complete = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
    complete.write_all(b"GET /healthz HTTP/1.1\r\n\r\n").unwrap();
    for s in [&idle, &partial, &complete] {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    srv.stop.send(()).unwrap();
    let mut buf = Vec::new();
    complete.read_to_end(&mut buf).unwrap();
    let answered = String::from_utf8_lossy(&buf).into_owned();
    assert_eq!(status_of(&answered), 200, "{answered}");
    assert!(answered.ends_with("ok\n"), "{answered}");
    // The waiting ones are closed cleanly (EOF, not a reset), with no
    // answer, long before the head timeout would have closed them.
    for (name, s) in [("idle", &mut idle), ("partial head", &mut partial)] {
        let mut buf = Vec::new();
        let r = s.read_to_end(&mut buf);
        assert!(r.is_ok(), "{name}: closed cleanly, got {r:?}");
        assert!(buf.is_empty(), "{name}: no answer, got {}", String::from_utf8_lossy(&buf));
    }
    assert!(t0.elapsed() < floodgate::http::HEAD_TIMEOUT / 2, "closed by the shutdown, not by the head timeout: {:?}", t0.elapsed());
    // The server returns once its connections are closed, within the drain timeout.
    let thread = srv.thread.take().unwrap();
    thread.join().unwrap();
    assert!(t0.elapsed() < floodgate::http::DRAIN_TIMEOUT + Duration::from_secs(1), "serve returned after {:?}", t0.elapsed());
    // And the listener is gone.
    assert!(TcpStream::connect(("127.0.0.1", srv.port)).is_err(), "no longer listening");
}

#[test]
fn http_binds_to_localhost_by_default() {
    let cfg = floodgate::config::Config::default();
    assert!(cfg.http.listen.starts_with("127.0.0.1:"), "default http.listen is {}", cfg.http.listen);
}
