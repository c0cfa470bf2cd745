//! Moving files: single files over SFTP, directory trees as one tar stream. Sizes are verified.
//!
//! Linux guests: the tar stream goes over one exec channel into `tar -x` (upload) or out of
//! `tar -c` (download). Windows guests: the archive travels over SFTP as one file and `tar.exe`
//! packs/unpacks it in the guest, because feeding binary stdin through PowerShell to a native
//! program is not reliable; it is still one archive over one channel.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::script::builtin;
use super::ssh::BLOCKING_TIMEOUT;
use super::{GuestOs, RemoteCommand, Session, SessionError, Stream};

/// 1 MiB: libssh2 needs large writes to reach full speed (crates.md §2).
const CHUNK: usize = 1 << 20;

/// What a guest path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    Dir,
    File,
    Missing,
}

/// What a tree transfer moved (regular files only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TreeStats {
    pub files: u64,
    pub bytes: u64,
}

/// `relative path ('/'-separated) → size` of every regular file under `root`.
pub fn local_tree_sizes(root: &Path) -> io::Result<BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    for e in hostproc::walk(root) {
        let e = e?;
        if e.file_type().is_file() {
            out.insert(hostproc::rel_slash(root, e.path()), e.metadata()?.len());
        }
    }
    Ok(out)
}

/// Compares what was sent with what arrived; `Err` names the first few differences.
pub fn compare_trees(
    sent: &BTreeMap<String, u64>,
    arrived: &BTreeMap<String, u64>,
) -> Result<TreeStats, String> {
    let mut problems = Vec::new();
    for (path, size) in sent {
        match arrived.get(path) {
            None => problems.push(format!("{path}: missing")),
            Some(s) if s != size => problems.push(format!("{path}: {s} bytes, expected {size}")),
            Some(_) => {}
        }
    }
    if problems.is_empty() {
        Ok(TreeStats {
            files: sent.len() as u64,
            bytes: sent.values().sum(),
        })
    } else {
        let n = problems.len();
        problems.truncate(5);
        Err(format!(
            "{n} file(s) differ after the transfer: {}",
            problems.join("; ")
        ))
    }
}

/// Parses `size<TAB>./path` lines from `tree_sizes.sh`.
fn parse_linux_sizes(stdout: &str) -> BTreeMap<String, u64> {
    stdout
        .lines()
        .filter_map(|l| {
            let (size, path) = l.split_once('\t')?;
            Some((
                path.trim_start_matches("./").to_string(),
                size.trim().parse().ok()?,
            ))
        })
        .collect()
}

/// A path as the guest's SFTP server wants it (Windows: forward slashes).
fn sftp_path(os: GuestOs, remote: &str) -> PathBuf {
    match os {
        GuestOs::Windows => PathBuf::from(remote.replace('\\', "/")),
        GuestOs::Linux => PathBuf::from(remote),
    }
}

fn unique_name(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{prefix}-{}-{nanos}.tar", std::process::id())
}

impl Session {
    fn transfer_err(
        &mut self,
        what: &str,
        e: impl std::fmt::Display,
        conn_level: bool,
    ) -> SessionError {
        if conn_level {
            self.drop_conn();
        }
        SessionError::Transfer {
            what: what.to_string(),
            detail: e.to_string(),
        }
    }

    fn blocking_ssh(&mut self) -> Result<ssh2::Session, SessionError> {
        let s = self.ssh()?.clone();
        s.set_blocking(true);
        s.set_keepalive(true, 0);
        s.set_timeout(BLOCKING_TIMEOUT.as_millis() as u32);
        Ok(s)
    }

