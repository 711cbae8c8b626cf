//! A minimal HTTP/1.1 client for tests that talk to a real server on
//! loopback: one request per connection, the whole reply read back.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A server's reply.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status code (0 if the reply was not HTTP).
    pub status: u16,
    /// The status line and headers, as sent.
    pub head: String,
    /// The body, as sent (not de-chunked).
    pub body: String,
}

impl Reply {
    /// The value of the first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

/// Sends `method path` with `headers` and `body` to `addr` (loopback only)
/// and reads the reply until the server closes the connection.
///
/// # Panics
///
/// If `addr` is not a loopback address, or the connection fails.
#[allow(clippy::expect_used, clippy::panic)]
pub async fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    assert!(addr.ip().is_loopback(), "tests talk to loopback only");
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut request = format!("{method} {path} HTTP/1.1\r\nhost: test\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    ));
    stream.write_all(request.as_bytes()).await.expect("write");
    stream.write_all(body).await.expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Reply {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}
