//! Applying extracted objects to a live cluster with server-side apply (field manager
//! `cpbackup`, conflicts forced: the backup is the intent). CustomResourceDefinitions go first
//! and are waited for (Established) before anything else; every object gets one result line;
//! a failure does not stop the rest.

use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;

use crate::extract::object::Object;

/// The field manager every apply uses.
pub const FIELD_MANAGER: &str = "cpbackup";

/// How to apply.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// `--dry-run=server`: the API server validates and admits, nothing is stored.
    pub server_dry_run: bool,
    /// How long to wait for each CRD to be Established.
    pub crd_timeout: Duration,
    /// Time between two looks at a CRD's conditions.
    pub poll: Duration,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            server_dry_run: false,
            crd_timeout: Duration::from_secs(60),
            poll: Duration::from_secs(1),
        }
    }
}

/// The outcome for one object.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Applied {
    /// `kind/name` applied.
    pub object: String,
    /// Its namespace, if namespaced.
    pub namespace: Option<String>,
    /// `applied`, `applied (dry run)` or `failed`.
    pub result: String,
    /// Why the API server refused it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Applied {
    /// Whether the API server refused it.
    pub fn failed(&self) -> bool {
        self.error.is_some()
    }

    /// One line for the report.
    pub fn line(&self) -> String {
        let ns = self
            .namespace
            .as_deref()
            .map(|n| format!(" -n {n}"))
            .unwrap_or_default();
        match &self.error {
            None => format!("{}{ns}: {}", self.object, self.result),
            Some(e) => format!("{}{ns}: failed: {e}", self.object),
        }
    }
}

fn api_for(client: &kube::Client, o: &Object) -> Api<DynamicObject> {
    let (group, version) = o
        .api_version()
        .rsplit_once('/')
        .unwrap_or(("", o.api_version()));
    let gvk = GroupVersionKind::gvk(group, version, o.kind());
    let ar = ApiResource::from_gvk_with_plural(&gvk, &o.plural);
    match o.namespace() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    }
}

/// Applies `objects` (already in apply order); `report` is called with each result as it comes.
pub async fn apply_all(
    client: &kube::Client,
    objects: &[Object],
    opts: &ApplyOptions,
    mut report: impl FnMut(&Applied),
) -> Vec<Applied> {
    let mut params = PatchParams::apply(FIELD_MANAGER).force();
    if opts.server_dry_run {
        params = params.dry_run();
    }
    let (crds, rest): (Vec<&Object>, Vec<&Object>) = objects
        .iter()
        .partition(|o| o.kind() == "CustomResourceDefinition");
    let mut results = Vec::new();
    for o in crds.into_iter().chain(rest) {
        let api = api_for(client, o);
        let outcome = async {
            let obj: DynamicObject = serde_json::from_value(o.json.clone())
                .map_err(|e| format!("not an object: {e}"))?;
            api.patch(o.name(), &params, &Patch::Apply(&obj))
                .await
                .map_err(describe)?;
            if o.kind() == "CustomResourceDefinition" && !opts.server_dry_run {
                wait_established(&api, o.name(), opts).await?;
            }
            Ok::<(), String>(())
        }
        .await;
        let applied = Applied {
            object: o.display(),
            namespace: o.namespace().map(str::to_owned),
            result: match (&outcome, opts.server_dry_run) {
                (Err(_), _) => "failed".into(),
                (Ok(()), true) => "applied (server dry run)".into(),
                (Ok(()), false) => "applied".into(),
            },
            error: outcome.err(),
        };
        report(&applied);
        results.push(applied);
    }
    results
}

async fn wait_established(
    api: &Api<DynamicObject>,
    name: &str,
    opts: &ApplyOptions,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + opts.crd_timeout;
    loop {
        let crd = api.get(name).await.map_err(describe)?;
        let established = crd.data["status"]["conditions"]
            .as_array()
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Established" && c["status"] == "True")
            });
        if established {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "applied, but not Established after {} s; its custom resources will fail",
                opts.crd_timeout.as_secs()
            ));
        }
        tokio::time::sleep(opts.poll).await;
    }
}

fn describe(e: kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} ({})", s.message, s.reason),
        other => other.to_string(),
    }
}

/// Whether any object failed.
pub fn any_failed(results: &[Applied]) -> bool {
    results.iter().any(Applied::failed)
}
