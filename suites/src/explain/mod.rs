//! Error explanations: what `Errno(119)`, `EBPF_NO_MEMORY` or `0x80070490` in a failing test's
//! output mean on eBPF for Windows.
//!
//! ebpf-go on Windows gets `errno` values from efW's `ebpfapi.dll`, which uses the MSVC C
//! runtime's numbering: `Errno(119)` is `ENOBUFS` there, while Linux's `ENOBUFS` is 105 (and
//! Linux's 119 is the unrelated `ENAVAIL`). efW makes those `errno`s from its own
//! `ebpf_result_t`, which it makes from Win32 error codes. [`scan`] finds such codes in text;
//! [`explain_query`] explains what a person typed (`harness explain`). The tables, with the
//! headers they come from, are in [`tables`].

pub mod tables;

use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use tables::{EBPF_RESULTS, HINTS, LINUX_ERRNO, WIN32_ERRORS, WINDOWS_ERRNO, ebpf_result_errno};

/// Which numbering a code belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A C runtime `errno` (MSVC numbering on Windows).
    Errno,
    /// efW's `ebpf_result_t`.
    EbpfResult,
    /// A Win32 error code (`GetLastError()`, or inside an `HRESULT` `0x8007xxxx`).
    Win32,
}

/// An errno name with its number on each side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrnoName {
    /// The name, e.g. `ENOBUFS`.
    pub name: String,
    /// Its value in MSVC's `errno.h`.
    pub windows: Option<u32>,
    /// Its value on Linux (asm-generic).
    pub linux: Option<u32>,
}

/// One explained code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    /// The text as found (or typed), e.g. `Errno(119)`.
    pub found: String,
    /// Which numbering.
    pub kind: Kind,
    /// The value in that numbering.
    pub code: u32,
    /// Its name in that numbering (`ENOBUFS`, `EBPF_NO_MEMORY`, `ERROR_NOT_FOUND`).
    pub name: String,
    /// The errno ebpf-go sees: the code itself for an errno, else what efW turns it into.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub errno: Option<ErrnoName>,
    /// The `ebpf_result_t`s behind it (for an errno: every result efW turns into it).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub ebpf_results: Vec<String>,
    /// What it usually means for efW, in a sentence.
    pub meaning: String,
}

/// A code `harness explain` does not know.
#[derive(Debug, thiserror::Error)]
#[error(
    "`{query}` is not a code harness knows: give an errno (`119`, `Errno(119)`, `ENOBUFS`), an \
     ebpf_result_t (`EBPF_NO_MEMORY`, `ebpf_result 12`) or a Win32 error (`1168`, \
     `ERROR_NOT_FOUND`, `0x80070490`); the tables cover MSVC's errno.h, efW's ebpf_result.h and \
     the Win32 codes efW translates"
)]
pub struct UnknownCode {
    /// What was asked.
    pub query: String,
}

fn windows_errno_name(code: u32) -> Option<&'static str> {
    WINDOWS_ERRNO
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, n)| *n)
}

fn errno_name(name: &str) -> ErrnoName {
    ErrnoName {
        name: name.to_string(),
        windows: WINDOWS_ERRNO
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(c, _)| *c),
        linux: LINUX_ERRNO
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, c, _)| *c),
    }
}

fn hint(name: &str) -> Option<&'static str> {
    HINTS.iter().find(|(n, _)| *n == name).map(|(_, h)| *h)
}

fn result_doc(name: &str) -> &'static str {
    EBPF_RESULTS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, d)| *d)
        .unwrap_or("")
}

fn with_hint(mut s: String, names: &[&str]) -> String {
    for h in names.iter().filter_map(|n| hint(n)) {
        s.push_str("; ");
        s.push_str(h);
    }
    s
}

/// The errno `code` as MSVC numbers it, or `None` if MSVC's errno.h has no such value.
pub fn errno(code: u32, found: &str) -> Option<Explanation> {
    let name = windows_errno_name(code)?;
    let results: Vec<String> = EBPF_RESULTS
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| ebpf_result_errno(n) == name)
        .map(str::to_string)
        .collect();
    let meaning = if results.is_empty() {
        "efW's ebpf_result_to_errno never returns it; it comes from the C runtime or from ebpf-go"
            .to_string()
    } else {
        let from: Vec<String> = results
            .iter()
            .map(|r| format!("{r} ({})", result_doc(r)))
            .collect();
        format!("efW returns it for {}", from.join(", "))
    };
    let mut names = vec![name];
    if results.len() == 1 {
        names.push(results[0].as_str());
    }
    Some(Explanation {
        found: found.to_string(),
        kind: Kind::Errno,
        code,
        name: name.to_string(),
        errno: Some(errno_name(name)),
        ebpf_results: results.clone(),
        meaning: with_hint(meaning, &names),
    })
}

