//! Safe unpacking: the whole archive is checked before anything is written, nested
//! `build-<cfg>.zip` archives are opened, and a shared top folder (`Debug/`, `Build Debug x64/`)
//! is stripped so the build's files sit at the root of the destination.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use zip::ZipArchive;

use crate::error::{ArtifactError, Result};

/// Bounds that keep a hostile or broken archive from filling the disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackLimits {
    /// Sum of the uncompressed sizes.
    pub max_total_bytes: u64,
    /// Number of entries.
    pub max_entries: usize,
    /// Uncompressed total ÷ archive size (zip bombs compress ~1000:1; real builds ~3:1).
    pub max_ratio: u64,
}

impl Default for UnpackLimits {
    fn default() -> Self {
        UnpackLimits {
            max_total_bytes: 16 << 30,
            max_entries: 200_000,
            max_ratio: 100,
        }
    }
}

/// What got written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Unpacked {
    pub files: u64,
    pub bytes: u64,
}

/// Metadata of one entry, as the central directory states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EntryInfo {
    pub name: String,
    pub is_dir: bool,
    pub is_symlink: bool,
    pub encrypted: bool,
    pub size: u64,
}

/// What to do with an archive, decided before any byte is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Plan {
    /// The archive only wraps another zip (efW's `build-Debug.zip`): open that one.
    Nested { index: usize },
    /// Extract these entries (index, path components relative to the destination, is_dir).
    Extract {
        items: Vec<(usize, Vec<String>, bool)>,
        total: u64,
    },
}

/// Path components of an entry name, or why the name is unsafe. Backslashes count as separators
/// (Windows PowerShell's `Compress-Archive` writes them), so `..\x` is traversal too.
pub(crate) fn safe_components(name: &str) -> std::result::Result<Vec<String>, String> {
    if name.contains('\0') {
        return Err(format!("entry {name:?} has a NUL byte in its name"));
    }
    let normalized = name.replace('\\', "/");
    if normalized.starts_with('/') {
        return Err(format!("entry {name:?} has an absolute path"));
    }
    let comps: Vec<&str> = normalized
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if comps
        .first()
        .is_some_and(|c| c.len() >= 2 && c.as_bytes()[1] == b':')
    {
        return Err(format!("entry {name:?} has a drive-letter path"));
    }
    if comps.contains(&"..") {
        return Err(format!(
            "entry {name:?} climbs out of the archive with '..'"
        ));
    }
    if let Some(c) = comps
        .iter()
        .find(|c| c.contains(':') || c.chars().any(char::is_control))
    {
        return Err(format!(
            "entry {name:?} has a component {c:?} that is not a plain file name"
        ));
    }
    if comps.is_empty() {
        return Err(format!("entry {name:?} has an empty path"));
    }
    Ok(comps.into_iter().map(str::to_string).collect())
}

/// Checks every entry and decides what to extract (pure, so hostile cases are table-tested).
pub(crate) fn plan(
    entries: &[EntryInfo],
    archive_len: u64,
    limits: &UnpackLimits,
) -> std::result::Result<Plan, String> {
    if entries.len() > limits.max_entries {
        return Err(format!(
            "it has {} entries, more than the limit of {}",
            entries.len(),
            limits.max_entries
        ));
    }
    let mut parsed = Vec::with_capacity(entries.len());
    let mut total = 0u64;
    for (i, e) in entries.iter().enumerate() {
        let comps = safe_components(&e.name)?;
        if e.is_symlink {
            return Err(format!("entry {:?} is a symbolic link", e.name));
        }
        if e.encrypted {
            return Err(format!("entry {:?} is encrypted", e.name));
        }
        total = total.saturating_add(e.size);
        parsed.push((i, comps, e.is_dir));
    }
    if total > limits.max_total_bytes {
        return Err(format!(
            "it would unpack to {total} bytes, more than the limit of {} bytes",
            limits.max_total_bytes
        ));
    }
    if total > (1 << 20) && total / archive_len.max(1) > limits.max_ratio {
        return Err(format!(
            "it expands {}:1 ({total} bytes from {archive_len}), past the limit of {}:1 (a zip bomb?)",
            total / archive_len.max(1),
            limits.max_ratio
        ));
    }
    // Duplicates, compared as Windows would (case-insensitively), including file-vs-folder clashes.
    let mut files = HashSet::new();
    let mut dirs = HashSet::new();
    for (_, comps, is_dir) in &parsed {
        let lower: Vec<String> = comps.iter().map(|c| c.to_lowercase()).collect();
        for k in 1..lower.len() {
            dirs.insert(lower[..k].join("/"));
        }
        let key = lower.join("/");
        if *is_dir {
            dirs.insert(key);
        } else if !files.insert(key) {
            return Err(format!("it has two entries named {:?}", comps.join("/")));
        }
    }
    if let Some(clash) = files.iter().find(|f| dirs.contains(*f)) {
        return Err(format!("{clash:?} is both a file and a folder"));
    }
    let file_items: Vec<&(usize, Vec<String>, bool)> =
        parsed.iter().filter(|(_, _, d)| !d).collect();
    if let [only] = file_items.as_slice()
        && only
            .1
            .last()
            .is_some_and(|n| n.to_ascii_lowercase().ends_with(".zip"))
    {
        return Ok(Plan::Nested { index: only.0 });
    }
    // Strip the folders every file shares, so the build's files land at the root.
    let mut prefix: Option<&[String]> = None;
    for (_, comps, _) in &file_items {
        let parent = &comps[..comps.len() - 1];
        prefix = Some(match prefix {
            None => parent,
            Some(p) => {
                let n = p.iter().zip(parent).take_while(|(a, b)| a == b).count();
                &p[..n]
            }
        });
    }
    let strip = prefix.map_or(0, <[String]>::len);
    let items = parsed
        .into_iter()
        .filter(|(_, comps, _)| comps.len() > strip)
        .map(|(i, comps, d)| (i, comps[strip..].to_vec(), d))
        .collect();
    Ok(Plan::Extract { items, total })
}

