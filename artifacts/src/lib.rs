//! Find, download, verify, cache and unpack eBPF for Windows builds (and extension builds).
//!
//! [`Fetcher::fetch`] turns a [`SourceSpec`] (`main`, `run:<id>`, `release:<v>`, `file:<p>`,
//! `url:<u>`) plus a [`BuildSourceConfig`] into a [`Build`]: an unpacked directory with the files at
//! its root, its [`Layout`], and where it came from ([`BuildMeta`]). Downloads happen once per
//! artifact id / asset id / content hash; the cache ([`Cache`]) serves repeats and offline runs.

pub mod cache;
pub mod config;
mod download;
pub mod error;
mod event;
pub mod fetch;
pub mod github;
mod hasher;
mod http;
pub mod layout;
mod lock;
pub mod manifest;
pub mod secret;
pub mod select;
pub mod source;
mod space;
pub mod unpack;

pub use cache::{Build, BuildMeta, Cache};
pub use config::BuildSourceConfig;
pub use download::Downloaded;
pub use error::ArtifactError;
pub use event::{FetchEvent, FetchSink};
pub use fetch::{DEFAULT_API_URL, FetchOptions, Fetcher};
pub use hostproc::Cancel;
pub use http::{RetryPolicy, parse_digest};
pub use layout::{Layout, check_build};
pub use secret::{Secret, token_from_env};
pub use source::SourceSpec;
pub use unpack::{UnpackLimits, Unpacked, unpack_zip};