    /// Uploads one file over SFTP (1 MiB writes) and checks the remote size. Returns the bytes.
    pub fn upload_file(&mut self, local: &Path, remote: &str) -> Result<u64, SessionError> {
        let what = format!("of {} to guest:{remote}", local.display());
        let mut src = fs::File::open(local)
            .map_err(|e| SessionError::io(format!("opening {}", local.display()), e))?;
        let size = src
            .metadata()
            .map_err(|e| SessionError::io(format!("reading {}", local.display()), e))?
            .len();
        let sess = self.blocking_ssh()?;
        let rpath = sftp_path(self.os(), remote);
        let sftp = match sess.sftp() {
            Ok(s) => s,
            Err(e) => return Err(self.transfer_err(&what, format!("starting SFTP: {e}"), true)),
        };
        let mut dst = match sftp.create(&rpath) {
            Ok(f) => f,
            Err(e) => {
                return Err(self.transfer_err(
                    &what,
                    format!("creating the remote file: {e}"),
                    false,
                ));
            }
        };
        let mut buf = vec![0u8; CHUNK];
        let mut sent = 0u64;
        loop {
            if self.cancel_handle().is_cancelled() {
                return Err(SessionError::Cancelled {
                    what: format!("upload {what}"),
                });
            }
            let n = src
                .read(&mut buf)
                .map_err(|e| SessionError::io(format!("reading {}", local.display()), e))?;
            if n == 0 {
                break;
            }
            if let Err(e) = dst.write_all(&buf[..n]) {
                return Err(self.transfer_err(
                    &what,
                    format!("writing after {sent} bytes: {e}"),
                    true,
                ));
            }
            sent += n as u64;
        }
        if let Err(e) = dst.close() {
            return Err(self.transfer_err(&what, format!("closing the remote file: {e}"), true));
        }
        drop(dst);
        let got = match sftp.stat(&rpath) {
            Ok(st) => st.size.unwrap_or(u64::MAX),
            Err(e) => {
                return Err(self.transfer_err(
                    &what,
                    format!("checking the remote size: {e}"),
                    false,
                ));
            }
        };
        if got != size {
            return Err(self.transfer_err(
                &what,
                format!("remote file has {got} bytes, expected {size}"),
                false,
            ));
        }
        Ok(size)
    }

