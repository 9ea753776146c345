//! Loopback addresses and ports each test process hands out without collisions.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU16, Ordering};

/// A unique loopback address per test process and call: 127.0.<pid-ish>.<n>.
pub fn unique_loopback_ip() -> String {
    static N: AtomicU16 = AtomicU16::new(2);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let p = std::process::id();
    format!("127.{}.{}.{}", 10 + (p % 200), (p / 200) % 250, n)
}

/// A free TCP port on 127.0.0.1.
/// A port nothing listens on, below the kernel's ephemeral range (32768+): a port taken from
/// that range could be grabbed as the source port of some client's connection between this
/// check and the server binding it. Each test process hands out ports from its own block of
/// 100 (nextest runs every test in a process of its own).
pub fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 10_000 + (std::process::id() % 220) as u16 * 100;
    for _ in 0..100 {
        let port = base + NEXT.fetch_add(1, Ordering::Relaxed) % 100;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
