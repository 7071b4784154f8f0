//! A real `prometheus` server for the integration tests (Debian package
//! `prometheus`, installed by `.ci/run`): started on a free port with a
//! given configuration, queried through its HTTP API, killed on drop.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::free_port;

/// A `prometheus` child process, killed on drop.
pub struct Prometheus {
    child: Child,
    /// Its HTTP port on 127.0.0.1.
    pub port: u16,
    log: PathBuf,
}

impl Prometheus {
    pub fn start(config: &Path, dir: &Path) -> Prometheus {
        let port = free_port();
        let log = dir.join("prometheus.log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start `prometheus`: {e}. This test needs a real Prometheus server: apt-get install prometheus (it is not skipped)")
            });
        Prometheus { child, port, log }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET `path` and parse the JSON body (HTTP/1.0, so never chunked).
    pub fn get(&self, path: &str) -> Result<Value, String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| format!("connect: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nAccept: application/json\r\n\r\n", self.port).map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).map_err(|e| format!("read: {e}"))?;
        let text = String::from_utf8_lossy(&buf);
        let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| format!("no HTTP response: {text}"))?;
        let status = head.split(' ').nth(1).unwrap_or("?");
        if path.starts_with("/-/") {
            return if status == "200" { Ok(Value::Null) } else { Err(format!("HTTP {status}: {body}")) };
        }
        let v: Value = serde_json::from_str(body).map_err(|e| format!("HTTP {status}, not JSON ({e}): {body}"))?;
        if v["status"] != "success" {
            return Err(format!("HTTP {status}: {v}"));
        }
        Ok(v["data"].clone())
    }

    /// An instant query's result (`data.result`).
    pub fn query(&self, promql: &str) -> Result<Value, String> {
        let data = self.get(&format!("/api/v1/query?query={}", urlencode(promql)))?;
        Ok(data["result"].clone())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
