//! Staging what a suite uploads (host mode: every `testdata` directory; guest mode: the module)
//! so that the target sees what a test on the host would see.
//!
//! Regular files are hard-linked (copied, with their modification time, across filesystems).
//! Symbolic links: a relative link that resolves inside the module to something that is uploaded
//! too stays a link on a Linux target; on Windows (creating links there needs a privilege), and
//! for links that leave the module or point at something not uploaded, the target's content is
//! copied in its place. A dangling link, a link loop or a special file (fifo, socket, device)
//! cannot be uploaded: each is reported in the run's warnings, never skipped silently.

use std::io;
use std::path::{Component, Path, PathBuf};

use crate::exec::TargetOs;

/// Deepest directory nesting followed through links that leave the tree (guards link loops).
const MAX_DEPTH: usize = 64;

/// Stages parts of a module for upload and collects what could not be staged.
pub struct Stager<'a> {
    module: PathBuf,
    os: TargetOs,
    uploaded: &'a dyn Fn(&Path) -> bool,
    /// What could not be uploaded, and why (one line each).
    pub warnings: Vec<String>,
}

impl<'a> Stager<'a> {
    /// A stager for `module` and a target OS; `uploaded` says whether a path relative to the
    /// module is part of the upload (so that a link to it can stay a link).
    pub fn new(module: &Path, os: TargetOs, uploaded: &'a dyn Fn(&Path) -> bool) -> Self {
        Stager {
            module: module
                .canonicalize()
                .unwrap_or_else(|_| module.to_path_buf()),
            os,
            uploaded,
            warnings: Vec::new(),
        }
    }

    fn rel<'p>(&self, p: &'p Path) -> &'p Path {
        p.strip_prefix(&self.module).unwrap_or(p)
    }

    /// Stages the module directory `src` (inside the module) at `dst`, leaving out what `skip`
    /// rejects (paths relative to the module).
    pub fn dir(&mut self, src: &Path, dst: &Path, skip: &dyn Fn(&Path) -> bool) -> io::Result<()> {
        std::fs::create_dir_all(dst)?;
        let mut entries: Vec<_> = std::fs::read_dir(src)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            if skip(self.rel(&path)) {
                continue;
            }
            self.entry(&path, &dst.join(e.file_name()), skip)?;
        }
        Ok(())
    }

    /// Stages one entry of the module (file, directory or link) at `dst`.
    pub fn entry(
        &mut self,
        src: &Path,
        dst: &Path,
        skip: &dyn Fn(&Path) -> bool,
    ) -> io::Result<()> {
        let ft = std::fs::symlink_metadata(src)?.file_type();
        if ft.is_dir() {
            self.dir(src, dst, skip)
        } else if ft.is_file() {
            link_or_copy(src, dst)
        } else if ft.is_symlink() {
            self.symlink(src, dst)
        } else {
            self.warn(
                src,
                "is a special file (fifo, socket or device): not uploaded",
            );
            Ok(())
        }
    }

    fn warn(&mut self, src: &Path, why: &str) {
        let w = format!("{} {why}", self.rel(src).display());
        if !self.warnings.contains(&w) {
            self.warnings.push(w);
        }
    }

    fn symlink(&mut self, src: &Path, dst: &Path) -> io::Result<()> {
        let target = std::fs::read_link(src)?;
        let Ok(resolved) = src.canonicalize() else {
            self.warn(
                src,
                &format!(
                    "is a dangling symlink (-> {}): not uploaded; fix or remove the link",
                    target.display()
                ),
            );
            return Ok(());
        };
        let inside = resolved
            .strip_prefix(&self.module)
            .ok()
            .map(Path::to_path_buf);
        let keep = self.os == TargetOs::Linux
            && target.is_relative()
            && inside.as_deref().is_some_and(|r| (self.uploaded)(r))
            && stays_inside(src, &target, &self.module);
        if keep {
            let _ = std::fs::remove_file(dst);
            #[cfg(unix)]
            return std::os::unix::fs::symlink(&target, dst);
        }
        self.copy_resolved(src, &resolved, dst, 0)
    }

    /// Copies what a link points at (following further links) to `dst`.
    fn copy_resolved(
        &mut self,
        link: &Path,
        resolved: &Path,
        dst: &Path,
        depth: usize,
    ) -> io::Result<()> {
        let meta = std::fs::metadata(resolved)?;
        if meta.is_file() {
            return link_or_copy(resolved, dst);
        }
        if !meta.is_dir() {
            self.warn(
                link,
                "points at a special file (fifo, socket or device): not uploaded",
            );
            return Ok(());
        }
        if depth >= MAX_DEPTH {
            self.warn(
                link,
                "leads into a directory loop: copied only to a depth of 64",
            );
            return Ok(());
        }
        std::fs::create_dir_all(dst)?;
        for e in std::fs::read_dir(resolved)? {
            let e = e?;
            let p = e.path();
            match p.canonicalize() {
                Ok(r) => self.copy_resolved(link, &r, &dst.join(e.file_name()), depth + 1)?,
                Err(_) => self.warn(
                    link,
                    &format!(
                        "leads to a dangling symlink ({}): not uploaded",
                        p.display()
                    ),
                ),
            }
        }
        Ok(())
    }
}

