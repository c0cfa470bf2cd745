//! Downloads as the user sees them. `artifacts` draws nothing: it tells its progress as
//! [`FetchEvent`](artifacts::FetchEvent)s, which go to the context's renderer
//! ([`crate::render`]: a bar on a terminal, a line at most every 30 s of a long download in a
//! log, nothing with `--json` or `-q`).

use artifacts::{FetchOptions, FetchSink};

use crate::context::Context;
use crate::render::Event;

/// Options for an artifacts client with this context's cache, Ctrl-C flag, stall allowance and
/// progress rendering; callers add the API URL, token or offline mode where they need them.
pub fn fetch_options(ctx: &Context) -> FetchOptions {
    let mut opts = FetchOptions::new(ctx.paths.cache.clone());
    opts.cancel = Some(ctx.cancel.clone());
    opts.stall_timeout = ctx.config.github.stall();
    let out = ctx.output().clone();
    opts.events = FetchSink::new(move |e| out.emit(&Event::Fetch(e)));
    opts
}
