//! `--source SPEC`: which build the user asked for.

use std::fmt;
use std::path::PathBuf;

use crate::error::{ArtifactError, Result};

/// Where a build comes from. Parsed from `main`, `run:<id>`, `release:<version>`, `file:<path>`,
/// `url:<https://…>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// The newest completed run of the configured workflow/branch/event with a live artifact.
    Main,
    /// One workflow run, by id.
    Run(u64),
    /// A release, by version without the `v`/`Release-v` prefix (both tag styles are tried).
    Release(String),
    /// A local zip, or an already-unpacked build directory (a local msbuild output).
    File(PathBuf),
    /// Any zip reachable over HTTP(S), optionally with its expected digest: `url:<u>#sha256=<hex>`.
    Url(String),
}

impl SourceSpec {
    /// Parses the user's text; errors name the accepted forms.
    pub fn parse(text: &str) -> Result<SourceSpec> {
        let spec = text.trim();
        let bad = |why: &str| ArtifactError::BadSource {
            spec: text.to_string(),
            why: why.to_string(),
        };
        if spec.eq_ignore_ascii_case("main") {
            return Ok(SourceSpec::Main);
        }
        let Some((kind, rest)) = spec.split_once(':') else {
            return Err(bad("unknown form"));
        };
        let rest = rest.trim();
        match kind.to_ascii_lowercase().as_str() {
            "run" => rest
                .parse::<u64>()
                .ok()
                .filter(|id| *id > 0)
                .map(SourceSpec::Run)
                .ok_or_else(|| bad("a run id is a positive number, as in run:12345678901")),
            "release" => {
                let version = rest
                    .strip_prefix("Release-v")
                    .or_else(|| rest.strip_prefix('v'))
                    .unwrap_or(rest);
                let ok = !version.is_empty()
                    && version
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || ".-_+".contains(c));
                if ok {
                    Ok(SourceSpec::Release(version.to_string()))
                } else {
                    Err(bad(
                        "a release version looks like 1.4.0 (tags v1.4.0 and Release-v1.4.0 are both tried)",
                    ))
                }
            }
            "file" if !rest.is_empty() => Ok(SourceSpec::File(PathBuf::from(rest))),
            "file" => Err(bad("file: needs a path to a zip or a build directory")),
            "url" if rest.starts_with("https://") || rest.starts_with("http://") => {
                if let Some((_, fragment)) = rest.split_once('#')
                    && fragment.starts_with("sha256=")
                    && url_digest(rest).is_none()
                {
                    return Err(bad(
                        "#sha256= needs the 64 hex digits of the zip's SHA-256, as in url:https://host/b.zip#sha256=<hex>",
                    ));
                }
                Ok(SourceSpec::Url(rest.to_string()))
            }
            "url" => Err(bad("url: needs an http:// or https:// address")),
            "http" | "https" => Err(bad("write url:<address> for a plain URL")),
            _ => Err(bad("unknown kind before ':'")),
        }
    }

    /// Short kind name used in cache metadata and JSON (`main`, `run`, `release`, `file`, `url`).
    pub fn kind(&self) -> &'static str {
        match self {
            SourceSpec::Main => "main",
            SourceSpec::Run(_) => "run",
            SourceSpec::Release(_) => "release",
            SourceSpec::File(_) => "file",
            SourceSpec::Url(_) => "url",
        }
    }
}

/// The address of a `url:` source without its `#sha256=<hex>` suffix.
pub fn url_address(text: &str) -> &str {
    match text.split_once('#') {
        Some((base, _)) if url_digest(text).is_some() => base,
        _ => text,
    }
}

/// The expected digest (lowercase hex) a `url:` source gives with `#sha256=<hex>`.
pub fn url_digest(text: &str) -> Option<String> {
    let (_, fragment) = text.rsplit_once('#')?;
    let hex = fragment.strip_prefix("sha256=")?;
    (hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_lowercase())
}

impl fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceSpec::Main => f.write_str("main"),
            SourceSpec::Run(id) => write!(f, "run:{id}"),
            SourceSpec::Release(v) => write!(f, "release:{v}"),
            SourceSpec::File(p) => write!(f, "file:{}", p.display()),
            SourceSpec::Url(u) => write!(f, "url:{u}"),
        }
    }
}

impl std::str::FromStr for SourceSpec {
    type Err = ArtifactError;
    fn from_str(s: &str) -> Result<Self> {
        SourceSpec::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        let ok: &[(&str, SourceSpec)] = &[
            ("main", SourceSpec::Main),
            (" MAIN ", SourceSpec::Main),
            ("run:123", SourceSpec::Run(123)),
            ("release:1.4.0", SourceSpec::Release("1.4.0".into())),
            ("release:v1.4.0", SourceSpec::Release("1.4.0".into())),
            (
                "release:Release-v0.21.0",
                SourceSpec::Release("0.21.0".into()),
            ),
            ("release:1.0.0-rc1", SourceSpec::Release("1.0.0-rc1".into())),
            ("file:/tmp/a b.zip", SourceSpec::File("/tmp/a b.zip".into())),
            (
                "url:https://x.test/a.zip",
                SourceSpec::Url("https://x.test/a.zip".into()),
            ),
        ];
        for (text, want) in ok {
            assert_eq!(&SourceSpec::parse(text).unwrap(), want, "{text}");
        }
    }

    #[test]
    fn rejects_bad_forms_with_a_reason() {
        for text in [
            "",
            "latest",
            "run:",
            "run:abc",
            "run:0",
            "release:",
            "release:1 2",
            "file:",
            "url:ftp://x",
            "url:https://x/a.zip#sha256=abc",
            "https://x/a.zip",
        ] {
            let err = SourceSpec::parse(text).unwrap_err().to_string();
            assert!(
                err.contains("invalid build source") && err.contains("run:<id>"),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn url_digests() {
        let hex = "AB".repeat(32);
        let text = format!("https://x.test/a.zip#sha256={hex}");
        assert_eq!(
            SourceSpec::parse(&format!("url:{text}")).unwrap(),
            SourceSpec::Url(text.clone())
        );
        assert_eq!(url_digest(&text), Some("ab".repeat(32)));
        assert_eq!(url_address(&text), "https://x.test/a.zip");
        assert_eq!(
            url_address("https://x.test/a.zip#top"),
            "https://x.test/a.zip#top"
        );
        assert_eq!(url_digest("https://x.test/a.zip"), None);
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "main",
            "run:9",
            "release:1.4.0",
            "file:x.zip",
            "url:http://127.0.0.1:1/a.zip",
        ] {
            assert_eq!(SourceSpec::parse(text).unwrap().to_string(), text);
        }
    }
}
