//! The Kubernetes/OpenShift API, through `kube`: a client from a kubeconfig file, and the
//! OpenShift calls cpbackup makes (`openshift`): the post-restore steps of the documented
//! disaster-recovery procedure; and server-side apply of extracted objects (`apply`).

pub mod apply;
pub mod openshift;

use std::path::Path;

use anyhow::Context;

/// A client from a kubeconfig file (its current context).
pub async fn client_from_kubeconfig(path: &Path) -> anyhow::Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("reading the kubeconfig {}", path.display()))?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .with_context(|| format!("using the kubeconfig {}", path.display()))?;
    kube::Client::try_from(cfg).context("building the Kubernetes client")
}
