//! The tar stream of a local tree, as uploads send it: regular files, directories and symlinks
//! (not followed), modes and modification times kept; and the writer that hands it to the
//! sending thread in 1 MiB pieces.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::transfer::CHUNK;

/// Sends the tar stream to the sending thread in `CHUNK`-sized pieces.
pub(super) struct ChunkSender {
    pub(super) tx: std::sync::mpsc::SyncSender<Vec<u8>>,
    pub(super) buf: Vec<u8>,
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
pub(super) fn write_tar(dir: &Path, w: &mut dyn Write) -> io::Result<()> {
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
