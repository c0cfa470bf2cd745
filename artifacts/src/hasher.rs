//! Hashing beside the download, and the read buffers it shares with the reading thread.

use std::io::Read;
use std::path::Path;
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::error::{ArtifactError, Result};

/// Read size.
pub(crate) const CHUNK: usize = 256 * 1024;
/// Chunks in flight between the reading thread, the caller and the hashing thread.
pub(crate) const POOL: usize = 8;

/// Read buffers for reuse; taking one never waits.
#[derive(Clone, Default)]
pub(crate) struct FreeList(Arc<Mutex<Vec<Vec<u8>>>>);

impl FreeList {
    pub(crate) fn take(&self) -> Vec<u8> {
        self.0
            .lock()
            .ok()
            .and_then(|mut v| v.pop())
            .unwrap_or_else(|| vec![0u8; CHUNK])
    }

    pub(crate) fn give(&self, buf: Vec<u8>) {
        if let Ok(mut v) = self.0.lock()
            && v.len() < 2 * POOL
        {
            v.push(buf);
        }
    }
}

enum HashMsg {
    Data(Vec<u8>, usize),
    Reset,
}

/// SHA-256 on a worker thread, so hashing overlaps the network reads instead of adding to them.
/// Buffers go back to the free list after hashing; the message order keeps the hash exact.
pub(crate) struct BackgroundHasher {
    tx: Option<SyncSender<HashMsg>>,
    worker: Option<std::thread::JoinHandle<Sha256>>,
}

impl BackgroundHasher {
    pub(crate) fn new(initial: Sha256, free: FreeList) -> BackgroundHasher {
        let (tx, rx) = sync_channel::<HashMsg>(POOL);
        let worker = std::thread::spawn(move || {
            let mut hasher = initial;
            for msg in rx {
                match msg {
                    HashMsg::Data(buf, n) => {
                        hasher.update(&buf[..n]);
                        free.give(buf);
                    }
                    HashMsg::Reset => hasher = Sha256::new(),
                }
            }
            hasher
        });
        BackgroundHasher {
            tx: Some(tx),
            worker: Some(worker),
        }
    }

    pub(crate) fn feed(&mut self, buf: Vec<u8>, n: usize) {
        if let Some(tx) = &self.tx {
            tx.send(HashMsg::Data(buf, n))
                .expect("hashing thread alive");
        }
    }

    pub(crate) fn reset(&mut self) {
        if let Some(tx) = &self.tx {
            tx.send(HashMsg::Reset).expect("hashing thread alive");
        }
    }

    pub(crate) fn finish(mut self) -> Sha256 {
        self.tx = None;
        self.worker
            .take()
            .expect("worker")
            .join()
            .expect("hashing thread")
    }
}

impl Drop for BackgroundHasher {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

/// Feeds an existing partial file into the hasher; returns its length (0 when absent).
pub(crate) fn hash_existing(part: &Path, hasher: &mut Sha256) -> Result<u64> {
    let mut file = match std::fs::File::open(part) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(ArtifactError::io("cannot read partial download", part, e)),
    };
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| ArtifactError::io("cannot read partial download", part, e))?;
        if n == 0 {
            return Ok(len);
        }
        hasher.update(&buf[..n]);
        len += n as u64;
    }
}
