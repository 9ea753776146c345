//! The Kubernetes/OpenShift API, through `kube`: a client from a kubeconfig file, and the
//! OpenShift calls cpbackup makes (`openshift`): the post-restore steps of the documented
//! disaster-recovery procedure; and server-side apply of extracted objects (`apply`).

pub mod apply;
pub mod openshift;

use std::path::Path;

use anyhow::Context;

/// Checks, before anything is sent, that the API server answers (`GET /version`) and takes the
/// credentials: one clear error instead of one per object.
pub async fn reachable(client: &kube::Client, kubeconfig: &Path) -> anyhow::Result<()> {
    match client.apiserver_version().await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 401 || e.code == 403 => anyhow::bail!(
            "the API server refused the credentials of {} ({} {}); nothing was applied. Check them with \
             `kubectl --kubeconfig {} auth whoami`",
            kubeconfig.display(),
            e.code,
            e.message,
            kubeconfig.display()
        ),
        // any other answer is an API server that is there
        Err(kube::Error::Api(_) | kube::Error::SerdeError(_)) => Ok(()),
        Err(e) => anyhow::bail!(
            "cannot reach the API server of {} ({e}); nothing was applied. Check its `server:` and the \
             network, e.g. `kubectl --kubeconfig {} version`",
            kubeconfig.display(),
            kubeconfig.display()
        ),
    }
}

/// A client from a kubeconfig file (its current context).
pub async fn client_from_kubeconfig(path: &Path) -> anyhow::Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("reading the kubeconfig {}", path.display()))?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .with_context(|| format!("using the kubeconfig {}", path.display()))?;
    kube::Client::try_from(cfg).context("building the Kubernetes client")
}
