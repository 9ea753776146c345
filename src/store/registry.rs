//! Store kinds by URL scheme: a location with no scheme is a local directory, `s3://…` is S3.
//! Adding a kind is its folder under `store/` plus one line in [`SCHEMES`].

use super::{LocalStore, Store, StoreSpec};
use crate::error::usage;

/// Opens a store of one kind from its spec.
type Opener = fn(&StoreSpec) -> anyhow::Result<Box<dyn Store>>;

/// Every remote kind: its scheme (before `://`) and how to open it.
const SCHEMES: &[(&str, Opener)] = &[("s3", |spec| {
    Ok(Box::new(super::s3::S3Store::new(
        &spec.url,
        spec.s3.clone(),
    )?))
})];

/// The scheme of a location, or `None` for a local directory.
pub fn scheme(location: &str) -> Option<&str> {
    location.split_once("://").map(|(s, _)| s)
}

/// Opens a store from its location (`--store`): a directory, or a URL of a registered scheme.
pub fn open(spec: &StoreSpec) -> anyhow::Result<Box<dyn Store>> {
    let Some(want) = scheme(&spec.url) else {
        return Ok(Box::new(LocalStore::new(&spec.url)));
    };
    let (_, opener) = SCHEMES.iter().find(|(s, _)| *s == want).ok_or_else(|| {
        let known: Vec<String> = SCHEMES.iter().map(|(s, _)| format!("{s}://")).collect();
        usage(format!(
            "store {:?}: unknown scheme {want}://; give a directory or one of {}",
            spec.url,
            known.join(", ")
        ))
    })?;
    opener(spec)
}

/// Opens every configured store.
pub fn open_all(specs: &[StoreSpec]) -> anyhow::Result<Vec<Box<dyn Store>>> {
    specs.iter().map(open).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(url: &str) -> StoreSpec {
        StoreSpec {
            url: url.into(),
            s3: Default::default(),
        }
    }

    #[test]
    fn schemes_pick_the_kind() {
        assert!(spec("/var/lib/cpbackup/backups").is_local());
        assert!(!spec("s3://bucket/prefix").is_local());
        assert!(open(&spec("/tmp/x")).unwrap().location().contains("/tmp/x"));
        let e = open(&spec("gs://bucket/p")).err().unwrap();
        assert_eq!(crate::error::exit_code(&e), 2);
        assert!(e.to_string().contains("unknown scheme gs://"), "{e}");
        assert!(e.to_string().contains("s3://"), "{e}");
    }
}
