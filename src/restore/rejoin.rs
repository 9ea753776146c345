//! `restore --rejoin`: a kubeadm master other than the recovery node joins the restored
//! cluster. Its etcd (and API server) are stopped, or taken over from the `--disable-etcd`
//! that stopped them; its data directory is moved aside (kept); it is added through the
//! recovery member with its own client certificates (a learner where the cluster has them);
//! etcd starts from its own manifest with the cluster's `--initial-cluster` and
//! `--initial-cluster-state=existing`; once it has joined, caught up and been promoted, the
//! API server starts again. Planned and checked against the cluster first, then journaled like
//! every restore, so `--continue` and `--rollback` work the same.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::journal::{Journal, JournalStep, Operation, Outcome, StepState};
use super::plan::{KUBEADM_MANIFESTS, apiserver_watch, etcd_watch, target};
use super::platform::kubeadm::{self, KubeadmEtcd, kubeadm_etcd_at, set_data_dir_aside};
use super::session::{Session, Ui, new_journal};
use super::steps::{EtcdTarget, JoinManifest, MemberAdd, Step, StopPod, WaitJoined};
use crate::error::usage;
use crate::etcd::membership::{Cluster, block_on, find};
use crate::host::{EtcdSettings, Platform, discover};

/// One rejoin of this node.
pub struct Rejoin<'a> {
    /// The lock, the journal, the host.
    pub session: &'a Session,
    /// `--etcd-endpoint` (the recovery member) and certificate overrides.
    pub etcd: &'a EtcdSettings,
}

/// The pods stopped for the rejoin: steps (already done when taken over) and the manifests.
struct Stopped {
    steps: Vec<JournalStep>,
    etcd: StopPod,
    apiserver: Option<StopPod>,
}

impl Rejoin<'_> {
    /// Plans, checks against the cluster, shows, asks and runs (`dry_run`: plans only).
    pub fn run(
        &self,
        platform: Platform,
        dry_run: bool,
        ui: &dyn Ui,
    ) -> anyhow::Result<Option<Journal>> {
        if platform == Platform::Openshift {
            return Err(usage(
                "--rejoin is for kubeadm masters: on OpenShift the etcd operator re-creates the other members after the restore \
                 (run `cpbackup restore --post-restore` on the recovery node)",
            ));
        }
        let Some(via_endpoint) = self.etcd.endpoint.clone() else {
            return Err(usage(
                "--rejoin needs --etcd-endpoint https://<recovery node>:2379: the restored member this node joins through",
            ));
        };
        let host = &self.session.host;
        let (id, work) = self.session.new_id()?;
        let stopped = self.stopped(&work)?;
        let etcd = kubeadm_etcd_at(stopped.etcd.aside_or_manifest())?;
        let via = discover::etcd_access(host, Platform::Kubeadm, self.etcd, None)?;
        let mut local = via.clone();
        local.endpoint = etcd
            .client_url
            .clone()
            .unwrap_or_else(|| "https://127.0.0.1:2379".into());
        if same_endpoint(&local.endpoint, &via_endpoint) {
            return Err(usage(format!(
                "--etcd-endpoint {via_endpoint} is this node's own etcd: give the recovery node's client URL"
            )));
        }
        let (learner, summary) = check_cluster(&via, &etcd)?;
        let mut steps = stopped.steps;
        let data_dir = host.path(&etcd.data_dir_host);
        let mut aside = Vec::new();
        let _ = set_data_dir_aside(&id, &data_dir, &mut aside);
        let join = join_steps(&etcd, &stopped.etcd, target(via), target(local), learner);
        let tail = stopped.apiserver.map(|a| Step::StartPod(kubeadm::start(a)));
        steps.extend(
            aside
                .into_iter()
                .chain(join)
                .chain(tail)
                .map(|step| JournalStep {
                    step,
                    state: StepState::Pending,
                }),
        );
        let mut j = new_journal(&id, Operation::Rejoin, None, platform, &work, Vec::new());
        j.steps = steps;
        ui.say(&summary);
        ui.plan(&j, dry_run)?;
        if dry_run {
            ui.say("dry run: the recovery member answers and nothing was changed; run again without --dry-run to rejoin");
            return Ok(None);
        }
        ui.confirm("rejoin this node to the restored cluster")?;
        self.session.run(&mut j, false, ui)?;
        Ok(Some(j))
    }

    /// The API server and etcd stopped: by steps of this rejoin, or (their manifests no longer
    /// in place) by the `--disable-etcd` this node's journal completed, taken over as done.
    fn stopped(&self, work: &Path) -> anyhow::Result<Stopped> {
        let host = &self.session.host;
        let manifests = host.path(KUBEADM_MANIFESTS);
        let etcd_manifest = manifests.join("etcd.yaml");
        if !etcd_manifest.exists() {
            return self.taken_over(&etcd_manifest);
        }
        let etcd = kubeadm_etcd_at(etcd_manifest.clone())?;
        let data_dir = host.path(&etcd.data_dir_host);
        let stop_dir = work.join("manifests-stopped");
        let api_manifest = manifests.join("kube-apiserver.yaml");
        let apiserver = api_manifest.exists().then(|| StopPod {
            component: "kube-apiserver".into(),
            manifest: api_manifest,
            aside: stop_dir.join("kube-apiserver.yaml"),
            watch: apiserver_watch(),
        });
        let etcd = StopPod {
            component: "etcd".into(),
            manifest: etcd_manifest,
            aside: stop_dir.join("etcd.yaml"),
            watch: etcd_watch(&etcd.data_dir_host, &data_dir, false),
        };
        let steps = apiserver
            .iter()
            .chain([&etcd])
            .map(|s| JournalStep {
                step: Step::StopPod(s.clone()),
                state: StepState::Pending,
            })
            .collect();
        Ok(Stopped {
            steps,
            etcd,
            apiserver,
        })
    }

    fn taken_over(&self, etcd_manifest: &Path) -> anyhow::Result<Stopped> {
        let disabled = self.session.existing.as_ref().filter(|j| {
            j.operation == Operation::DisableEtcd && j.outcome == Some(Outcome::Completed)
        });
        let Some(j) = disabled else {
            return Err(usage(format!(
                "{} is not there and no completed `--disable-etcd` on this node set it aside: put etcd's manifest back first",
                etcd_manifest.display()
            )));
        };
        let stops: Vec<StopPod> = j
            .steps
            .iter()
            .filter_map(|s| match &s.step {
                Step::StopPod(p) => Some(p.clone()),
                _ => None,
            })
            .collect();
        let pick = |c: &str| stops.iter().find(|s| s.component == c).cloned();
        let etcd = pick("etcd").filter(|e| e.aside.is_file()).ok_or_else(|| {
            usage(format!(
                "the --disable-etcd journal {} has no etcd manifest set aside: put etcd's manifest back first",
                Journal::path(&self.session.restore_dir).display()
            ))
        })?;
        Ok(Stopped {
            steps: taken_over_steps(j),
            apiserver: pick("kube-apiserver").filter(|a| a.aside.is_file()),
            etcd,
        })
    }
}