/// How deep archives may nest (efW: artifact zip → build-Debug.zip).
const MAX_NESTING: u32 = 2;

/// Unpacks `zip` into `dest`, which must not exist yet. On any error `dest` is removed, so no
/// partial directory is left; nothing is ever written outside `dest` and its parent's temp files.
pub fn unpack_zip(zip: &Path, dest: &Path, limits: &UnpackLimits) -> Result<Unpacked> {
    let result = unpack_at(zip, zip, dest, limits, 0);
    if result.is_err() {
        let _ = fs::remove_dir_all(dest);
    }
    result
}

fn unpack_at(
    origin: &Path,
    zip: &Path,
    dest: &Path,
    limits: &UnpackLimits,
    depth: u32,
) -> Result<Unpacked> {
    let (mut archive, entries, archive_len) = open_archive(origin, zip)?;
    match plan(&entries, archive_len, limits).map_err(|why| bad_archive(origin, why))? {
        Plan::Nested { index } => {
            if depth >= MAX_NESTING {
                let why = format!("archives nest more than {MAX_NESTING} deep");
                return Err(bad_archive(origin, why));
            }
            let entry = &entries[index];
            let inner = copy_inner(origin, &mut archive, index, entry, dest, limits)?;
            tracing::debug!(name = %entry.name, "opening nested archive");
            unpack_at(origin, inner.path(), dest, limits, depth + 1)
        }
        Plan::Extract { items, .. } => {
            let unpack = Unpack {
                origin,
                entries: &entries,
                dest,
                limits,
            };
            unpack.extract(&mut archive, items)
        }
    }
}

/// `origin` (the archive the caller gave) cannot be unpacked, and why.
fn bad_archive(origin: &Path, why: String) -> ArtifactError {
    ArtifactError::BadArchive {
        path: origin.to_path_buf(),
        why,
    }
}

/// Opens `zip` and reads what its central directory says of every entry, and the archive's size.
fn open_archive(origin: &Path, zip: &Path) -> Result<(ZipArchive<File>, Vec<EntryInfo>, u64)> {
    let bad = |why| bad_archive(origin, why);
    let file = File::open(zip).map_err(|e| ArtifactError::io("cannot open archive", zip, e))?;
    let archive_len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut archive = ZipArchive::new(file).map_err(|e| {
        bad(format!(
            "it is not a readable zip archive ({e}); truncated or corrupt?"
        ))
    })?;
    if archive.has_duplicate_names() {
        return Err(bad("it has duplicate entry names".into()));
    }
    let mut entries = Vec::with_capacity(archive.len());
    for i in 0..archive.len() {
        let f = archive
            .by_index_raw(i)
            .map_err(|e| bad(format!("entry {i} is unreadable ({e})")))?;
        entries.push(EntryInfo {
            name: f
                .name()
                .map(|n| n.to_string())
                .unwrap_or_else(|_| String::from_utf8_lossy(f.name_raw()).into_owned()),
            // Windows PowerShell 5.1's Compress-Archive writes `\` separators, folders included.
            is_dir: f.is_dir() || f.name_raw().ends_with(b"\\"),
            is_symlink: f.is_symlink(),
            encrypted: f.encrypted(),
            size: f.size(),
        });
    }
    Ok((archive, entries, archive_len))
}

