//! TCP proxies that cut or freeze a stream at an exact byte count, and a backup frozen in
//! the middle of its snapshot stream.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use crate::{Etcd, Version, free_port, keygen};

/// A TCP proxy in front of `upstream`. Once `limit` bytes went server→client it either cuts
/// both directions (`Cut`) or stops forwarding and reports on `frozen` (`Freeze`).
pub struct Proxy {
    pub addr: String,
    pub forwarded: Arc<AtomicU64>,
    pub reached: mpsc::Receiver<()>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    Cut,
    Freeze,
}

impl Proxy {
    pub fn start(upstream: &str, limit: u64, mode: ProxyMode) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let forwarded = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::channel();
        let upstream = upstream.to_owned();
        let fwd = forwarded.clone();
        let tx = Arc::new(Mutex::new(Some(tx)));
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let server = TcpStream::connect(&upstream).unwrap();
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let (mut c, mut s) = (c2, s2);
                    let _ = std::io::copy(&mut c, &mut s);
                });
                let fwd = fwd.clone();
                let tx = tx.clone();
                std::thread::spawn(move || {
                    let (mut s, mut c) = (server, client);
                    let mut buf = [0u8; 16384];
                    loop {
                        let n = match s.read(&mut buf) {
                            Ok(0) | Err(_) => {
                                let _ = c.shutdown(std::net::Shutdown::Both);
                                break;
                            }
                            Ok(n) => n,
                        };
                        let before = fwd.load(Ordering::SeqCst);
                        let allowed = limit.saturating_sub(before).min(n as u64) as usize;
                        if c.write_all(&buf[..allowed]).is_err() {
                            break;
                        }
                        fwd.fetch_add(allowed as u64, Ordering::SeqCst);
                        if allowed < n {
                            if let Some(t) = tx.lock().unwrap().take() {
                                let _ = t.send(());
                            }
                            match mode {
                                ProxyMode::Cut => {
                                    let _ = c.shutdown(std::net::Shutdown::Both);
                                    let _ = s.shutdown(std::net::Shutdown::Both);
                                    break;
                                }
                                ProxyMode::Freeze => {
                                    // Keep both sockets open and forward nothing more.
                                    let mut sink = [0u8; 16384];
                                    while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
                                    // upstream died: pass the close on, as a real TCP peer would
                                    let _ = c.shutdown(std::net::Shutdown::Both);
                                    break;
                                }
                            }
                        }
                    }
                });
            }
        });
        Proxy {
            addr,
            forwarded,
            reached: rx,
        }
    }
}

/// A backup frozen in the middle of the snapshot stream: etcd (with ~2 MB of data) behind a
/// proxy that stops forwarding after 400 kB, and `base` (a cpbackup command) running
/// `backup` into `stores`. Returned once the stream is frozen.
pub struct Frozen {
    pub etcd: Etcd,
    _proxy: Proxy,
    pub child: Child,
}

impl Frozen {
    pub fn sigterm(&self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    }
}

pub fn frozen_backup(dir: &Path, base: Command, stores: &[&str]) -> Frozen {
    frozen(dir, base, &["backup"], stores)
}

/// Like `frozen_backup`, with `command` (e.g. `daemon --schedule …`) instead of `backup`.
pub fn frozen(dir: &Path, mut base: Command, command: &[&str], stores: &[&str]) -> Frozen {
    let etcd = Etcd::start(Version::V35, dir, "127.0.0.1", free_port(), None);
    etcd.seed("/registry/configmaps/big/cm-", 1000, 2000);
    let proxy = Proxy::start(
        etcd.endpoint.trim_start_matches("http://"),
        400_000,
        ProxyMode::Freeze,
    );
    let (_, r) = keygen(dir, "frozen.key");
    base.args(command);
    base.args([
        "--static-pods",
        "none",
        "--etcd-endpoint",
        &format!("http://{}", proxy.addr),
    ]);
    base.args(["--recipient", &r]);
    for s in stores {
        base.args(["--store", s]);
    }
    base.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = base.spawn().unwrap();
    proxy
        .reached
        .recv_timeout(Duration::from_secs(60))
        .expect("the snapshot stream started");
    Frozen {
        etcd,
        _proxy: proxy,
        child,
    }
}

/// A TCP proxy that plays a server going away: once `limit` bytes went client→server it cuts
/// every connection and refuses (closes) new ones until `heal()`.
pub struct FlakyProxy {
    pub addr: String,
    down: Arc<std::sync::atomic::AtomicBool>,
}