/// The `ebpf_result_t` with value `code`.
pub fn ebpf_result(code: u32, found: &str) -> Option<Explanation> {
    let (name, doc) = EBPF_RESULTS.get(code as usize)?;
    let e = ebpf_result_errno(name);
    let errno = (!e.is_empty()).then(|| errno_name(e));
    let meaning = match &errno {
        Some(en) => format!("{doc}; ebpf-go sees errno {}", en.text()),
        None => (*doc).to_string(),
    };
    Some(Explanation {
        found: found.to_string(),
        kind: Kind::EbpfResult,
        code,
        name: name.to_string(),
        errno,
        ebpf_results: vec![name.to_string()],
        meaning: with_hint(meaning, &[name, e]),
    })
}

/// The Win32 error `code`, if it is one efW translates or one the tables know.
pub fn win32(code: u32, found: &str) -> Option<Explanation> {
    let (_, name, result) = WIN32_ERRORS.iter().find(|(c, _, _)| *c == code)?;
    let (meaning, errno, results) = if result.is_empty() {
        (
            String::from("efW does not translate it into an ebpf_result_t"),
            None,
            Vec::new(),
        )
    } else {
        let e = errno_name(ebpf_result_errno(result));
        (
            format!(
                "efW turns it into {result} ({}); ebpf-go sees errno {}",
                result_doc(result),
                e.text()
            ),
            Some(e),
            vec![result.to_string()],
        )
    };
    Some(Explanation {
        found: found.to_string(),
        kind: Kind::Win32,
        code,
        name: name.to_string(),
        errno,
        ebpf_results: results,
        meaning: with_hint(meaning, &[name, result]),
    })
}

fn by_name(name: &str, found: &str) -> Option<Explanation> {
    if let Some(i) = EBPF_RESULTS.iter().position(|(n, _)| *n == name) {
        return ebpf_result(i as u32, found);
    }
    if let Some((c, _, _)) = WIN32_ERRORS.iter().find(|(_, n, _)| *n == name) {
        return win32(*c, found);
    }
    let (c, _) = WINDOWS_ERRNO.iter().find(|(_, n)| *n == name)?;
    errno(*c, found)
}

impl ErrnoName {
    /// `ENOBUFS (119 on Windows, 105 on Linux)`.
    pub fn text(&self) -> String {
        let side = |v: Option<u32>| v.map_or("undefined".to_string(), |v| v.to_string());
        format!(
            "{} ({} on Windows, {} on Linux)",
            self.name,
            side(self.windows),
            side(self.linux)
        )
    }
}

impl Explanation {
    /// The code named in a few words, for a JUnit failure message:
    /// `Errno(119) = ENOBUFS (119 on Windows, 105 on Linux)`.
    pub fn short(&self) -> String {
        let named = match (self.kind, &self.errno) {
            (Kind::Errno, Some(e)) => e.text(),
            (Kind::EbpfResult, _) => format!("{} (ebpf_result_t {})", self.name, self.code),
            _ => format!("{} (Win32 error {})", self.name, self.code),
        };
        if self.found == self.name {
            named
        } else {
            format!("{} = {named}", self.found)
        }
    }

    /// One line for a person: what the code is and what it usually means for efW.
    pub fn text(&self) -> String {
        let what = match self.kind {
            Kind::Errno => {
                let linux = match self.errno.as_ref().and_then(|e| e.linux) {
                    Some(l) if l == self.code => "the same number on Linux".to_string(),
                    Some(l) => format!("Linux's {} is {l}", self.name),
                    None => format!("Linux has no {}", self.name),
                };
                format!(
                    "errno {} is {} in Windows' errno.h ({linux})",
                    self.code, self.name
                )
            }
            Kind::EbpfResult => format!("efW ebpf_result_t {} is {}", self.code, self.name),
            Kind::Win32 => format!(
                "Win32 error {} (0x{:X}) is {}",
                self.code, self.code, self.name
            ),
        };
        format!("{}: {what}: {}", self.found, self.meaning)
    }
}

