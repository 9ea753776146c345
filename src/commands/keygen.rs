//! `cpbackup keygen`: a new age identity file (0600) and its recipient on stdout, or with
//! `--signing` a node signing key and its public key.

use crate::cli::KeygenArgs;
use crate::keys;
use crate::output;
use crate::settings::Settings;

#[derive(serde::Serialize)]
struct Report {
    identity_file: String,
    recipient: String,
    fingerprint: String,
}

#[derive(serde::Serialize)]
struct SigningReport {
    signing_key_file: String,
    public_key: String,
}

/// Writes the key file and prints what readers or writers need of it.
pub fn run(args: &KeygenArgs, s: &Settings) -> anyhow::Result<()> {
    let format = s.output;
    if args.signing {
        let public = crate::store::signing::generate(&args.out)?;
        tracing::info!(
            file = %args.out.display(),
            "signing key written (mode 0600): it goes on the nodes (backup --signing-key); give readers the public key (--trust-signer)"
        );
        let report = SigningReport {
            signing_key_file: args.out.display().to_string(),
            public_key: public,
        };
        return output::emit(format, "SigningKey", &report, |r| r.public_key.clone());
    }
    let recipient = keys::generate_identity_file(&args.out)?;
    tracing::info!(
        file = %args.out.display(),
        "identity written (mode 0600): keep it off the control-plane nodes and store a copy offline"
    );
    let report = Report {
        identity_file: args.out.display().to_string(),
        fingerprint: keys::fingerprint(&recipient),
        recipient,
    };
    output::emit(format, "Key", &report, |r| r.recipient.clone())
}
