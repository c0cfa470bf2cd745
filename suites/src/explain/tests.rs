use super::tables::*;
use super::*;

/// (kind, value, name) of an explanation.
type Code<'a> = (Kind, u32, &'a str);

fn codes(v: &[Explanation]) -> Vec<Code<'_>> {
    v.iter()
        .map(|e| (e.kind, e.code, e.name.as_str()))
        .collect()
}

#[test]
fn windows_errno_table_is_msvc_numbering() {
    let mut prev = 0;
    for (c, n) in WINDOWS_ERRNO {
        assert!(*c > prev, "{n} ({c}) out of order");
        prev = *c;
        assert_eq!(
            WINDOWS_ERRNO.iter().filter(|(_, m)| m == n).count(),
            1,
            "{n}"
        );
    }
    for (name, code) in [
        ("EPERM", 1),
        ("EINVAL", 22),
        ("EILSEQ", 42),
        ("EADDRINUSE", 100),
        ("ENOBUFS", 119),
        ("ENOTSUP", 129),
        ("EOTHER", 131),
        ("EWOULDBLOCK", 140),
    ] {
        assert_eq!(errno_name(name).windows, Some(code), "{name}");
    }
}

#[test]
fn linux_errno_table_is_asm_generic() {
    for (name, code) in [
        ("ENOBUFS", 105),
        ("EOPNOTSUPP", 95),
        ("ENOTSUP", 95),
        ("EWOULDBLOCK", 11),
        ("ENOSYS", 38),
        ("ETIMEDOUT", 110),
        ("ENOTRECOVERABLE", 131),
    ] {
        assert_eq!(errno_name(name).linux, Some(code), "{name}");
    }
    assert_eq!(errno_name("EOTHER").linux, None);
}

#[test]
fn ebpf_result_values_follow_the_header_order() {
    assert_eq!(EBPF_RESULTS.len(), 36);
    for (name, value) in [
        ("EBPF_SUCCESS", 0),
        ("EBPF_INVALID_OBJECT", 5),
        ("EBPF_ALREADY_PINNED", 10),
        ("EBPF_NO_MEMORY", 12),
        ("EBPF_ALREADY_INITIALIZED", 15),
        ("EBPF_ACCESS_DENIED", 20),
        ("EBPF_EXTENSION_FAILED_TO_LOAD", 23),
        ("EBPF_INSUFFICIENT_BUFFER", 24),
        ("EBPF_NO_MORE_KEYS", 25),
        ("EBPF_CANCELED", 30),
        ("EBPF_INVALID_STATE", 34),
        ("EBPF_TRY_AGAIN", 35),
    ] {
        assert_eq!(
            EBPF_RESULTS.iter().position(|(n, _)| *n == name),
            Some(value),
            "{name}"
        );
    }
}

#[test]
fn cross_references_resolve() {
    for (r, _) in EBPF_RESULTS {
        let e = ebpf_result_errno(r);
        assert!(
            e.is_empty() || windows_errno_name(errno_name(e).windows.unwrap()) == Some(e),
            "{r} -> {e}"
        );
    }
    for (c, n, r) in WIN32_ERRORS {
        assert!(
            r.is_empty() || EBPF_RESULTS.iter().any(|(x, _)| x == r),
            "{n} ({c}) -> {r}"
        );
    }
    for (n, _) in HINTS {
        assert!(by_name(n, n).is_some(), "hint for unknown name {n}");
    }
}

#[test]
fn scan_finds_each_notation() {
    use Kind::*;
    let cases: &[(&str, &[Code])] = &[
        ("map create: Errno(119)", &[(Errno, 119, "ENOBUFS")]),
        ("update: errno 119", &[(Errno, 119, "ENOBUFS")]),
        ("errno=12", &[(Errno, 12, "ENOMEM")]),
        ("ERRNO: -131", &[(Errno, 131, "EOTHER")]),
        ("ebpf_result 9", &[(EbpfResult, 9, "EBPF_FILE_NOT_FOUND")]),
        ("ebpf_result_t(12)", &[(EbpfResult, 12, "EBPF_NO_MEMORY")]),
        (
            "load: EBPF_NO_MEMORY",
            &[(EbpfResult, 12, "EBPF_NO_MEMORY")],
        ),
        (
            "hr=0x80070490 in trace",
            &[(Win32, 1168, "ERROR_NOT_FOUND")],
        ),
        (
            "failed with error 1168",
            &[(Win32, 1168, "ERROR_NOT_FOUND")],
        ),
        ("Win32 error 5", &[(Win32, 5, "ERROR_ACCESS_DENIED")]),
        (
            "GetLastError()=87",
            &[(Win32, 87, "ERROR_INVALID_PARAMETER")],
        ),
        (
            "status ERROR_NOT_FOUND",
            &[(Win32, 1168, "ERROR_NOT_FOUND")],
        ),
        ("RPC_S_CALL_FAILED", &[(Win32, 1726, "RPC_S_CALL_FAILED")]),
        // Not codes, or not ones the tables know.
        ("error 2 of 3", &[]),
        ("EBPF_SUCCESS", &[]),
        ("EBPF_ATTACH_TYPE_XDP", &[]),
        ("Errno(524)", &[]),
        ("exit status 1", &[]),
        ("ebpf_result 99", &[]),
        ("ERRNO_FOO 12", &[]),
        ("0x80070000", &[]),
    ];
    for (text, want) in cases {
        assert_eq!(codes(&scan(text)), *want, "{text}");
    }
}