static ERRNO_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\berrno\s*(?:\(\s*-?(\d{1,5})\s*\)|(?:[=:]\s*|\s+)-?(\d{1,5})\b)")
        .expect("errno regex")
});
static RESULT_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\bebpf_result(?:_t)?\s*(?:\(\s*(\d{1,3})\s*\)|(?:[=:]\s*|\s+)(\d{1,3})\b)")
        .expect("ebpf_result regex")
});
static NAME_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b(?:EBPF_[A-Z_]+|ERROR_[A-Z_]+|RPC_S_CALL_FAILED)\b").expect("name regex")
});
static HRESULT_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\b0x8007([0-9a-f]{4})\b").expect("HRESULT regex"));
static WIN32_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\b(win32 error|windows error|system error|winerror|getlasterror\(\)|last error|error code|error)\s*[=:]?\s*(\d{1,5})\b",
    )
    .expect("Win32 regex")
});

/// Every efW or Windows error code in `text`, explained, first occurrence first, each code
/// once. Plain `error N` counts only for N ≥ 100 (so that `error 2` in prose is left alone);
/// `win32 error N`, `GetLastError() = N` and `0x8007xxxx` count for every code the tables know.
pub fn scan(text: &str) -> Vec<Explanation> {
    let mut found: Vec<(usize, Explanation)> = Vec::new();
    let num = |s: &str| s.parse::<u32>().ok();
    let either = |c: &regex::Captures| c.get(1).or(c.get(2)).and_then(|m| num(m.as_str()));
    for c in ERRNO_RE.captures_iter(text) {
        let m = c.get(0).expect("match");
        if let Some(e) = either(&c).and_then(|n| errno(n, m.as_str())) {
            found.push((m.start(), e));
        }
    }
    for c in RESULT_RE.captures_iter(text) {
        let m = c.get(0).expect("match");
        if let Some(e) = either(&c).and_then(|n| ebpf_result(n, m.as_str())) {
            found.push((m.start(), e));
        }
    }
    for m in NAME_RE.find_iter(text) {
        if m.as_str() == "EBPF_SUCCESS" {
            continue;
        }
        if let Some(e) = by_name(m.as_str(), m.as_str()) {
            found.push((m.start(), e));
        }
    }
    for c in HRESULT_RE.captures_iter(text) {
        let m = c.get(0).expect("match");
        if let Some(e) = u32::from_str_radix(&c[1], 16)
            .ok()
            .and_then(|n| win32(n, m.as_str()))
        {
            found.push((m.start(), e));
        }
    }
    for c in WIN32_RE.captures_iter(text) {
        let m = c.get(0).expect("match");
        let plain = c[1].eq_ignore_ascii_case("error");
        match num(&c[2]) {
            Some(n) if !plain || n >= 100 => {
                if let Some(e) = win32(n, m.as_str()) {
                    found.push((m.start(), e));
                }
            }
            _ => {}
        }
    }
    found.sort_by_key(|(at, _)| *at);
    let mut out: Vec<Explanation> = Vec::new();
    for (_, e) in found {
        if !out.iter().any(|o| o.kind == e.kind && o.code == e.code) {
            out.push(e);
        }
    }
    out
}

/// Explains what a person typed: anything [`scan`] finds (`Errno(119)`, `EBPF_NO_MEMORY`,
/// `0x80070490`, `error 1168`), an errno name (`ENOBUFS`), a negative number (libbpf's
/// `-errno`), or a bare number, which gets every reading the tables have (errno,
/// `ebpf_result_t`, Win32).
pub fn explain_query(query: &str) -> Result<Vec<Explanation>, UnknownCode> {
    let q = query.trim();
    let unknown = || UnknownCode {
        query: query.to_string(),
    };
    let found = scan(q);
    if !found.is_empty() {
        return Ok(found);
    }
    let out: Vec<Explanation> = if let Some(n) = q.strip_prefix('-').and_then(|n| n.parse().ok()) {
        // libbpf-style `-errno`.
        errno(n, q).into_iter().collect()
    } else if let Ok(n) = q.parse::<u32>() {
        [errno(n, q), ebpf_result(n, q), win32(n, q)]
            .into_iter()
            .flatten()
            .collect()
    } else if let Some(hex) = q.strip_prefix("0x").or_else(|| q.strip_prefix("0X")) {
        u32::from_str_radix(hex, 16)
            .ok()
            .and_then(|n| win32(n & 0xFFFF, q).filter(|_| n <= 0xFFFF))
            .into_iter()
            .collect()
    } else {
        by_name(&q.to_ascii_uppercase(), q).into_iter().collect()
    };
    if out.is_empty() {
        Err(unknown())
    } else {
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
