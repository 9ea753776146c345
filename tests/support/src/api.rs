//! A stand-in OpenShift API server over plain HTTP.

use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// A stand-in for the OpenShift API server (plain HTTP on 127.0.0.1) answering
/// `GET /apis/config.openshift.io/v1/clusteroperators/<name>` with a ClusterOperator whose
/// Progressing condition is `progressing[name]` (default "False"), and server-side apply
/// (`PATCH`, logged as `PATCH <path>`) by echoing the object (422 for names with `refuse-me`);
/// records every path asked.
pub struct FakeApi {
    pub url: String,
    pub asked: Arc<Mutex<Vec<String>>>,
}

impl FakeApi {
    pub fn start(progressing: &[(&str, &str)]) -> FakeApi {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let states: std::collections::HashMap<String, String> = progressing
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let log = asked.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut s) = conn else { continue };
                let states = states.clone();
                let log = log.clone();
                std::thread::spawn(move || {
                    let mut reader = std::io::BufReader::new(s.try_clone().unwrap());
                    loop {
                        let mut line = String::new();
                        if std::io::BufRead::read_line(&mut reader, &mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let method = line.split_whitespace().next().unwrap_or("").to_owned();
                        let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
                        let mut length = 0usize;
                        loop {
                            let mut h = String::new();
                            if std::io::BufRead::read_line(&mut reader, &mut h).unwrap_or(0) == 0
                                || h == "\r\n"
                            {
                                break;
                            }
                            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:")
                            {
                                length = v.trim().parse().unwrap_or(0);
                            }
                        }
                        let mut sent = vec![0u8; length];
                        let _ = std::io::Read::read_exact(&mut reader, &mut sent);
                        if method == "PATCH" {
                            log.lock().unwrap().push(format!("PATCH {path}"));
                            // server-side apply: echo the object, or refuse names asking for it
                            let (status, body) = if path.contains("/refuse-me") {
                                ("422 Unprocessable Entity", serde_json::json!({"kind":"Status","apiVersion":"v1",
                                    "status":"Failure","message":"refused by the test","reason":"Invalid","code":422}).to_string())
                            } else {
                                ("200 OK", String::from_utf8_lossy(&sent).into_owned())
                            };
                            let _ = write!(
                                s,
                                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                                body.len()
                            );
                            continue;
                        }
                        log.lock().unwrap().push(path.clone());
                        let name = path
                            .rsplit('/')
                            .next()
                            .unwrap_or("")
                            .split('?')
                            .next()
                            .unwrap_or("");
                        let body = if path
                            .starts_with("/apis/config.openshift.io/v1/clusteroperators/")
                        {
                            let p = states.get(name).cloned().unwrap_or_else(|| "False".into());
                            serde_json::json!({"apiVersion": "config.openshift.io/v1", "kind": "ClusterOperator",
                                "metadata": {"name": name},
                                "status": {"conditions": [{"type": "Progressing", "status": p}]}})
                            .to_string()
                        } else {
                            String::new()
                        };
                        let status = if body.is_empty() {
                            "404 Not Found"
                        } else {
                            "200 OK"
                        };
                        let _ = write!(
                            s,
                            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                    }
                });
            }
        });
        FakeApi { url, asked }
    }

    /// Writes the node's localhost.kubeconfig under `root`, pointing at this server.
    pub fn kubeconfig_for(&self, root: &Path) {
        let p = root.join("etc/kubernetes/static-pod-resources/kube-apiserver-certs/secrets/node-kubeconfigs/localhost.kubeconfig");
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(
            &p,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    server: {}\ncontexts:\n- name: local\n  context:\n    cluster: local\n    user: local\ncurrent-context: local\nusers:\n- name: local\n  user:\n    token: not-a-secret\n",
                self.url
            ),
        )
        .unwrap();
    }
}

/// One settled fake API server per test process, for fake OpenShift roots.
pub fn settled_api() -> &'static FakeApi {
    static API: std::sync::OnceLock<FakeApi> = std::sync::OnceLock::new();
    API.get_or_init(|| FakeApi::start(&[]))
}
