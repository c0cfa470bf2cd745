//! What a download is doing, told to the caller as typed events: the library draws nothing, the
//! caller renders them (a bar on a terminal, occasional lines in a log, or nothing).

use std::fmt;
use std::sync::Arc;

/// One step of a download (of a build, an asset, a `url:` source or a file given to
/// [`crate::Fetcher::download_to`]). Events arrive in order on the thread that called the
/// fetcher. A download sends `Started` once bytes begin to flow (not at all when it fails first,
/// or the server says the cached copy is current), and always ends with one of `Finished`,
/// `Unchanged` or `Failed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchEvent {
    /// The server began sending `what`: `total` bytes in all when it said so, of which `from`
    /// were already on disk (a partial file an earlier, interrupted download left; it resumes).
    Started {
        what: String,
        total: Option<u64>,
        from: u64,
    },
    /// `done` bytes of the file (of `total`, when known) are on disk; sent after every chunk.
    Progress { done: u64, total: Option<u64> },
    /// An attempt ended early (`reason`: a dropped connection, silence, a 5xx); the next one asks
    /// for the rest from byte `from`.
    Retrying { reason: String, from: u64 },
    /// A later attempt's answer: the download goes on from byte `from` (0 when the server
    /// started over), `total` bytes in all when it said so.
    Resumed { from: u64, total: Option<u64> },
    /// The file is complete (and its digest checked, when one was expected): `size` bytes, of
    /// which this call received `transferred` over the network.
    Finished { size: u64, transferred: u64 },
    /// The server answered that the cached copy is current (`304 Not Modified`): nothing was
    /// written.
    Unchanged,
    /// The download gave up; the call returns the error.
    Failed,
}

/// Where a fetcher sends its [`FetchEvent`]s ([`crate::FetchOptions::events`]). The default
/// drops them.
#[derive(Clone, Default)]
pub struct FetchSink(Option<Arc<Callback>>);

type Callback = dyn Fn(&FetchEvent) + Send + Sync;

impl FetchSink {
    /// Calls `f` with every event.
    pub fn new(f: impl Fn(&FetchEvent) + Send + Sync + 'static) -> FetchSink {
        FetchSink(Some(Arc::new(f)))
    }

    pub(crate) fn emit(&self, event: FetchEvent) {
        if let Some(f) = &self.0 {
            f(&event);
        }
    }
}

impl fmt::Debug for FetchSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "FetchSink(..)"
        } else {
            "FetchSink(none)"
        })
    }
}