#[test]
fn scan_deduplicates_in_order_of_appearance() {
    let text = "Errno(119)\nEBPF_NO_MEMORY errno 119\nagain Errno(119) and error 1168";
    let got = scan(text);
    assert_eq!(
        codes(&got),
        vec![
            (Kind::Errno, 119, "ENOBUFS"),
            (Kind::EbpfResult, 12, "EBPF_NO_MEMORY"),
            (Kind::Win32, 1168, "ERROR_NOT_FOUND"),
        ]
    );
    assert_eq!(got[0].found, "Errno(119)");
}

#[test]
fn texts_say_windows_name_linux_number_and_efw_meaning() {
    let e = &scan("Errno(119)")[0];
    assert_eq!(
        e.short(),
        "Errno(119) = ENOBUFS (119 on Windows, 105 on Linux)"
    );
    let t = e.text();
    for want in [
        "errno 119 is ENOBUFS in Windows' errno.h",
        "Linux's ENOBUFS is 105",
        "EBPF_INSUFFICIENT_BUFFER (a buffer of insufficient size was supplied)",
    ] {
        assert!(t.contains(want), "{want:?} not in {t}");
    }
    assert_eq!(e.ebpf_results, vec!["EBPF_INSUFFICIENT_BUFFER"]);

    let t = scan("EBPF_NO_MEMORY")[0].text();
    assert!(t.contains("ebpf_result_t 12 is EBPF_NO_MEMORY"), "{t}");
    assert!(
        t.contains("errno ENOMEM (12 on Windows, 12 on Linux)"),
        "{t}"
    );

    let e = &scan("0x80070490")[0];
    assert_eq!(e.short(), "0x80070490 = ERROR_NOT_FOUND (Win32 error 1168)");
    let t = e.text();
    assert!(
        t.contains("Win32 error 1168 (0x490) is ERROR_NOT_FOUND"),
        "{t}"
    );
    assert!(t.contains("EBPF_KEY_NOT_FOUND"), "{t}");
    assert!(t.contains("ENOENT (2 on Windows, 2 on Linux)"), "{t}");

    let e = &scan("errno 131")[0];
    assert!(e.text().contains("Linux has no EOTHER"), "{}", e.text());
    assert!(e.ebpf_results.contains(&"EBPF_FAILED".to_string()));
    assert!(e.ebpf_results.contains(&"EBPF_TRY_AGAIN".to_string()));
    assert!(!e.ebpf_results.contains(&"EBPF_NO_MEMORY".to_string()));

    let e = &scan("errno 11")[0];
    assert!(
        e.text().contains("the same number on Linux"),
        "{}",
        e.text()
    );
    assert!(e.ebpf_results.is_empty());

    let e = win32(577, "577").unwrap();
    assert_eq!(e.errno, None);
    assert!(e.text().contains("test signing"), "{}", e.text());
}

#[test]
fn queries_explain_numbers_names_and_notations() {
    use Kind::*;
    let cases: &[(&str, &[Code])] = &[
        ("119", &[(Errno, 119, "ENOBUFS")]),
        (
            "12",
            &[(Errno, 12, "ENOMEM"), (EbpfResult, 12, "EBPF_NO_MEMORY")],
        ),
        ("1168", &[(Win32, 1168, "ERROR_NOT_FOUND")]),
        ("-22", &[(Errno, 22, "EINVAL")]),
        ("Errno(119)", &[(Errno, 119, "ENOBUFS")]),
        ("enobufs", &[(Errno, 119, "ENOBUFS")]),
        ("EBPF_TRY_AGAIN", &[(EbpfResult, 35, "EBPF_TRY_AGAIN")]),
        (
            "ebpf_result 24",
            &[(EbpfResult, 24, "EBPF_INSUFFICIENT_BUFFER")],
        ),
        ("0x80070490", &[(Win32, 1168, "ERROR_NOT_FOUND")]),
        ("0x490", &[(Win32, 1168, "ERROR_NOT_FOUND")]),
        ("error_not_found", &[(Win32, 1168, "ERROR_NOT_FOUND")]),
    ];
    for (q, want) in cases {
        let got = explain_query(q).unwrap_or_else(|e| panic!("{q}: {e}"));
        assert_eq!(codes(&got), *want, "{q}");
    }
    for q in ["", "bogus", "99999", "ENAVAIL", "0x12345678", "0xZZ"] {
        let e = explain_query(q).unwrap_err();
        assert!(e.to_string().contains("harness knows"), "{q}: {e}");
    }
}