/// Copies the archive inside entry `index` into a temporary file beside `dest`.
fn copy_inner(
    origin: &Path,
    archive: &mut ZipArchive<File>,
    index: usize,
    entry: &EntryInfo,
    dest: &Path,
    limits: &UnpackLimits,
) -> Result<tempfile::NamedTempFile> {
    let scratch_dir = dest.parent().unwrap_or(Path::new("."));
    let inner = tempfile::Builder::new()
        .prefix(".inner-")
        .suffix(".zip")
        .tempfile_in(scratch_dir)
        .map_err(|e| ArtifactError::io("cannot create a temporary file in", scratch_dir, e))?;
    let mut reader = archive
        .by_index(index)
        .map_err(|e| bad_archive(origin, format!("cannot read the inner archive ({e})")))?;
    let mut out = inner.as_file();
    copy_bounded(&mut reader, &mut out, entry.size, limits.max_total_bytes)
        .map_err(|e| e.into_error(origin, &entry.name, inner.path()))?;
    drop(reader);
    Ok(inner)
}

/// One archive's planned extraction into `dest`.
struct Unpack<'a> {
    origin: &'a Path,
    entries: &'a [EntryInfo],
    dest: &'a Path,
    limits: &'a UnpackLimits,
}

impl Unpack<'_> {
    /// Creates `dest` and writes the planned `items` (entry index, path components, is_dir) into
    /// it, each file new and within what is left of the size budget.
    fn extract(
        &self,
        archive: &mut ZipArchive<File>,
        items: Vec<(usize, Vec<String>, bool)>,
    ) -> Result<Unpacked> {
        let dest = self.dest;
        fs::create_dir(dest)
            .map_err(|e| ArtifactError::io("cannot create unpack directory", dest, e))?;
        let mut done = Unpacked::default();
        let mut created: HashSet<PathBuf> = HashSet::new();
        for (index, comps, is_dir) in items {
            let rel: PathBuf = comps.iter().collect();
            let target = dest.join(&rel);
            let parent = if is_dir {
                target.clone()
            } else {
                target.parent().unwrap_or(dest).to_path_buf()
            };
            if created.insert(parent.clone()) {
                fs::create_dir_all(&parent)
                    .map_err(|e| ArtifactError::io("cannot create directory", &parent, e))?;
            }
            if !is_dir {
                let budget = self.limits.max_total_bytes.saturating_sub(done.bytes);
                done.bytes += self.file(archive, index, &target, budget)?;
                done.files += 1;
            }
        }
        Ok(done)
    }

    /// Writes entry `index` to the new file `target`; returns its size.
    fn file(
        &self,
        archive: &mut ZipArchive<File>,
        index: usize,
        target: &Path,
        budget: u64,
    ) -> Result<u64> {
        let info = &self.entries[index];
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(target)
            .map_err(|e| ArtifactError::io("cannot create file", target, e))?;
        let mut entry = archive.by_index(index).map_err(|e| {
            let why = format!("entry {:?} is unreadable ({e})", info.name);
            bad_archive(self.origin, why)
        })?;
        copy_bounded(&mut entry, &mut out, info.size, budget)
            .map_err(|e| e.into_error(self.origin, &info.name, target))
    }
}

/// The sum of the sizes the archive's entries declare (what unpacking it writes, roughly).
pub(crate) fn unpacked_size(zip: &Path) -> std::io::Result<u64> {
    let archive = ZipArchive::new(File::open(zip)?).map_err(std::io::Error::other)?;
    Ok(archive.decompressed_size().map_or(0, |n| n as u64))
}

enum CopyFail {
    Read(std::io::Error),
    Write(std::io::Error),
    TooBig,
    Short(u64),
}

impl CopyFail {
    fn into_error(self, origin: &Path, name: &str, target: &Path) -> ArtifactError {
        let bad = |why: String| ArtifactError::BadArchive {
            path: origin.to_path_buf(),
            why,
        };
        match self {
            CopyFail::Read(e) => bad(format!("entry {name:?} is corrupt ({e})")),
            CopyFail::Write(e) => ArtifactError::io("cannot write", target, e),
            CopyFail::TooBig => bad(format!(
                "entry {name:?} holds more data than its header declares, or the size limit was passed"
            )),
            CopyFail::Short(n) => bad(format!(
                "entry {name:?} ends after {n} bytes, before the size its header declares"
            )),
        }
    }
}