    /// Downloads one file over SFTP into `local` (written to a temp file, renamed when its size
    /// matches the remote one). Returns the bytes.
    pub fn download_file(&mut self, remote: &str, local: &Path) -> Result<u64, SessionError> {
        let what = format!("of guest:{remote} to {}", local.display());
        let sess = self.blocking_ssh()?;
        let rpath = sftp_path(self.os(), remote);
        let sftp = match sess.sftp() {
            Ok(s) => s,
            Err(e) => return Err(self.transfer_err(&what, format!("starting SFTP: {e}"), true)),
        };
        let mut src = match sftp.open(&rpath) {
            Ok(f) => f,
            Err(e) => {
                return Err(self.transfer_err(
                    &what,
                    format!("opening the remote file: {e}"),
                    false,
                ));
            }
        };
        let size = match src.stat() {
            Ok(st) => st.size.unwrap_or(0),
            Err(e) => {
                return Err(self.transfer_err(
                    &what,
                    format!("reading the remote size: {e}"),
                    false,
                ));
            }
        };
        let dir = local
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        fs::create_dir_all(dir)
            .map_err(|e| SessionError::io(format!("creating {}", dir.display()), e))?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| {
            SessionError::io(format!("creating a temp file in {}", dir.display()), e)
        })?;
        let mut buf = vec![0u8; CHUNK];
        let mut got = 0u64;
        loop {
            if self.cancel_handle().is_cancelled() {
                return Err(SessionError::Cancelled {
                    what: format!("download {what}"),
                });
            }
            let n = match src.read(&mut buf) {
                Ok(n) => n,
                Err(e) => {
                    return Err(self.transfer_err(
                        &what,
                        format!("reading after {got} bytes: {e}"),
                        true,
                    ));
                }
            };
            if n == 0 {
                break;
            }
            tmp.write_all(&buf[..n])
                .map_err(|e| SessionError::io(format!("writing {}", local.display()), e))?;
            got += n as u64;
        }
        if got != size {
            return Err(self.transfer_err(
                &what,
                format!("received {got} bytes, the remote file has {size}"),
                false,
            ));
        }
        tmp.persist(local)
            .map_err(|e| SessionError::io(format!("writing {}", local.display()), e.error))?;
        Ok(size)
    }

    /// Uploads the contents of `local_dir` into `remote_dir` (created if missing) as one tar
    /// stream, then checks every file's size in the guest.
    pub fn upload_tree(
        &mut self,
        local_dir: &Path,
        remote_dir: &str,
    ) -> Result<TreeStats, SessionError> {
        let what = format!("of {} to guest:{remote_dir}", local_dir.display());
        let sent = local_tree_sizes(local_dir)
            .map_err(|e| SessionError::io(format!("listing {}", local_dir.display()), e))?;
        match self.os() {
            GuestOs::Linux => {
                let cmd = RemoteCommand::new([
                    "sh",
                    "-c",
                    "mkdir -p -- \"$1\" && exec tar -x -f - -C \"$1\"",
                    "harness-untar",
                    remote_dir,
                ])
                .timeout(
                    self.options()
                        .default_command_timeout
                        .unwrap_or(BLOCKING_TIMEOUT * 60),
                );
                let mut stderr = String::new();
                let cancel = self.cancel_handle();
                // A producer thread reads the files and builds the tar stream while this thread
                // encrypts and sends: file I/O overlaps with SSH.
                let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
                let status = std::thread::scope(|scope| {
                    let producer = scope.spawn(move || {
                        let mut w = ChunkSender {
                            tx,
                            buf: Vec::with_capacity(CHUNK),
                        };
                        write_tar(local_dir, &mut w).and_then(|_| w.flush())
                    });
                    let mut feed = move |ch: &mut ssh2::Channel| -> io::Result<()> {
                        for chunk in rx.iter() {
                            if cancel.is_cancelled() {
                                return Err(io::Error::other("cancelled"));
                            }
                            ch.write_all(&chunk)?;
                        }
                        Ok(())
                    };
                    let status = self.exec_with_stdin(&cmd, &mut feed, &mut |s, l| {
                        if s == Stream::Stderr {
                            stderr.push_str(l);
                            stderr.push('\n');
                        }
                    });
                    // Dropping the feed drops the receiver, so a producer still sending stops.
                    drop(feed);
                    let produced = producer
                        .join()
                        .unwrap_or_else(|_| Err(io::Error::other("tar producer panicked")));
                    match (status, produced) {
                        (Ok(st), Ok(())) => Ok(st),
                        (Err(e), _) => Err(e),
                        (Ok(_), Err(e)) => Err(SessionError::io(
                            format!("packing {}", local_dir.display()),
                            e,
                        )),
                    }
                })?;
                if !status.success() {
                    return Err(self.transfer_err(
                        &what,
                        format!("tar -x exited with {}: {}", status.code, stderr.trim()),
                        false,
                    ));
                }
            }
            GuestOs::Windows => {
                let tmp = tempfile::NamedTempFile::new()
                    .map_err(|e| SessionError::io("creating a temp archive", e))?;
                {
                    let mut w = BufWriter::with_capacity(CHUNK, tmp.as_file());
                    write_tar(local_dir, &mut w)
                        .and_then(|_| w.flush())
                        .map_err(|e| {
                            SessionError::io(format!("packing {}", local_dir.display()), e)
                        })?;
                }
                let name = unique_name("harness-upload");
                self.upload_file(tmp.path(), &name)?;
                self.run_script(
                    &builtin::UNTAR_WINDOWS,
                    &[("Archive", name), ("Dir", remote_dir.to_string())],
                )?;
            }
        }
        let arrived = self.remote_tree_sizes(remote_dir)?;
        compare_trees(&sent, &arrived).map_err(|e| self.transfer_err(&what, e, false))
    }

    /// Downloads the contents of `remote_dir` into `local_dir` as one tar stream and checks
    /// every file's size against the guest's listing.
    pub fn download_tree(
        &mut self,
        remote_dir: &str,
        local_dir: &Path,
    ) -> Result<TreeStats, SessionError> {
        let what = format!("of guest:{remote_dir} to {}", local_dir.display());
        let expected = self.remote_tree_sizes(remote_dir)?;
        fs::create_dir_all(local_dir)
            .map_err(|e| SessionError::io(format!("creating {}", local_dir.display()), e))?;
        match self.os() {
            GuestOs::Linux => {
                let cmd = RemoteCommand::new(["tar", "-c", "-f", "-", "-C", remote_dir, "."]);
                let line = super::wrap::command_line(GuestOs::Linux, &cmd)?;
                let sess = self.blocking_ssh()?;
                let result = (|| -> Result<(i32, String), String> {
                    let mut ch = sess
                        .channel_session()
                        .map_err(|e| format!("opening a channel: {e}"))?;
                    ch.exec(&line)
                        .map_err(|e| format!("starting tar -c: {e}"))?;
                    ch.send_eof().map_err(|e| e.to_string())?;
                    {
                        let reader = io::BufReader::with_capacity(CHUNK, &mut ch);
                        let mut ar = tar::Archive::new(reader);
                        ar.set_preserve_permissions(true);
                        ar.unpack(local_dir)
                            .map_err(|e| format!("unpacking: {e}"))?;
                    }
                    // Drain what tar may still send (padding), then stderr.
                    io::copy(&mut ch, &mut io::sink()).map_err(|e| e.to_string())?;
                    let mut err = String::new();
                    let _ = ch.stderr().read_to_string(&mut err);
                    ch.wait_close().map_err(|e| e.to_string())?;
                    Ok((ch.exit_status().unwrap_or(-1), err))
                })();
                match result {
                    Ok((0, _)) => {}
                    Ok((code, err)) => {
                        let err: Vec<&str> = err
                            .lines()
                            .filter(|l| !l.starts_with(super::wrap::PID_MARKER))
                            .collect();
                        return Err(self.transfer_err(
                            &what,
                            format!("tar -c exited with {code}: {}", err.join("\n")),
                            false,
                        ));
                    }
                    Err(e) => return Err(self.transfer_err(&what, e, true)),
                }
            }
            GuestOs::Windows => {
                let name = unique_name("harness-download");
                self.run_script(
                    &builtin::TAR_DIR_WINDOWS,
                    &[("Archive", name.clone()), ("Dir", remote_dir.to_string())],
                )?;
                let tmp = tempfile::NamedTempFile::new()
                    .map_err(|e| SessionError::io("creating a temp archive", e))?;
                let fetched = self.download_file(&name, tmp.path());
                let _ = self.run_script(
                    &builtin::TAR_DIR_WINDOWS,
                    &[("Archive", name), ("Remove", "yes".into())],
                );
                fetched?;
                let f = fs::File::open(tmp.path())
                    .map_err(|e| SessionError::io("opening the archive", e))?;
                tar::Archive::new(io::BufReader::with_capacity(CHUNK, f))
                    .unpack(local_dir)
                    .map_err(|e| {
                        SessionError::io(format!("unpacking into {}", local_dir.display()), e)
                    })?;
            }
        }
        let arrived = local_tree_sizes(local_dir)
            .map_err(|e| SessionError::io(format!("listing {}", local_dir.display()), e))?;
        compare_trees(&expected, &arrived).map_err(|e| self.transfer_err(&what, e, false))
    }

    /// What a guest path is (`harness cp` picks file or tree transfer by it).
    pub fn remote_path_kind(&mut self, path: &str) -> Result<PathKind, SessionError> {
        let script = match self.os() {
            GuestOs::Windows => builtin::PATH_KIND_WINDOWS,
            GuestOs::Linux => builtin::PATH_KIND_LINUX,
        };
        let v = self.run_script(&script, &[("Path", path.to_string())])?;
        match v.get("kind").and_then(|k| k.as_str()) {
            Some("dir") => Ok(PathKind::Dir),
            Some("file") => Ok(PathKind::File),
            Some("missing") => Ok(PathKind::Missing),
            _ => Err(SessionError::BadScriptOutput {
                script: script.name.into(),
                reason: "no `kind` field".into(),
                stdout_tail: v.to_string(),
            }),
        }
    }

    /// `relative path → size` of every file under a guest directory.
    pub fn remote_tree_sizes(
        &mut self,
        remote_dir: &str,
    ) -> Result<BTreeMap<String, u64>, SessionError> {
        match self.os() {
            GuestOs::Linux => {
                let cmd = builtin::TREE_SIZES_LINUX.command(&[("Dir", remote_dir.to_string())])?;
                let out = self.exec_capture(&cmd)?;
                super::script::parse_result(
                    builtin::TREE_SIZES_LINUX.name,
                    out.status.code,
                    &out.stdout,
                    &out.stderr,
                )?;
                Ok(parse_linux_sizes(&out.stdout))
            }
            GuestOs::Windows => {
                let v = self.run_script(
                    &builtin::TREE_SIZES_WINDOWS,
                    &[("Dir", remote_dir.to_string())],
                )?;
                let files = v
                    .get("files")
                    .and_then(|f| f.as_array())
                    .cloned()
                    .unwrap_or_default();
                let mut m = BTreeMap::new();
                for f in files {
                    if let (Some(p), Some(s)) = (
                        f.get(0).and_then(|p| p.as_str()),
                        f.get(1).and_then(|s| s.as_u64()),
                    ) {
                        m.insert(p.to_string(), s);
                    }
                }
                Ok(m)
            }
        }
    }
}

