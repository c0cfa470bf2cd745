//! What a cached build held when it was unpacked: every file's size, modification time and
//! SHA-256, kept in `builds/<key>/manifest.json`. The check on use is cheap (one `stat` per file);
//! only a file whose time changed but whose size did not is hashed, to tell a touch from an edit.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{ArtifactError, Result};

/// One file of a build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: u128,
    pub sha256: String,
}

/// Every file of a build, by path relative to the build root (`/`-separated).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub files: BTreeMap<String, FileRecord>,
}

/// Files under `root` (relative path, metadata); symbolic links are reported as files so a check
/// notices them (an unpacked build never has any).
fn walk(root: &Path) -> Result<Vec<(String, std::fs::Metadata)>> {
    let mut out = Vec::new();
    for entry in hostproc::walk(root) {
        let entry = entry.map_err(|e| walk_error(root, e))?;
        if entry.file_type().is_dir() {
            continue;
        }
        let md = entry.metadata().map_err(|e| walk_error(root, e))?;
        out.push((hostproc::rel_slash(root, entry.path()), md));
    }
    Ok(out)
}

/// A walk that could not read a directory or stat a file under `root`.
pub(crate) fn walk_error(root: &Path, e: walkdir::Error) -> ArtifactError {
    let path = e.path().unwrap_or(root).to_path_buf();
    ArtifactError::io("cannot read", &path, e.into())
}

fn mtime_ns(md: &std::fs::Metadata) -> u128 {
    md.modified()
        .ok()
        .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos())
}

pub(crate) fn hash_file(path: &Path) -> Result<String> {
    let mut file =
        std::fs::File::open(path).map_err(|e| ArtifactError::io("cannot open", path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| ArtifactError::io("cannot read", path, e))?;
        if n == 0 {
            return Ok(base16ct::lower::encode_string(&hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
}

impl Manifest {
    /// Records every file under `root`.
    pub fn record(root: &Path) -> Result<Manifest> {
        let mut files = BTreeMap::new();
        for (rel, md) in walk(root)? {
            let sha256 = hash_file(&root.join(&rel))?;
            files.insert(
                rel,
                FileRecord {
                    size: md.len(),
                    mtime_ns: mtime_ns(&md),
                    sha256,
                },
            );
        }
        Ok(Manifest { files })
    }

    /// What differs between the manifest and `root` now, at most a few items (empty: unchanged).
    pub fn differences(&self, root: &Path) -> Result<Vec<String>> {
        let mut found = Vec::new();
        let mut seen = 0usize;
        for (rel, md) in walk(root)? {
            let Some(rec) = self.files.get(&rel) else {
                found.push(format!("{rel} was added"));
                continue;
            };
            seen += 1;
            if !md.is_file() {
                found.push(format!("{rel} is no longer a regular file"));
            } else if md.len() != rec.size {
                found.push(format!(
                    "{rel} changed size ({} → {} bytes)",
                    rec.size,
                    md.len()
                ));
            } else if mtime_ns(&md) != rec.mtime_ns && hash_file(&root.join(&rel))? != rec.sha256 {
                found.push(format!("{rel} changed content (same size, new sha256)"));
            }
        }
        if seen < self.files.len() {
            let present: std::collections::HashSet<String> =
                walk(root)?.into_iter().map(|(r, _)| r).collect();
            found.extend(
                self.files
                    .keys()
                    .filter(|k| !present.contains(*k))
                    .map(|k| format!("{k} is missing")),
            );
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn edits_removals_additions_and_touches() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        fs::create_dir_all(d.join("sub")).unwrap();
        fs::write(d.join("a.ps1"), "exit 0").unwrap();
        fs::write(d.join("sub/b.dll"), "MZ12").unwrap();
        let m = Manifest::record(d).unwrap();
        assert_eq!(m.files.len(), 2);
        assert!(m.differences(d).unwrap().is_empty());

        // A touch (new time, same bytes) is not a change; a same-size edit is.
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
        fs::File::options()
            .write(true)
            .open(d.join("a.ps1"))
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert!(m.differences(d).unwrap().is_empty());
        fs::write(d.join("sub/b.dll"), "MZ34").unwrap();
        assert_eq!(
            m.differences(d).unwrap(),
            vec!["sub/b.dll changed content (same size, new sha256)"]
        );
        fs::write(d.join("sub/b.dll"), "MZ1234").unwrap();
        assert_eq!(
            m.differences(d).unwrap(),
            vec!["sub/b.dll changed size (4 → 6 bytes)"]
        );
        fs::remove_file(d.join("sub/b.dll")).unwrap();
        fs::write(d.join("evil.ps1"), "x").unwrap();
        let mut got = m.differences(d).unwrap();
        got.sort();
        assert_eq!(got, vec!["evil.ps1 was added", "sub/b.dll is missing"]);
    }
}
