//! The test harness every integration test links: real etcd members and clusters, a moto S3
//! server, fake control-plane hosts and kubelet, TCP proxies that cut or freeze a stream, a
//! running daemon, stand-ins for the Kubernetes API, and the cpbackup binary — one crate,
//! built once, each harness in its own module. Every server is stopped by PID when its
//! handle drops.

pub mod api;
pub mod daemon;
pub mod etcd;
pub mod hosts;
pub mod kubeadm;
pub mod mock_api;
pub mod net;
pub mod output;
pub mod process;
pub mod proxy;
pub mod s3;

pub use api::*;
pub use daemon::*;
pub use etcd::*;
pub use hosts::*;
pub use kubeadm::*;
pub use net::*;
pub use output::conforms;
pub use process::*;
pub use proxy::*;
pub use s3::*;
