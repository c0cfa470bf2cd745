//! Incremental uploads: a content-addressed store on the target, so that files the target
//! already has cost no bytes on the wire.
//!
//! Linux targets keep every file ever uploaded as `<remote base>/.cas/<key>`, the key being the
//! SHA-256 of its content, whether it is executable, and (for files whose date tests may look at,
//! e.g. testdata) its modification time. A synced tree is made of hard links to the store (a copy
//! where linking fails). Next to each tree a manifest `<tree>.harness-tree` records which blob
//! every file is; before an upload one command lists the store and checks the manifest against
//! the tree (each entry must still be the same inode as its blob), so only files whose content
//! changed are sent and only files whose blob changed are relinked.
//!
//! Windows targets have no store: the whole tree is sent as before.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::exec::{ExecError, ExecRequest, Executor, Stream, TargetOs};

/// How long one store command may take (listing, linking).
const COMMAND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);
/// The largest operation list handed to one command (an argument is limited to 128 KiB).
const OPS_CHUNK: usize = 60_000;

/// Lists the store and the tree's manifest, keeping only entries that still are their blob.
const QUERY: &str = r#"c=$1 m=$2 d=$3 tab='	'
mkdir -p -- "$c" || exit 1
echo '#store'
ls -1 -- "$c" || exit 1
echo '#tree'
if [ -f "$m" ]; then
  while IFS="$tab" read -r k p; do
    [ "$d/$p" -ef "$c/$k" ] && printf '%s\t%s\n' "$k" "$p"
  done < "$m" > "$m.new"
  mv -f -- "$m.new" "$m" && cat -- "$m" || exit 1
fi
exit 0"#;