impl FlakyProxy {
    pub fn start(upstream: &str, limit: u64) -> FlakyProxy {
        use std::sync::atomic::AtomicBool;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let down = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (d, upstream) = (down.clone(), upstream.to_owned());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if d.load(Ordering::SeqCst) {
                    let _ = client.shutdown(std::net::Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let (mut s, mut c) = (s2, c2);
                    let _ = std::io::copy(&mut s, &mut c);
                });
                let (d, sent) = (d.clone(), sent.clone());
                std::thread::spawn(move || {
                    let (mut c, mut s) = (client, server);
                    let mut buf = [0u8; 65536];
                    loop {
                        let n = match c.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if d.load(Ordering::SeqCst)
                            || sent.fetch_add(n as u64, Ordering::SeqCst) + n as u64 > limit
                        {
                            d.store(true, Ordering::SeqCst);
                            break;
                        }
                        if s.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = c.shutdown(std::net::Shutdown::Both);
                    let _ = s.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        FlakyProxy { addr, down }
    }

    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::SeqCst)
    }
}

/// A TCP proxy in front of an HTTP server that logs every request line it forwards
/// (`GET /bucket/key?versionId=… HTTP/1.1`): how many requests a command made, and which.
pub struct RequestLog {
    pub addr: String,
    pub lines: Arc<Mutex<Vec<String>>>,
}

impl RequestLog {
    pub fn start(upstream: &str) -> RequestLog {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let log = lines.clone();
        let upstream = upstream.to_owned();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let server = TcpStream::connect(&upstream).unwrap();
                let (mut c_in, mut s_out) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                let log = log.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16384];
                    let mut pending = Vec::new();
                    loop {
                        let n = match c_in.read(&mut buf) {
                            Ok(0) | Err(_) => {
                                let _ = s_out.shutdown(std::net::Shutdown::Write);
                                break;
                            }
                            Ok(n) => n,
                        };
                        pending.extend_from_slice(&buf[..n]);
                        while let Some(i) = pending.windows(2).position(|w| w == b"\r\n") {
                            let line = String::from_utf8_lossy(&pending[..i]).into_owned();
                            pending.drain(..i + 2);
                            let method = line.split(' ').next().unwrap_or("");
                            if ["GET", "HEAD", "PUT", "POST", "DELETE"].contains(&method)
                                && line.ends_with(" HTTP/1.1")
                            {
                                log.lock().unwrap().push(line);
                            }
                        }
                        if s_out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
                std::thread::spawn(move || {
                    let (mut s, mut c) = (server, client);
                    let _ = std::io::copy(&mut s, &mut c);
                    let _ = c.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        RequestLog { addr, lines }
    }

    /// The requests logged so far, and forgets them.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.lines.lock().unwrap())
    }
}

/// A TCP proxy in front of an HTTP server that rewrites the `Date:` header of every response to
/// `date` (an IMF-fixdate, 29 characters): a server whose clock is off.
pub struct DateRewrite {
    pub addr: String,
}

const DATE_HEADER: &[u8] = b"\r\nDate: ";

/// Rewrites the complete Date headers in `buf`; returns how many leading bytes can be sent now
/// (a header cut by the read stays behind until the rest arrives).
fn rewrite_dates(buf: &mut [u8], date: &[u8]) -> usize {
    let mut from = 0;
    while let Some(i) = buf[from..]
        .windows(DATE_HEADER.len())
        .position(|w| w.eq_ignore_ascii_case(DATE_HEADER))
    {
        let start = from + i + DATE_HEADER.len();
        if buf.len() < start + date.len() {
            return from + i;
        }
        buf[start..start + date.len()].copy_from_slice(date);
        from = start + date.len();
    }
    let tail = (1..DATE_HEADER.len())
        .rev()
        .find(|&n| buf.len() >= n && buf[buf.len() - n..].eq_ignore_ascii_case(&DATE_HEADER[..n]))
        .unwrap_or(0);
    buf.len() - tail
}

impl DateRewrite {
    pub fn start(upstream: &str, date: &'static str) -> DateRewrite {
        assert_eq!(date.len(), 29, "an IMF-fixdate is 29 characters");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let upstream = upstream.to_owned();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let server = TcpStream::connect(&upstream).unwrap();
                let (mut c_in, mut s_out) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c_in, &mut s_out);
                    let _ = s_out.shutdown(std::net::Shutdown::Write);
                });
                std::thread::spawn(move || {
                    let (mut s, mut c) = (server, client);
                    let mut buf = [0u8; 16384];
                    let mut pending = Vec::new();
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 {
                            let _ = c.write_all(&pending);
                            break;
                        }
                        pending.extend_from_slice(&buf[..n]);
                        let ready = rewrite_dates(&mut pending, date.as_bytes());
                        if c.write_all(&pending[..ready]).is_err() {
                            break;
                        }
                        pending.drain(..ready);
                    }
                    let _ = c.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        DateRewrite { addr }
    }
}
