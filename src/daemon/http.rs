//! The daemon's HTTP endpoints: `/metrics` (Prometheus text) and `/healthz`.
//!
//! Health: 200 while the freshest successful backup (this node's, or in one-per-cluster mode
//! any node's as seen in etcd) is younger than twice the schedule interval; 503 otherwise. A
//! daemon that never succeeded gets that much grace from its start.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State as Extract;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::sync::watch;

use crate::daemon::metrics::{self, Live, State};

/// What the endpoints read; the daemon updates it.
pub struct Status {
    pub state: Mutex<State>,
    pub interval: Mutex<Duration>,
    pub one_per_cluster: Mutex<bool>,
    pub started: f64,
}

impl Status {
    pub fn new(state: State, interval: Duration, one_per_cluster: bool) -> Self {
        Status {
            state: Mutex::new(state),
            interval: Mutex::new(interval),
            one_per_cluster: Mutex::new(one_per_cluster),
            started: metrics::now_unix(),
        }
    }

    /// (healthy, explanation).
    pub fn health(&self) -> (bool, String) {
        let interval = self.interval.lock().expect("status lock").as_secs_f64();
        let last = self.state.lock().expect("status lock").freshest_success();
        let now = metrics::now_unix();
        let limit = 2.0 * interval;
        match last {
            Some(t) => {
                let age = now - t;
                (
                    age <= limit,
                    format!(
                        "last successful backup {age:.0}s ago (limit {limit:.0}s = 2 x schedule interval)"
                    ),
                )
            }
            None => {
                let up = now - self.started;
                (
                    up <= limit,
                    format!("no successful backup yet; running for {up:.0}s (limit {limit:.0}s)"),
                )
            }
        }
    }

    pub fn render(&self) -> String {
        let (healthy, _) = self.health();
        let live = Live {
            schedule_interval_seconds: self.interval.lock().expect("status lock").as_secs_f64(),
            healthy,
            leader_mode: *self.one_per_cluster.lock().expect("status lock"),
        };
        self.state.lock().expect("status lock").render(Some(&live))
    }
}

async fn metrics_handler(Extract(s): Extract<Arc<Status>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.render(),
    )
}

async fn healthz_handler(Extract(s): Extract<Arc<Status>>) -> impl IntoResponse {
    let (ok, why) = s.health();
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        format!("{}: {why}\n", if ok { "ok" } else { "stale" }),
    )
}

/// Serves until `stop` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    status: Arc<Status>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz_handler))
        .with_state(status);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|v| *v).await;
        })
        .await?;
    Ok(())
}