/// Added through `via`, etcd started from its own manifest, waited for until it has joined.
fn join_steps(
    etcd: &KubeadmEtcd,
    stopped: &StopPod,
    via: EtcdTarget,
    local: EtcdTarget,
    learner: bool,
) -> [Step; 3] {
    [
        Step::MemberAdd(MemberAdd {
            via: via.clone(),
            name: etcd.name.clone(),
            peer_url: etcd.peer_url.clone(),
            learner,
        }),
        Step::JoinManifest(JoinManifest {
            via: via.clone(),
            original: stopped.aside.clone(),
            manifest: stopped.manifest.clone(),
            name: etcd.name.clone(),
            peer_url: etcd.peer_url.clone(),
            watch: stopped.watch.clone(),
        }),
        Step::WaitJoined(WaitJoined {
            via,
            local,
            peer_url: etcd.peer_url.clone(),
        }),
    ]
}

/// The steps a completed `--disable-etcd` ran, as done steps of the rejoin (so that its
/// rollback puts the manifests back where they were before it all).
fn taken_over_steps(j: &Journal) -> Vec<JournalStep> {
    j.steps
        .iter()
        .filter(|s| s.state == StepState::Done)
        .cloned()
        .collect()
}

impl StopPod {
    /// Where the manifest is now: set aside, or still in place.
    fn aside_or_manifest(&self) -> PathBuf {
        if self.aside.is_file() {
            self.aside.clone()
        } else {
            self.manifest.clone()
        }
    }
}

fn same_endpoint(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// Asks the recovery member for the members; refuses when this node is already one. Returns
/// whether to join as a learner and a line for the operator.
pub(crate) fn check_cluster(
    via: &crate::host::EtcdAccess,
    etcd: &KubeadmEtcd,
) -> anyhow::Result<(bool, String)> {
    block_on(async {
        let mut c = Cluster::connect(via, Duration::from_secs(10)).await?;
        let members = c.members().await?;
        if let Some(m) = find(&members, &etcd.peer_url).filter(|m| m.started()) {
            return Err(usage(format!(
                "{} ({}) is already a started member of the cluster at {} (id {:x}): nothing to rejoin",
                m.name, etcd.peer_url, via.endpoint, m.id
            )));
        }
        let names: Vec<String> = members
            .iter()
            .map(|m| {
                if m.started() {
                    m.name.clone()
                } else {
                    format!("{} (not started)", m.peer_urls.join(","))
                }
            })
            .collect();
        Ok((
            c.has_learners(),
            format!(
                "the restored cluster at {} (etcd {}, revision {}) has {} member(s): {}; {} joins it",
                via.endpoint,
                c.version,
                c.revision,
                members.len(),
                names.join(", "),
                etcd.name
            ),
        ))
    })
}
