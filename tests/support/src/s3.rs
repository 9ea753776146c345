//! A moto S3 server with Object Lock on 127.0.0.1.

use std::fs;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{cpbackup, free_port};

/// A moto S3 server on 127.0.0.1 (PyPI `moto[server]`), killed on drop.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Moto {
    pub fn start(dir: &Path) -> Moto {
        Self::start_with_env(dir, &[])
    }

    pub fn start_with_env(dir: &Path, env: &[(&str, &str)]) -> Moto {
        let port = free_port();
        let child = Command::new("python3")
            .envs(env.iter().copied())
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join(format!("moto-{port}.log"))).unwrap())
            .spawn()
            .expect("moto server starts (run scripts/test.sh, which installs moto[server])");
        let endpoint = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto did not start; see {}",
                dir.display()
            );
            std::thread::sleep(Duration::from_millis(50)); // readiness poll
        }
        Moto { child, endpoint }
    }

    /// Runs Python with a boto3 client `s3` bound to this server; returns stdout.
    pub fn py(&self, code: &str) -> String {
        let prelude = format!(
            "import boto3, json, datetime\ns3 = boto3.client('s3', endpoint_url='{}', region_name='us-east-1', aws_access_key_id='test', aws_secret_access_key='test')\n",
            self.endpoint
        );
        let out = Command::new("python3")
            .arg("-c")
            .arg(prelude + code)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "boto3 script failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn create_bucket(&self, name: &str, locked: bool) {
        self.py(&format!(
            "s3.create_bucket(Bucket='{name}', ObjectLockEnabledForBucket={})",
            if locked { "True" } else { "False" }
        ));
    }

    /// cpbackup with credentials in the environment and this endpoint.
    pub fn cpbackup(&self, dir: &Path) -> Command {
        let mut c = cpbackup(dir);
        c.env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("CPBACKUP_S3_ENDPOINT", &self.endpoint)
            .env("CPBACKUP_S3_PATH_STYLE", "true");
        c
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
