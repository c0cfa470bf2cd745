//! Reading install logs: decode whatever encoding Windows tools wrote, and pick the lines that
//! explain a failure.

/// Decodes a log file: UTF-16LE (with BOM, or detected by NUL bytes, as PowerShell 5.1's
/// `Out-File` and some MSI logs write), UTF-8 (BOM stripped), else lossy UTF-8.
pub fn decode_log(bytes: &[u8]) -> String {
    if let Some(rest) = bytes.strip_prefix(&[0xFF, 0xFE]) {
        return utf16le(rest);
    }
    if let Some(rest) = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]) {
        return String::from_utf8_lossy(rest).into_owned();
    }
    let sample = &bytes[..bytes.len().min(512)];
    let odd_nuls = sample
        .iter()
        .skip(1)
        .step_by(2)
        .filter(|b| **b == 0)
        .count();
    if sample.len() >= 4 && odd_nuls * 2 >= sample.len() / 2 {
        return utf16le(bytes);
    }
    String::from_utf8_lossy(bytes).into_owned()
}

fn utf16le(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16_lossy(&units)
}

/// Markers of a failure line in efW's install logs, msiexec verbose logs and setup.sh output.
const FAILURE_MARKERS: &[&str] = &[
    "error",
    "fail",
    "exception",
    "return value 3",
    "cannot",
    "denied",
    "not found",
    "throw",
    "fatal",
];

/// The lines worth showing for a failure: lines with a failure marker (at most `max`, the last
/// ones, since the cause is usually near the end), or the last `max` non-empty lines when none
/// match.
pub fn relevant_lines(text: &str, max: usize) -> Vec<String> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .collect();
    let marked: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| {
            let lower = l.to_ascii_lowercase();
            // msiexec verbose logs print "Return value 1" for success; skip noise like "error 0".
            FAILURE_MARKERS.iter().any(|m| lower.contains(m)) && !lower.contains("errorlevel 0")
        })
        .collect();
    let pick = if marked.is_empty() { &lines } else { &marked };
    let start = pick.len().saturating_sub(max);
    pick[start..].iter().map(|l| l.to_string()).collect()
}

/// Makes a guest path into a local file name (`C:\Users\h\AppData\Local\Temp\setup-ebpf.log` →
/// `setup-ebpf.log`; duplicates get a numeric suffix from the caller).
pub fn local_name(guest_path: &str) -> String {
    let base = guest_path.rsplit(['\\', '/']).next().unwrap_or(guest_path);
    let clean: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() || clean == "." || clean == ".." {
        "log".into()
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_utf16_with_and_without_bom_and_utf8() {
        let text = "line one\r\nError 1603 here\r\n";
        let mut with_bom = vec![0xFF, 0xFE];
        for u in text.encode_utf16() {
            with_bom.extend_from_slice(&u.to_le_bytes());
        }
        assert_eq!(decode_log(&with_bom), text);
        assert_eq!(decode_log(&with_bom[2..]), text);
        let mut utf8 = vec![0xEF, 0xBB, 0xBF];
        utf8.extend_from_slice(text.as_bytes());
        assert_eq!(decode_log(&utf8), text);
        assert_eq!(decode_log(text.as_bytes()), text);
        assert_eq!(decode_log(b""), "");
    }

    #[test]
    fn relevant_lines_prefers_failures_and_keeps_the_last() {
        let log = "start\nMSI (s) Product: eBPF -- Installation failed.\nok\n\
                   Action ended: InstallFinalize. Return value 3.\nend\n";
        assert_eq!(
            relevant_lines(log, 5),
            vec![
                "MSI (s) Product: eBPF -- Installation failed.",
                "Action ended: InstallFinalize. Return value 3."
            ]
        );
        assert_eq!(
            relevant_lines(log, 1),
            vec!["Action ended: InstallFinalize. Return value 3."]
        );
        assert_eq!(relevant_lines("a\n\nb\nc\n", 2), vec!["b", "c"]);
        assert!(relevant_lines("", 3).is_empty());
    }

    #[test]
    fn local_names_are_safe() {
        assert_eq!(
            local_name(r"C:\Users\h\AppData\Local\Temp\setup-ebpf.log"),
            "setup-ebpf.log"
        );
        assert_eq!(local_name("/var/tmp/x/setup log.txt"), "setup_log.txt");
        assert_eq!(local_name(r"C:\.."), "log");
    }
}
