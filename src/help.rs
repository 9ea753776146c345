//! The examples each command's `--help` ends with (a test parses every one of them).

/// `backup --help`.
pub const BACKUP: &str = "Examples:
  cpbackup backup                                   # everything from /etc/cpbackup/config.toml
  cpbackup backup --recipient age1… --store /var/lib/cpbackup/backups --store s3://etcd-backups/prod
  cpbackup backup --static-pods none --etcd-endpoint https://10.0.0.5:2379   # etcd alone
  cpbackup backup --upload-pending                  # copy local copies a store missed
  cpbackup --host-root /host backup                 # from `oc debug node/…` with the image";

/// `list --help`.
pub const LIST: &str = "Examples:
  cpbackup list --store s3://etcd-backups/prod
  cpbackup list --store s3://etcd-backups/prod --since 24h --reverse --limit 10
  cpbackup list --store s3://etcd-backups --summary          # one line per cluster
  cpbackup list -o json --fast                                # names and sizes only";

/// `verify --help`.
pub const VERIFY: &str = "Examples:
  cpbackup verify --identity ~/cpbackup-recovery.key --latest
  cpbackup verify --store s3://etcd-backups/prod --latest --ciphertext-only   # no key needed
  cpbackup verify --identity key.txt ./c1-master-0-20261201T060000Z-rev5.cpb";

/// `prune --help`.
pub const PRUNE: &str = "Examples:
  cpbackup prune --keep-daily 7 --keep-weekly 4 --dry-run     # the plan, lock state read
  cpbackup prune --keep-last 48 --max-age-days 90";

/// `inspect --help`.
pub const INSPECT: &str = "Examples:
  cpbackup inspect snapshot.db
  cpbackup inspect snapshot.db --by namespace --top 20 -o json
  cpbackup inspect --identity ~/cpbackup-recovery.key --latest --store /var/lib/cpbackup/backups";

/// `export-openshift --help`.
pub const EXPORT: &str = "Examples:
  cpbackup export-openshift --identity KEY --latest --out /home/core/assets/backup
  # then: /usr/local/bin/cluster-restore.sh /home/core/assets/backup";

/// `keygen --help`.
pub const KEYGEN: &str = "Examples:
  cpbackup keygen --out ~/cpbackup-recovery.key            # on a workstation, not on a node
  cpbackup keygen --signing --out sign.key                 # nodes sign, readers --trust-signer";

/// `restore --help`.
pub const RESTORE: &str = "Examples:
  cpbackup restore --disable-etcd --yes                      # on every OTHER master first
  cpbackup restore --identity KEY --latest --dry-run         # verify and print the plan
  cpbackup restore --identity KEY --latest                   # asks, then runs it, journaled
  cpbackup restore --continue                                # after a failure or a kill
  cpbackup restore --rollback --yes                          # the node as before
  cpbackup restore --rejoin --etcd-endpoint https://10.0.0.5:2379   # kubeadm, the other masters
  cpbackup restore --identity KEY --latest --new-host --node-name cp-new-0 \\
    --node-ip 10.0.3.7 --dry-run                             # kubeadm, onto a new machine
  cpbackup restore --identity KEY --latest --rejoin --new-host --node-name cp-new-1 \\
    --node-ip 10.0.3.8 --etcd-endpoint https://10.0.3.7:2379   # then each further new machine
Guide: docs/restore.md";

/// `daemon --help`.
pub const DAEMON: &str = "Examples:
  cpbackup daemon                                            # [schedule] from the config
  cpbackup daemon --schedule \"0 */6 * * *\" --mode one-per-cluster
  cpbackup daemon --schedule @hourly --metrics-address 0.0.0.0:9790
Guide: docs/scheduling.md";

/// `completion --help`.
pub const COMPLETION: &str = "Examples:
  cpbackup completion bash > /etc/bash_completion.d/cpbackup
  cpbackup completion zsh > \"${fpath[1]}/_cpbackup\"";

/// `man --help`.
pub const MAN: &str = "Examples:
  cpbackup man | man -l -
  cpbackup man --out /usr/local/share/man/man1";

/// `extract --help`.
pub const EXTRACT: &str = "Examples:
  cpbackup extract --identity key.txt BACKUP --namespace shop --out ./shop/
  cpbackup extract snapshot.db --namespace shop --format yaml > shop.yaml
  cpbackup extract BACKUP --namespace shop --apply --kubeconfig kc \\
      --to-namespace shop-restored --dry-run=server
  cpbackup extract snapshot.db --prefix /registry/configmaps/ --format json
Guide: docs/extract.md";

/// `doctor --help`.
pub const DOCTOR: &str = "Examples:
  cpbackup doctor                          # this node, with /etc/cpbackup/config.toml
  cpbackup doctor --output json | jq '.checks[] | select(.status != \"ok\")'
  oc debug node/master-0 -- chroot /host cpbackup doctor
  cpbackup --host-root /host doctor --no-write-probe";

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    /// Splits a shell line into words (double quotes group; nothing else is special).
    fn words(line: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut cur = String::new();
        let mut quoted = false;
        let mut any = false;
        for c in line.chars() {
            match c {
                '"' => {
                    quoted = !quoted;
                    any = true;
                }
                ' ' if !quoted => {
                    if any {
                        out.push(std::mem::take(&mut cur));
                        any = false;
                    }
                }
                _ => {
                    cur.push(c);
                    any = true;
                }
            }
        }
        if any {
            out.push(cur);
        }
        out
    }

    #[test]
    fn every_command_has_examples_and_every_example_parses() {
        let cli = crate::cli::Cli::command();
        let mut parsed = 0;
        for sub in cli.get_subcommands() {
            let help = sub
                .get_after_long_help()
                .unwrap_or_else(|| panic!("{} --help has no examples", sub.get_name()))
                .to_string();
            assert!(help.starts_with("Examples:"), "{}", sub.get_name());
            let mut line = String::new();
            for l in help.lines().skip(1) {
                line.push_str(l.trim_start());
                if line.ends_with('\\') {
                    line.pop();
                    continue;
                }
                let cmd = std::mem::take(&mut line);
                let cmd = cmd.split(" # ").next().unwrap();
                let cmd = cmd.split(['|', '>']).next().unwrap().trim();
                let Some(at) = cmd.find("cpbackup ") else {
                    continue;
                };
                let argv = words(&cmd[at..]);
                if let Err(e) = crate::cli::Cli::try_parse_from(&argv) {
                    panic!(
                        "{} --help example does not parse: {cmd}\n{e}",
                        sub.get_name()
                    );
                }
                parsed += 1;
            }
        }
        assert!(parsed >= 30, "only {parsed} examples seen");
    }
}
