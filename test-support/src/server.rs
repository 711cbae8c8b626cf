//! [`RedisServer`]: one real `redis-server` process for a test.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long a server may take to answer `PING` after it starts.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// A `redis-server` on a free loopback port, in its own temporary directory.
///
/// It can be stopped, killed, paused (`SIGSTOP`) and restarted on the same
/// port, to test what clients do when their server misbehaves.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
    extra_args: Vec<String>,
}

impl RedisServer {
    /// Starts a standalone server and waits until it answers `PING`.
    ///
    /// Panics (with the server's log) if it cannot be started: a test cannot
    /// go on without it.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a server with extra `redis-server` arguments (e.g.
    /// `["--cluster-enabled", "yes"]`).
    pub fn start_with(extra_args: &[&str]) -> Self {
        let extra_args: Vec<String> = extra_args.iter().map(|s| (*s).to_owned()).collect();
        // A free port can be taken by someone else between our probe and the
        // server's bind: try a few.
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port();
            let mut server = Self {
                child: None,
                port,
                dir: tempfile::Builder::new()
                    .prefix("ratelimit-redis-")
                    .tempdir()
                    .expect("create a temporary directory for redis-server"),
                extra_args: extra_args.clone(),
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(error) => last_error = error,
            }
        }
        panic!("redis-server did not start: {last_error}");
    }

    /// The binary used: `REDIS_SERVER_BIN`, else `redis-server`.
    pub fn binary() -> PathBuf {
        std::env::var_os("REDIS_SERVER_BIN")
            .map_or_else(|| PathBuf::from("redis-server"), PathBuf::from)
    }

    /// Starts a server that also accepts TLS on a second free port, with a
    /// fresh self-signed certificate for 127.0.0.1 (made with the `openssl`
    /// command). Clients are not asked for certificates.
    pub fn start_tls() -> (Self, u16) {
        let certs = tempfile::Builder::new()
            .prefix("ratelimit-tls-")
            .tempdir()
            .expect("create a temporary directory for certificates");
        let cert = certs.path().join("cert.pem");
        let key = certs.path().join("key.pem");
        let status = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args([
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run openssl to make a test certificate");
        assert!(status.success(), "openssl could not make a certificate");
        let tls_port = free_port().to_string();
        let (cert, key) = (cert.display().to_string(), key.display().to_string());
        let server = Self::start_with(&[
            "--tls-port",
            &tls_port,
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &cert,
            "--tls-auth-clients",
            "no",
        ]);
        // The certificates are read at start: the directory may go.
        drop(certs);
        (server, tls_port.parse().expect("a port number"))
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Sends one command with `redis-cli` and returns its raw output
    /// (for administrative commands in tests: `SCRIPT FLUSH`, `MEMORY USAGE`…).
    pub fn cli(&self, args: &[&str]) -> String {
        run_cli(self.port, args)
    }

    /// How many script calls (`EVALSHA` and `EVAL`) the server has run,
    /// from `INFO commandstats`.
    pub fn script_calls(&self) -> u64 {
        self.cli(&["INFO", "commandstats"])
            .lines()
            .filter(|line| {
                line.starts_with("cmdstat_evalsha:") || line.starts_with("cmdstat_eval:")
            })
            .filter_map(|line| {
                line.split("calls=")
                    .nth(1)?
                    .split(',')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    }

    /// Stops the server with `SIGTERM` and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, "TERM");
            let _ = child.wait();
        }
    }

    /// Kills the server with `SIGKILL` and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (`SIGSTOP`): connections stay open, nothing answers.
    pub fn pause(&self) {
        if let Some(child) = &self.child {
            signal(child, "STOP");
        }
    }

    /// Thaws a paused server (`SIGCONT`).
    pub fn resume(&self) {
        if let Some(child) = &self.child {
            signal(child, "CONT");
        }
    }

    /// Starts the server again on the same port (after [`stop`](Self::stop)
    /// or [`kill`](Self::kill)), empty, and waits until it answers.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            match self.spawn() {
                Ok(()) => return,
                // The old socket may linger for a moment.
                Err(error) if Instant::now() > deadline => {
                    panic!("redis-server did not restart: {error}\n{}", self.log())
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn spawn(&mut self) -> Result<(), String> {
        let child = Command::new(Self::binary())
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.log_path())
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", Self::binary().display()))?;
        self.child = Some(child);
        if self.wait_ready() {
            Ok(())
        } else {
            self.kill();
            Err(format!("no PONG on port {}\n{}", self.port, self.log()))
        }
    }

    /// Bounded wait for `+PONG`, giving up early if the process died.
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + READY_WITHIN;
        while Instant::now() < deadline {
            if let Some(child) = &mut self.child
                && let Ok(Some(_)) = child.try_wait()
            {
                return false;
            }
            if ping(self.port) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- redis-server log (port {}) ---\n{}",
                self.port,
                self.log()
            );
        }
        self.resume();
        self.kill();
    }
}

/// Sends one command with `redis-cli` to the server on `port`; its raw
/// output.
pub(crate) fn run_cli(port: u16, args: &[&str]) -> String {
    let output = Command::new(cli_binary())
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("run redis-cli");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// A loopback port nothing listens on now (for servers to start on, or
/// for a test that needs an address where nothing answers).
pub fn free_port() -> u16 {
    TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("find a free loopback port")
}

pub(crate) fn ping(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}

fn signal(child: &Child, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status();
}

fn cli_binary() -> PathBuf {
    std::env::var_os("REDIS_CLI_BIN").map_or_else(|| PathBuf::from("redis-cli"), PathBuf::from)
}