/// Moves new blobs into the store, then applies the operations (one per line, tab-separated):
/// `D rel` make a directory, `F key rel` link a blob, `L target rel` make a symlink, `R rel`
/// remove a file the tree no longer has.
const PLACE: &str = r#"c=$1 m=$2 d=$3 in=$4 ops=$5 tab='	'
mkdir -p -- "$c" "$d" || exit 1
if [ -n "$in" ] && [ -d "$in" ]; then
  set -- "$in"/*
  if [ -e "$1" ]; then mv -f -- "$@" "$c"/ || exit 1; fi
  rm -rf -- "$in"
fi
printf '%s\n' "$ops" | {
  while IFS="$tab" read -r op a b; do
    case $op in
      D) [ -d "$d/$a" ] || mkdir -p -- "$d/$a" || exit 1 ;;
      F) { ln -f -- "$c/$a" "$d/$b" 2>/dev/null ||
           { rm -f -- "$d/$b" && cp -p -- "$c/$a" "$d/$b"; }; } || exit 1
         printf '%s\t%s\n' "$a" "$b" >> "$m" ;;
      L) rm -rf -- "$d/$b" && ln -s -- "$a" "$d/$b" || exit 1 ;;
      R) rm -f -- "$d/$a" ;;
    esac
  done
}"#;

/// One entry of a local tree to sync.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Dir(String),
    File { rel: String, key: String, size: u64 },
    Link { rel: String, target: String },
}

/// A remote tree kept in sync through the target's store. Open one per tree and run; push the
/// tree whole or in parts.
pub struct TreeSync {
    store: String,
    dest: String,
    manifest: String,
    have: BTreeSet<String>,
    placed: BTreeMap<String, String>,
    nonce: u64,
}

/// A key's shape: 64 hex digits, a dot, `x` or `r`, optionally a dot and digits.
fn is_key(s: &str) -> bool {
    s.len() >= 66 && s.as_bytes()[..64].iter().all(u8::is_ascii_hexdigit) && &s[64..65] == "."
}

/// Why a store command failed: the target is gone or crashed (kept as the executor said), or
/// anything else (a message).
enum ShError {
    Target(ExecError),
    Other(String),
}

impl std::fmt::Display for ShError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShError::Target(e) => write!(f, "{e}"),
            ShError::Other(s) => f.write_str(s),
        }
    }
}

fn run_sh(exec: &mut dyn Executor, script: &str, args: &[&str]) -> Result<Vec<String>, ShError> {
    let mut argv = vec!["sh".to_string(), "-c".into(), script.into(), "sh".into()];
    argv.extend(args.iter().map(|a| a.to_string()));
    let req = ExecRequest {
        argv,
        env: Vec::new(),
        cwd: None,
        timeout: COMMAND_TIMEOUT,
        cancel: None,
        dump_on_timeout: false,
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let res = exec.run(&req, &mut |s, l| {
        let l = String::from_utf8_lossy(l).into_owned();
        match s {
            Stream::Stdout => out.push(l),
            Stream::Stderr => err.push(l),
        }
    });
    match res {
        Ok(o) if o.exit_code == Some(0) => Ok(out),
        Ok(o) => Err(ShError::Other(format!(
            "exited with {:?}{}: {}",
            o.exit_code,
            if o.timed_out { " (timed out)" } else { "" },
            err.join(" | ")
        ))),
        Err(e) if e.is_target_lost() || e.is_crash() => Err(ShError::Target(e)),
        Err(e) => Err(ShError::Other(e.to_string())),
    }
}

impl TreeSync {
    /// Asks the target what its store and the tree at `dest` hold. `Ok(None)` when the target
    /// cannot keep a store (Windows, no POSIX shell): upload whole trees instead.
    pub fn open(exec: &mut dyn Executor, dest: &str) -> Result<Option<TreeSync>, ExecError> {
        if exec.os() != TargetOs::Linux {
            return Ok(None);
        }
        let store = exec.remote_dir(".cas");
        let manifest = format!("{}.harness-tree", dest.trim_end_matches('/'));
        let lines = match run_sh(exec, QUERY, &[&store, &manifest, dest]) {
            Ok(l) => l,
            Err(ShError::Target(e)) => return Err(e),
            Err(e) => {
                tracing::warn!("no upload store on the target ({e}): uploading whole trees");
                return Ok(None);
            }
        };
        let mut sync = TreeSync {
            store,
            dest: dest.to_string(),
            manifest,
            have: BTreeSet::new(),
            placed: BTreeMap::new(),
            nonce: std::process::id() as u64 * 1000,
        };
        let mut in_tree = false;
        for l in lines {
            match l.as_str() {
                "#store" => in_tree = false,
                "#tree" => in_tree = true,
                _ if in_tree => {
                    if let Some((k, p)) = l.split_once('\t') {
                        sync.placed.insert(p.to_string(), k.to_string());
                    }
                }
                _ if is_key(&l) => {
                    sync.have.insert(l);
                }
                _ => {}
            }
        }
        Ok(Some(sync))
    }

    /// Blobs the store has.
    pub fn stored(&self) -> usize {
        self.have.len()
    }

    /// Syncs `rels` (files or directories relative to `root`, all of it when empty) to the
    /// tree; with `prune`, files an earlier sync placed that `root` no longer has are removed.
    /// `keep_mtime` says which files keep their modification time (others get the time their
    /// content was first uploaded). Returns the bytes of file content sent.
    pub fn push(
        &mut self,
        exec: &mut dyn Executor,
        root: &Path,
        rels: &[PathBuf],
        keep_mtime: &dyn Fn(&Path) -> bool,
        prune: bool,
    ) -> Result<u64, ExecError> {
        let dest = self.dest.clone();
        let upload_err = |detail: String| ExecError::upload(root, &dest, detail);
        let entries = walk(root, rels, keep_mtime).map_err(|e| upload_err(e.to_string()))?;
        // New blobs travel as one tree into a fresh directory of the store.
        let staged = tempfile::Builder::new()
            .prefix("harness-cas-")
            .tempdir()
            .map_err(|e| upload_err(e.to_string()))?;
        let mut sent = 0;
        let mut new_keys = Vec::new();
        for e in &entries {
            if let Entry::File { rel, key, size } = e
                && !self.have.contains(key)
                && !new_keys.contains(key)
            {
                crate::stage::link_or_copy(&root.join(rel), &staged.path().join(key))
                    .map_err(|e| upload_err(format!("staging {rel}: {e}")))?;
                new_keys.push(key.clone());
                sent += size;
            }
        }
        self.nonce += 1;
        let incoming = if new_keys.is_empty() {
            String::new()
        } else {
            let dir = format!("{}/.in-{}", self.store, self.nonce);
            exec.upload_tree(staged.path(), &dir, &|_| false)?;
            dir
        };
        let ops = self.operations(&entries, prune);
        let chunks = chunk(&ops);
        for (i, text) in chunks.iter().enumerate() {
            let inc = if i == 0 { incoming.as_str() } else { "" };
            let args = [
                self.store.as_str(),
                self.manifest.as_str(),
                self.dest.as_str(),
                inc,
                text.as_str(),
            ];
            if let Err(e) = run_sh(exec, PLACE, &args) {
                return Err(match e {
                    ShError::Target(e) => e,
                    ShError::Other(e) => upload_err(format!("linking files from the store: {e}")),
                });
            }
        }
        self.have.extend(new_keys);
        for e in entries {
            if let Entry::File { rel, key, .. } = e {
                self.placed.insert(rel, key);
            }
        }
        Ok(sent)
    }

    /// What the target must do to make the tree match `entries`.
    fn operations(&mut self, entries: &[Entry], prune: bool) -> Vec<String> {
        let mut ops = Vec::new();
        for e in entries {
            match e {
                Entry::Dir(rel) => ops.push(format!("D\t{rel}")),
                Entry::File { rel, key, .. } if self.placed.get(rel) != Some(key) => {
                    ops.push(format!("F\t{key}\t{rel}"))
                }
                Entry::File { .. } => {}
                Entry::Link { rel, target } => ops.push(format!("L\t{target}\t{rel}")),
            }
        }
        if prune {
            let now: BTreeSet<&str> = entries
                .iter()
                .filter_map(|e| match e {
                    Entry::File { rel, .. } => Some(rel.as_str()),
                    _ => None,
                })
                .collect();
            let gone: Vec<String> = self
                .placed
                .keys()
                .filter(|r| !now.contains(r.as_str()))
                .cloned()
                .collect();
            for r in gone {
                self.placed.remove(&r);
                ops.push(format!("R\t{r}"));
            }
        }
        ops
    }
}

/// Splits operations into newline-joined texts of at most [`OPS_CHUNK`] bytes (always at least
/// one, so that new blobs are moved into the store even when nothing changes in the tree).
fn chunk(ops: &[String]) -> Vec<String> {
    let mut out = vec![String::new()];
    for op in ops {
        let cur = out.last_mut().expect("one chunk");
        if !cur.is_empty() && cur.len() + op.len() + 1 > OPS_CHUNK {
            out.push(String::new());
        }
        let cur = out.last_mut().expect("one chunk");
        if !cur.is_empty() {
            cur.push('\n');
        }
        cur.push_str(op);
    }
    out
}

/// The entries under `root` (restricted to `rels` when not empty), parents before children.
fn walk(
    root: &Path,
    rels: &[PathBuf],
    keep_mtime: &dyn Fn(&Path) -> bool,
) -> std::io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    // The directories that lead to the parts pushed, parents first.
    let mut parents = BTreeSet::new();
    for r in rels {
        for a in r.ancestors().skip(1) {
            if !a.as_os_str().is_empty() {
                parents.insert(a.to_path_buf());
            }
        }
    }
    for p in parents {
        out.push(Entry::Dir(slash(&p)?));
    }
    let mut stack: Vec<PathBuf> = if rels.is_empty() {
        std::fs::read_dir(root)?
            .map(|e| e.map(|e| PathBuf::from(e.file_name())))
            .collect::<Result<_, _>>()?
    } else {
        rels.to_vec()
    };
    stack.sort_by(|a, b| b.cmp(a));
    while let Some(rel) = stack.pop() {
        let path = root.join(&rel);
        let meta = std::fs::symlink_metadata(&path)?;
        let name = slash(&rel)?;
        if meta.is_dir() {
            out.push(Entry::Dir(name));
            let mut kids: Vec<PathBuf> = std::fs::read_dir(&path)?
                .map(|e| e.map(|e| rel.join(e.file_name())))
                .collect::<Result<_, _>>()?;
            kids.sort_by(|a, b| b.cmp(a));
            stack.extend(kids);
        } else if meta.is_symlink() {
            let target = slash(&std::fs::read_link(&path)?)?;
            out.push(Entry::Link { rel: name, target });
        } else if meta.is_file() {
            let key = key_of(&path, &meta, keep_mtime(&rel))?;
            out.push(Entry::File {
                rel: name,
                key,
                size: meta.len(),
            });
        } else {
            return Err(std::io::Error::other(format!(
                "{} is a special file (fifo, socket or device), which cannot be uploaded",
                path.display()
            )));
        }
    }
    Ok(out)
}

/// A path with `/` separators, refused when the store's line format cannot carry it.
fn slash(p: &Path) -> std::io::Result<String> {
    let s = p
        .to_str()
        .ok_or_else(|| std::io::Error::other(format!("{} is not UTF-8", p.display())))?;
    if s.contains(['\n', '\t']) {
        return Err(std::io::Error::other(format!(
            "{s:?} has a tab or newline in its name, which the upload store cannot carry; rename it"
        )));
    }
    Ok(s.replace('\\', "/"))
}

/// `<sha256>.<x|r>[.<mtime>]`.
fn key_of(path: &Path, meta: &std::fs::Metadata, with_mtime: bool) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    use std::os::unix::fs::PermissionsExt as _;
    let x = if meta.permissions().mode() & 0o111 != 0 {
        "x"
    } else {
        "r"
    };
    let mut key = format!("{}.{x}", base16ct::lower::encode_string(&h.finalize()));
    if with_mtime {
        let secs = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        key.push_str(&format!(".{secs}"));
    }
    Ok(key)
}

/// Uploads the tree at `local` to `remote`: through the store when the target keeps one (`sync`
/// from [`TreeSync::open`]), else whole. Returns the bytes of file content sent.
pub fn upload(
    exec: &mut dyn Executor,
    sync: Option<&mut TreeSync>,
    local: &Path,
    remote: &str,
    keep_mtime: &dyn Fn(&Path) -> bool,
    prune: bool,
) -> Result<u64, ExecError> {
    match sync {
        Some(s) => s.push(exec, local, &[], keep_mtime, prune),
        None => {
            exec.upload_tree(local, remote, &|_| false)?;
            Ok(tree_bytes(local))
        }
    }
}

/// Bytes of the regular files under `dir` (what a whole upload of it sends).
pub fn tree_bytes(dir: &Path) -> u64 {
    hostproc::walk(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LocalExecutor;

    fn write(p: &Path, s: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, s).unwrap();
    }

    fn ino(p: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::metadata(p).unwrap().ino()
    }

    #[test]
    fn only_changed_content_is_sent_and_pruned_files_go() {
        let target = tempfile::tempdir().unwrap();
        let src = tempfile::tempdir().unwrap();
        let s = src.path();
        write(&s.join("a/one"), "one");
        write(&s.join("a/dup"), "one");
        write(&s.join("b/testdata/two"), "two!");
        std::os::unix::fs::symlink("two", s.join("b/testdata/link")).unwrap();
        let mut exec = LocalExecutor::new(target.path());
        let dest = exec.remote_dir("tree");
        let keep = |_: &Path| false;

        let mut sync = TreeSync::open(&mut exec, &dest).unwrap().expect("a store");
        assert_eq!(sync.stored(), 0);
        let sent = sync.push(&mut exec, s, &[], &keep, true).unwrap();
        assert_eq!(sent, 3 + 4, "the duplicate content is sent once");
        let d = Path::new(&dest);
        assert_eq!(std::fs::read_to_string(d.join("a/dup")).unwrap(), "one");
        assert_eq!(ino(&d.join("a/one")), ino(&d.join("a/dup")), "one blob");
        assert_eq!(
            std::fs::read_link(d.join("b/testdata/link")).unwrap(),
            Path::new("two")
        );

        // A new run: nothing changed, nothing sent.
        let mut sync = TreeSync::open(&mut exec, &dest).unwrap().unwrap();
        assert_eq!(sync.stored(), 2);
        assert_eq!(sync.push(&mut exec, s, &[], &keep, true).unwrap(), 0);

        // One file changed, one removed, one replaced on the target behind our back.
        write(&s.join("a/one"), "ONE");
        std::fs::remove_file(s.join("a/dup")).unwrap();
        std::fs::remove_file(d.join("b/testdata/two")).unwrap();
        write(&d.join("b/testdata/two"), "tampered");
        let mut sync = TreeSync::open(&mut exec, &dest).unwrap().unwrap();
        let sent = sync.push(&mut exec, s, &[], &keep, true).unwrap();
        assert_eq!(sent, 3, "only the changed content");
        assert_eq!(std::fs::read_to_string(d.join("a/one")).unwrap(), "ONE");
        assert_eq!(
            std::fs::read_to_string(d.join("b/testdata/two")).unwrap(),
            "two!",
            "a file that is no longer its blob is linked again"
        );
        assert!(!d.join("a/dup").exists(), "pruned");
    }

    #[test]
    fn parts_of_a_tree_and_executable_bits() {
        let target = tempfile::tempdir().unwrap();
        let src = tempfile::tempdir().unwrap();
        let s = src.path();
        write(&s.join("p/p.test"), "bin");
        write(&s.join("q/q.test"), "bin");
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(s.join("p/p.test"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        let mut exec = LocalExecutor::new(target.path());
        let dest = exec.remote_dir("t");
        let mut sync = TreeSync::open(&mut exec, &dest).unwrap().unwrap();
        let sent = sync
            .push(
                &mut exec,
                s,
                &[PathBuf::from("p/p.test")],
                &|_| false,
                false,
            )
            .unwrap();
        assert_eq!(sent, 3);
        assert!(!Path::new(&dest).join("q").exists());
        let sent = sync
            .push(&mut exec, s, &[PathBuf::from("q")], &|_| false, false)
            .unwrap();
        assert_eq!(sent, 3, "same content, other mode: another blob");
        let mode = |p: &str| {
            std::fs::metadata(Path::new(&dest).join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o111
        };
        assert_ne!(mode("p/p.test"), 0);
        assert_eq!(mode("q/q.test"), 0);
        assert!(Path::new(&dest).join("p/p.test").exists(), "not pruned");
    }

    #[test]
    fn chunks_stay_small_and_names_that_cannot_travel_are_refused() {
        let ops: Vec<String> = (0..5000).map(|i| format!("F\t{i:0>80}\tx")).collect();
        let c = chunk(&ops);
        assert!(c.len() > 1 && c.iter().all(|t| t.len() <= OPS_CHUNK));
        assert_eq!(c.join("\n").lines().count(), 5000);
        assert_eq!(chunk(&[]), vec![String::new()]);
        assert!(slash(Path::new("a\tb")).is_err());
        assert!(is_key(&format!("{}.x", "a".repeat(64))));
        assert!(!is_key("lost+found"));
    }
}
