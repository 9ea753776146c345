//! etcd connection settings: flags over the file's `[etcd]`, checked (one endpoint, a URL,
//! cert and key together, timeouts in range). What is left unset is discovered from the host.

use std::time::Duration;

use super::file::FileEtcd;
use super::flags::EtcdArgs;
use crate::error::usage;
use crate::host::EtcdSettings;

/// Resolves and checks the etcd flags over the file.
pub fn resolve(args: &EtcdArgs, file: &FileEtcd) -> anyhow::Result<EtcdSettings> {
    let secs = |flag: Option<u64>, key: Option<u64>, name: &str, default: u64| {
        let v = flag.or(key).unwrap_or(default);
        if v == 0 || v > 3600 {
            Err(usage(format!(
                "etcd.{name} = {v} is out of range: give seconds between 1 and 3600"
            )))
        } else {
            Ok(Duration::from_secs(v))
        }
    };
    let s = EtcdSettings {
        endpoint: args.etcd_endpoint.clone().or_else(|| file.endpoint.clone()),
        cacert: args.etcd_cacert.clone().or_else(|| file.cacert.clone()),
        cert: args.etcd_cert.clone().or_else(|| file.cert.clone()),
        key: args.etcd_key.clone().or_else(|| file.key.clone()),
        connect_timeout: secs(
            args.etcd_connect_timeout,
            file.connect_timeout,
            "connect_timeout",
            10,
        )?,
        stall_timeout: secs(
            args.etcd_stall_timeout,
            file.stall_timeout,
            "stall_timeout",
            60,
        )?,
    };
    if let Some(ep) = &s.endpoint {
        if ep.contains(',') {
            return Err(usage(format!(
                "etcd.endpoint = {ep:?} names several endpoints: a snapshot is the state of one member, give only the local member's URL"
            )));
        }
        if !(ep.starts_with("https://") || ep.starts_with("http://")) {
            return Err(usage(format!(
                "etcd.endpoint = {ep:?} is not a URL: write it as https://HOST:2379"
            )));
        }
    }
    if s.cert.is_some() != s.key.is_some() {
        return Err(usage(
            "etcd.cert and etcd.key go together: give both (--etcd-cert and --etcd-key) or neither",
        ));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_validation() {
        let mut a = EtcdArgs {
            etcd_endpoint: Some("https://a:2379,https://b:2379".into()),
            ..Default::default()
        };
        assert!(resolve(&a, &FileEtcd::default()).is_err());
        a.etcd_endpoint = Some("https://a:2379".into());
        a.etcd_cert = Some("/c".into());
        let e = resolve(&a, &FileEtcd::default()).unwrap_err();
        assert!(e.to_string().contains("etcd.key"));
        a.etcd_key = Some("/k".into());
        let s = resolve(&a, &FileEtcd::default()).unwrap();
        assert_eq!(s.connect_timeout, Duration::from_secs(10));
    }
}