/// Copies exactly `declared` bytes, refusing more (lying headers) and fewer (truncation).
fn copy_bounded(
    src: &mut impl Read,
    dst: &mut impl Write,
    declared: u64,
    budget: u64,
) -> std::result::Result<u64, CopyFail> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        let got = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(got) => got,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyFail::Read(e)),
        };
        n += got as u64;
        if n > declared || n > budget {
            return Err(CopyFail::TooBig);
        }
        dst.write_all(&buf[..got]).map_err(CopyFail::Write)?;
    }
    if n != declared {
        return Err(CopyFail::Short(n));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(name: &str, size: u64) -> EntryInfo {
        EntryInfo {
            name: name.into(),
            is_dir: name.ends_with('/') || name.ends_with('\\'),
            is_symlink: false,
            encrypted: false,
            size,
        }
    }

    #[test]
    fn unsafe_names() {
        let bad = [
            ("../x", "'..'"),
            ("a/../../x", "'..'"),
            ("..\\..\\windows\\x", "'..'"),
            ("/etc/passwd", "absolute"),
            ("\\x", "absolute"),
            ("C:/x", "drive-letter"),
            ("c:x", "drive-letter"),
            ("a/b:stream", "not a plain file name"),
            ("a\0b", "NUL"),
            ("./", "empty"),
        ];
        for (name, why) in bad {
            let err = safe_components(name).unwrap_err();
            assert!(err.contains(why), "{name}: {err}");
        }
        assert_eq!(
            safe_components("Debug\\sub\\a.dll").unwrap(),
            vec!["Debug", "sub", "a.dll"]
        );
        assert_eq!(safe_components("./a//b").unwrap(), vec!["a", "b"]);
    }

    fn extract_paths(p: Plan) -> Vec<String> {
        match p {
            Plan::Extract { items, .. } => items.into_iter().map(|(_, c, _)| c.join("/")).collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn plans_strip_shared_folders_and_spot_nesting() {
        let l = UnpackLimits::default();
        assert_eq!(
            plan(&[e("build-Debug.zip", 10)], 10, &l),
            Ok(Plan::Nested { index: 0 })
        );
        assert_eq!(
            plan(&[e("x/", 0), e("x/build-Debug.zip", 10)], 10, &l),
            Ok(Plan::Nested { index: 1 })
        );
        let got = extract_paths(
            plan(
                &[e("Debug/", 0), e("Debug/a.ps1", 1), e("Debug/sub/b", 1)],
                9,
                &l,
            )
            .unwrap(),
        );
        assert_eq!(got, vec!["a.ps1", "sub/b"]);
        let got = extract_paths(
            plan(
                &[
                    e("Build Debug x64/setup-ebpf.ps1", 1),
                    e("Build Debug x64/x", 1),
                ],
                9,
                &l,
            )
            .unwrap(),
        );
        assert_eq!(got, vec!["setup-ebpf.ps1", "x"]);
        let got = extract_paths(plan(&[e("setup.sh", 1), e("lib/x", 1)], 9, &l).unwrap());
        assert_eq!(got, vec!["setup.sh", "lib/x"]);
        let got = extract_paths(
            plan(
                &[
                    e("x64\\Debug\\", 0),
                    e("x64\\Debug\\a", 1),
                    e("x64\\Debug\\b", 1),
                    e("x64\\Debug\\empty/", 0),
                ],
                9,
                &l,
            )
            .unwrap(),
        );
        assert_eq!(got, vec!["a", "b", "empty"]);
        // Two files, one of them a zip: not a wrapper.
        let got = extract_paths(plan(&[e("a.zip", 1), e("b.txt", 1)], 9, &l).unwrap());
        assert_eq!(got, vec!["a.zip", "b.txt"]);
    }

    #[test]
    fn plans_reject_hostile_archives() {
        let l = UnpackLimits {
            max_total_bytes: 100 << 20,
            max_entries: 5,
            max_ratio: 100,
        };
        let sym = EntryInfo {
            is_symlink: true,
            ..e("Debug/link", 4)
        };
        let enc = EntryInfo {
            encrypted: true,
            ..e("a", 4)
        };
        let cases: Vec<(Vec<EntryInfo>, u64, &str)> = vec![
            (vec![e("a", 1), e("../b", 1)], 9, "'..'"),
            (vec![sym], 9, "symbolic link"),
            (vec![enc], 9, "encrypted"),
            (
                vec![e("Debug/a.dll", 1), e("debug/A.DLL", 1)],
                9,
                "two entries",
            ),
            (vec![e("a", 1), e("a/b", 1)], 9, "both a file and a folder"),
            (vec![e("big", 200 << 20)], 200 << 20, "more than the limit"),
            (vec![e("zeros", 50 << 20)], 50 << 10, "zip bomb"),
            (
                (0..6).map(|i| e(&format!("f{i}"), 1)).collect(),
                9,
                "entries",
            ),
        ];
        for (entries, len, why) in cases {
            let err = plan(&entries, len, &l).unwrap_err();
            assert!(err.contains(why), "{entries:?}: {err}");
        }
    }
}