/// Whether a relative link target, read lexically from the link's directory, stays inside
/// `module` (a link that leaves the module and comes back is copied, as its path would not
/// exist on the target).
fn stays_inside(link: &Path, target: &Path, module: &Path) -> bool {
    let Some(dir) = link.parent() else {
        return false;
    };
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let Ok(rel) = dir.strip_prefix(module) else {
        return false;
    };
    let mut depth = rel.components().count() as i64;
    for c in target.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            _ => return false,
        }
        if depth < 0 {
            return false;
        }
    }
    true
}

/// Hard-links `src` at `dst`, or copies it keeping its modification time.
pub fn link_or_copy(src: &Path, dst: &Path) -> io::Result<()> {
    let _ = std::fs::remove_file(dst);
    if std::fs::hard_link(src, dst).is_ok() {
        return Ok(());
    }
    copy_keeping_mtime(src, dst)
}

/// Copies `src` to `dst` and gives the copy `src`'s modification time.
pub fn copy_keeping_mtime(src: &Path, dst: &Path) -> io::Result<()> {
    std::fs::copy(src, dst)?;
    let mtime = std::fs::metadata(src)?.modified()?;
    std::fs::File::options()
        .write(true)
        .open(dst)?
        .set_modified(mtime)
}

/// Host mode's upload: whether a path relative to the module lies in a `testdata` directory
/// that the staging copies (not under a hidden, `_` or `vendor` directory).
pub fn in_testdata(rel: &Path) -> bool {
    for c in rel.components() {
        let Component::Normal(n) = c else {
            return false;
        };
        let n = n.to_string_lossy();
        if n == "testdata" {
            return true;
        }
        if n.starts_with('.') || n.starts_with('_') || n == "vendor" {
            return false;
        }
    }
    false
}

