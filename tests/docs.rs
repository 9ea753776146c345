//! The documentation against the real thing: every `cpbackup …` command line in a `sh`/`bash`
//! block of README.md and docs/*.md is accepted by the command-line parser (flags and
//! subcommands exist, values are valid), and the `bash` blocks of docs/operations.md run, in
//! order, against a real etcd.

use cpbackup_testkit as support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::*;

fn doc_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut v = vec![root.join("README.md")];
    let mut docs: Vec<_> = fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    v.extend(docs);
    v
}

/// (info string, body) of every fenced block.
fn blocks(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(l) = lines.next() {
        if let Some(info) = l.strip_prefix("```")
            && !info.is_empty()
        {
            let mut body = String::new();
            for b in lines.by_ref() {
                if b.starts_with("```") {
                    break;
                }
                body.push_str(b);
                body.push('\n');
            }
            out.push((info.trim().to_owned(), body));
        }
    }
    out
}

/// Shell-like words of a line, quotes removed, `$VAR` kept as a word; stops at a comment.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    for ch in line.chars() {
        match (quote, ch) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(ch);
                any = true;
            }
            (None, '#') if cur.is_empty() => break,
            (None, c) if c.is_whitespace() => {
                if !cur.is_empty() || any {
                    out.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            (None, c) => cur.push(c),
        }
    }
    if !cur.is_empty() || any {
        out.push(cur);
    }
    out
}

/// The argument lists of every `cpbackup` invocation in a block.
fn invocations(body: &str) -> Vec<Vec<String>> {
    let joined = body.replace("\\\n", " ");
    let mut out = Vec::new();
    for line in joined.lines() {
        let w = words(line);
        let mut i = 0;
        while i < w.len() {
            if w[i] == "cpbackup" && (i == 0 || ["&&", ";", "|", "||"].contains(&w[i - 1].as_str()))
            {
                let args: Vec<String> = w[i + 1..]
                    .iter()
                    .take_while(|a| {
                        !["|", "||", "&&", ";", ">", "2>", "<"].contains(&a.as_str())
                            && !a.starts_with('>')
                    })
                    .cloned()
                    .collect();
                out.push(args);
            }
            i += 1;
        }
    }
    out
}

#[test]
fn every_documented_cpbackup_command_line_parses() {
    let t = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for f in doc_files() {
        let text = fs::read_to_string(&f).unwrap();
        for (info, body) in blocks(&text) {
            if !(info == "sh" || info == "bash") {
                continue;
            }
            for args in invocations(&body) {
                let mut c = cpbackup(t.path());
                c.args(&args).arg("--help");
                let o = run(c);
                assert!(
                    o.status.success(),
                    "{}: `cpbackup {}` is not a valid command line: {}",
                    f.display(),
                    args.join(" "),
                    stderr(&o)
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 30, "only {checked} command lines found");
}

#[test]
fn the_operators_guide_bash_blocks_run() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let etcd = Etcd::start(Version::V35, dir, "127.0.0.1", free_port(), None);
    etcd.seed("/registry/configmaps/demo/cm-", 50, 200);
    let guide =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operations.md"))
            .unwrap();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_cpbackup"))
        .parent()
        .unwrap()
        .to_path_buf();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
    let work = dir.join("work");
    fs::create_dir_all(&work).unwrap();
    fs::write(dir.join("empty.toml"), "").unwrap();
    let mut ran = 0;
    for (info, body) in blocks(&guide) {
        if info != "bash" {
            continue;
        }
        let o = Command::new("bash")
            .args(["-euo", "pipefail", "-c", &body])
            .current_dir(&work)
            .env("PATH", &path)
            .env("ETCD", &etcd.endpoint)
            .env("CPBACKUP_CONFIG", dir.join("empty.toml"))
            .env("CPBACKUP_STATE_DIR", dir.join("state"))
            .env_remove("CPBACKUP_STORE")
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "block failed:\n{body}\n{}{}",
            stdout(&o),
            stderr(&o)
        );
        ran += 1;
    }
    assert!(ran >= 2);
    assert!(stdout_of_list(&work).contains("complete"));
}

fn stdout_of_list(work: &Path) -> String {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cpbackup"));
    c.args(["list", "--store"])
        .arg(work.join("backups"))
        .env("CPBACKUP_CONFIG", "/dev/null");
    stdout(&c.output().unwrap())
}

#[test]
fn words_and_invocations() {
    assert_eq!(
        words(r#"cpbackup x --a "b c" # note"#),
        ["cpbackup", "x", "--a", "b c"]
    );
    let inv = invocations(
        "cpbackup list --store s3://b/p | head\nfoo && cpbackup verify --latest \\\n  --identity k\n",
    );
    assert_eq!(
        inv,
        vec![
            vec!["list", "--store", "s3://b/p"],
            vec!["verify", "--latest", "--identity", "k"]
        ]
    );
}

#[test]
fn the_iam_permissions_are_listed_once() {
    // Two lists drift apart; the guides link to the one in docs/configuration.md.
    let with: Vec<String> = doc_files()
        .into_iter()
        .filter(|p| {
            fs::read_to_string(p)
                .unwrap()
                .contains("s3:PutObjectRetention")
        })
        .map(|p| p.display().to_string())
        .collect();
    assert_eq!(with.len(), 1, "{with:?}");
    assert!(with[0].ends_with("docs/configuration.md"), "{with:?}");
    let ops = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operations.md"))
        .unwrap();
    assert!(ops.contains("configuration.md#iam-permissions"));
}
