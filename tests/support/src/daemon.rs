//! A running `cpbackup daemon`, its metrics and its HTTP endpoints.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::{cpbackup, free_port};

/// A running `cpbackup daemon`; killed by PID on drop.
pub struct Daemon {
    pub child: Child,
    pub metrics: String,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `cpbackup daemon` with `config` (TOML) written to `dir/<name>.toml`, metrics on a
    /// free port; returns once /healthz answers.
    pub fn start(dir: &Path, name: &str, config: &str, extra: &[&str]) -> Daemon {
        Self::start_with_env(dir, name, config, extra, &[])
    }

    /// [`Daemon::start`] with more environment (credentials of a test S3, say).
    pub fn start_with_env(
        dir: &Path,
        name: &str,
        config: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Daemon {
        let port = free_port();
        let metrics = format!("127.0.0.1:{port}");
        let cfg = dir.join(format!("{name}.toml"));
        fs::write(&cfg, config).unwrap();
        let log = dir.join(format!("{name}.log"));
        let mut c = cpbackup(dir);
        c.env("CPBACKUP_CONFIG", &cfg)
            .envs(env.iter().copied())
            .env_remove("CPBACKUP_STATE_DIR")
            .args([
                "--log-format",
                "json",
                "daemon",
                "--metrics-address",
                &metrics,
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap());
        let child = c.spawn().expect("daemon starts");
        let d = Daemon {
            child,
            metrics,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while http_get(&d.metrics, "/healthz").is_none() {
            assert!(
                Instant::now() < deadline,
                "daemon did not serve: {}",
                d.log_text()
            );
            std::thread::sleep(Duration::from_millis(20)); // readiness poll
        }
        d
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig).unwrap();
    }

    /// The current metrics, parsed by a Prometheus text-format parser.
    pub fn scrape(&self) -> prometheus_parse::Scrape {
        let (code, body) = http_get(&self.metrics, "/metrics").expect("metrics answer");
        assert_eq!(code, 200);
        prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
            .expect("valid Prometheus text")
    }

    /// One sample's value (`labels` must all match).
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        metric_value(&self.scrape(), name, labels)
    }

    /// Polls until `f` holds (or panics after `secs`).
    pub fn wait_until(&self, secs: u64, what: &str, mut f: impl FnMut(&Daemon) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !f(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50)); // condition poll
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn metric_value(
    s: &prometheus_parse::Scrape,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    s.samples
        .iter()
        .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match x.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

/// GET over plain HTTP/1.0: (status, body), or None when nothing listens.
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((code, body))
}