impl Stager<'_> {
    /// Host mode: stages every `testdata` directory of the module (a real directory or a link to
    /// one) at the same relative place under `staging`, so that tests reading `testdata/…` or
    /// `../testdata/…` find their files.
    pub fn testdata(&mut self, staging: &Path) -> io::Result<()> {
        let module = self.module.clone();
        self.walk_for_testdata(&module, staging)
    }

    fn walk_for_testdata(&mut self, dir: &Path, staging: &Path) -> io::Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || name.starts_with('_') || name == "vendor" {
                continue;
            }
            let path = e.path();
            let rel = self.rel(&path).to_path_buf();
            let ft = e.file_type()?;
            if name == "testdata" && (ft.is_dir() || ft.is_symlink()) {
                self.entry(&path, &staging.join(rel), &|_| false)?;
            } else if ft.is_dir() {
                self.walk_for_testdata(&path, staging)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A module with: testdata/real.txt, testdata/inside -> real.txt, testdata/dir -> sub
    /// (a linked directory), testdata/outside -> ../../outside.txt (leaves the module),
    /// testdata/elsewhere -> ../other.txt (in the module, not uploaded in host mode),
    /// testdata/dangling -> nope.
    fn module() -> (tempfile::TempDir, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let m = t.path().join("mod");
        std::fs::create_dir_all(m.join("pkg/testdata/sub")).unwrap();
        std::fs::write(t.path().join("outside.txt"), "outside").unwrap();
        std::fs::write(m.join("go.mod"), "module m\n").unwrap();
        std::fs::write(m.join("pkg/other.txt"), "other").unwrap();
        std::fs::write(m.join("pkg/testdata/real.txt"), "real").unwrap();
        std::fs::write(m.join("pkg/testdata/sub/x.txt"), "x").unwrap();
        let td = m.join("pkg/testdata");
        let ln =
            |target: &str, name: &str| std::os::unix::fs::symlink(target, td.join(name)).unwrap();
        ln("real.txt", "inside");
        ln("sub", "dir");
        ln("../../../outside.txt", "outside");
        ln("../other.txt", "elsewhere");
        ln("nope", "dangling");
        (t, m)
    }

    fn kind(p: &Path) -> &'static str {
        match std::fs::symlink_metadata(p) {
            Ok(m) if m.file_type().is_symlink() => "link",
            Ok(m) if m.is_dir() => "dir",
            Ok(_) => "file",
            Err(_) => "missing",
        }
    }

    #[test]
    fn links_stay_links_on_linux_only_inside_the_upload() {
        let (_t, m) = module();
        let out = tempfile::tempdir().unwrap();
        let mut s = Stager::new(&m, TargetOs::Linux, &in_testdata);
        s.testdata(out.path()).unwrap();
        let td = out.path().join("pkg/testdata");
        let got: Vec<(&str, &str)> = [
            "real.txt",
            "inside",
            "dir",
            "outside",
            "elsewhere",
            "dangling",
        ]
        .iter()
        .map(|n| (*n, kind(&td.join(n))))
        .collect();
        assert_eq!(
            got,
            [
                ("real.txt", "file"),
                ("inside", "link"),
                ("dir", "link"),
                ("outside", "file"),
                ("elsewhere", "file"),
                ("dangling", "missing"),
            ]
        );
        assert_eq!(std::fs::read_to_string(td.join("inside")).unwrap(), "real");
        assert_eq!(std::fs::read_to_string(td.join("dir/x.txt")).unwrap(), "x");
        assert_eq!(
            std::fs::read_to_string(td.join("outside")).unwrap(),
            "outside"
        );
        assert_eq!(
            std::fs::read_to_string(td.join("elsewhere")).unwrap(),
            "other"
        );
        assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
        assert!(
            s.warnings[0].contains("pkg/testdata/dangling")
                && s.warnings[0].contains("dangling symlink"),
            "{:?}",
            s.warnings
        );
    }

    #[test]
    fn windows_gets_copies_and_the_whole_module_keeps_inner_links() {
        let (_t, m) = module();
        let out = tempfile::tempdir().unwrap();
        let mut s = Stager::new(&m, TargetOs::Windows, &|_| true);
        s.dir(&m, out.path(), &|_| false).unwrap();
        let td = out.path().join("pkg/testdata");
        for n in ["inside", "outside", "elsewhere"] {
            assert_eq!(kind(&td.join(n)), "file", "{n}");
        }
        assert_eq!(kind(&td.join("dir")), "dir");
        assert_eq!(std::fs::read_to_string(td.join("dir/x.txt")).unwrap(), "x");
        assert_eq!(s.warnings.len(), 1);

        // Guest mode on Linux uploads the whole module: a link to ../other.txt stays a link.
        let out = tempfile::tempdir().unwrap();
        let mut s = Stager::new(&m, TargetOs::Linux, &|_| true);
        s.dir(&m, out.path(), &|_| false).unwrap();
        assert_eq!(kind(&out.path().join("pkg/testdata/elsewhere")), "link");
        assert_eq!(kind(&out.path().join("pkg/testdata/outside")), "file");
    }

    #[test]
    fn copies_keep_their_modification_time() {
        let src = tempfile::tempdir().unwrap();
        let f = src.path().join("a");
        std::fs::write(&f, "a").unwrap();
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        std::fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(old)
            .unwrap();
        // /dev/shm is another filesystem than the temp dir on most hosts: a real copy there.
        let dst_dir =
            tempfile::tempdir_in("/dev/shm").unwrap_or_else(|_| tempfile::tempdir().unwrap());
        let dst = dst_dir.path().join("a");
        link_or_copy(&f, &dst).unwrap();
        assert_eq!(std::fs::metadata(&dst).unwrap().modified().unwrap(), old);
    }
}