/// Sends the tar stream to the sending thread in `CHUNK`-sized pieces.
struct ChunkSender {
    tx: std::sync::mpsc::SyncSender<Vec<u8>>,
    buf: Vec<u8>,
}

impl Write for ChunkSender {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .send(full)
            .map_err(|_| io::Error::other("the upload stopped"))
    }
}

fn mtime_secs(meta: &fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

/// Writes `dir`'s contents as a tar stream (paths relative to `dir`, symlinks kept as links).
fn write_tar(dir: &Path, w: &mut dyn Write) -> io::Result<()> {
    let mut b = tar::Builder::new(w);
    b.follow_symlinks(false);
    b.mode(tar::HeaderMode::Deterministic);
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let mut entries: Vec<_> = fs::read_dir(dir.join(&rel))?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let r = rel.join(e.file_name());
            let ft = e.file_type()?;
            if ft.is_dir() {
                b.append_dir(&r, e.path())?;
                stack.push(r);
            } else {
                // Deterministic headers (no owner), but the file's own modification time:
                // tests and tools in the guest see the dates the files have on the host.
                let meta = fs::symlink_metadata(e.path())?;
                let mut h = tar::Header::new_gnu();
                h.set_metadata_in_mode(&meta, tar::HeaderMode::Deterministic);
                h.set_mtime(mtime_secs(&meta));
                if ft.is_symlink() {
                    b.append_link(&mut h, &r, fs::read_link(e.path())?)?;
                } else {
                    b.append_data(&mut h, &r, fs::File::open(e.path())?)?;
                }
            }
        }
    }
    let w = b.into_inner()?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare() {
        let sent: BTreeMap<String, u64> = [("a".into(), 1), ("d/b".into(), 2)].into();
        let mut got = sent.clone();
        got.insert("extra".into(), 9);
        assert_eq!(
            compare_trees(&sent, &got),
            Ok(TreeStats { files: 2, bytes: 3 })
        );
        got.insert("d/b".into(), 3);
        got.remove("a");
        let e = compare_trees(&sent, &got).unwrap_err();
        assert!(
            e.contains("2 file(s) differ")
                && e.contains("a: missing")
                && e.contains("d/b: 3 bytes, expected 2"),
            "{e}"
        );
    }

    #[test]
    fn linux_sizes() {
        let m = parse_linux_sizes("12\t./a b\n3\t./d/x\n{\"done\":true}\n");
        assert_eq!(m.get("a b"), Some(&12));
        assert_eq!(m.get("d/x"), Some(&3));
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn tar_round_trip_locally() {
        let src = tempfile::tempdir().unwrap();
        fs::create_dir_all(src.path().join("d/e")).unwrap();
        fs::write(src.path().join("d/e/f.txt"), b"hello").unwrap();
        fs::write(src.path().join("top"), vec![7u8; 3000]).unwrap();
        let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000);
        fs::File::options()
            .write(true)
            .open(src.path().join("d/e/f.txt"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        std::os::unix::fs::symlink("top", src.path().join("link")).unwrap();
        let mut bytes = Vec::new();
        write_tar(src.path(), &mut bytes).unwrap();
        let dst = tempfile::tempdir().unwrap();
        tar::Archive::new(&bytes[..]).unpack(dst.path()).unwrap();
        let a = local_tree_sizes(src.path()).unwrap();
        assert_eq!(a, local_tree_sizes(dst.path()).unwrap());
        let when = |p: &Path| fs::metadata(p).unwrap().modified().unwrap();
        assert_eq!(
            when(&dst.path().join("d/e/f.txt")),
            when(&src.path().join("d/e/f.txt")),
            "modification times travel with the files"
        );
        assert_eq!(
            fs::read_link(dst.path().join("link")).unwrap(),
            Path::new("top"),
            "links stay links"
        );
        assert_eq!(a.get("d/e/f.txt"), Some(&5));
        assert_eq!(
            sftp_path(GuestOs::Windows, r"C:\x\y"),
            PathBuf::from("C:/x/y")
        );
    }
}
