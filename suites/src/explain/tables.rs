//! The pure tables behind [`super`], copied by hand from public headers.
//!
//! Sources (read 2026-12 from repository snapshots; re-check them when efW adds a result code):
//! - Windows errno: MSVC UCRT `errno.h` — the classic values 1–42 and the "POSIX supplement"
//!   100–140 (`EADDRINUSE 100` … `ENOBUFS 119` … `EOTHER 131` … `EWOULDBLOCK 140`).
//! - Linux errno: `include/uapi/asm-generic/errno-base.h` (1–34) and `asm-generic/errno.h`
//!   (35–133); glibc adds `ENOTSUP` as an alias of `EOPNOTSUPP` (95).
//! - `ebpf_result_t`: microsoft/ebpf-for-windows `include/ebpf_result.h` (enum order, so the
//!   value is the index; verified against the snapshot whose last entry is
//!   `EBPF_TRY_AGAIN, // = 35` and `EBPF_RESULT_COUNT (EBPF_TRY_AGAIN + 1)`).
//! - `ebpf_result_t` → errno: efW `libs/api_common/api_common.hpp` `ebpf_result_to_errno()`
//!   (libbpf's `libbpf_result_err()` and `bpf()` set `errno` with it; results it does not list
//!   become `EOTHER`).
//! - Win32 → `ebpf_result_t`: efW `win32_error_code_to_ebpf_result()` (its comment: "consistent
//!   with `_ebpf_result_mapping[]` in ebpf_error.c"); the Win32 values are from the Windows SDK
//!   `winerror.h`.

/// MSVC UCRT `errno.h`: (value, name). `EDEADLOCK` (= `EDEADLK`) and `STRUNCATE` (80) are left
/// out: the first is an alias, the second is never an `errno` from efW.
pub const WINDOWS_ERRNO: &[(u32, &str)] = &[
    (1, "EPERM"),
    (2, "ENOENT"),
    (3, "ESRCH"),
    (4, "EINTR"),
    (5, "EIO"),
    (6, "ENXIO"),
    (7, "E2BIG"),
    (8, "ENOEXEC"),
    (9, "EBADF"),
    (10, "ECHILD"),
    (11, "EAGAIN"),
    (12, "ENOMEM"),
    (13, "EACCES"),
    (14, "EFAULT"),
    (16, "EBUSY"),
    (17, "EEXIST"),
    (18, "EXDEV"),
    (19, "ENODEV"),
    (20, "ENOTDIR"),
    (21, "EISDIR"),
    (22, "EINVAL"),
    (23, "ENFILE"),
    (24, "EMFILE"),
    (25, "ENOTTY"),
    (27, "EFBIG"),
    (28, "ENOSPC"),
    (29, "ESPIPE"),
    (30, "EROFS"),
    (31, "EMLINK"),
    (32, "EPIPE"),
    (33, "EDOM"),
    (34, "ERANGE"),
    (36, "EDEADLK"),
    (38, "ENAMETOOLONG"),
    (39, "ENOLCK"),
    (40, "ENOSYS"),
    (41, "ENOTEMPTY"),
    (42, "EILSEQ"),
    (100, "EADDRINUSE"),
    (101, "EADDRNOTAVAIL"),
    (102, "EAFNOSUPPORT"),
    (103, "EALREADY"),
    (104, "EBADMSG"),
    (105, "ECANCELED"),
    (106, "ECONNABORTED"),
    (107, "ECONNREFUSED"),
    (108, "ECONNRESET"),
    (109, "EDESTADDRREQ"),
    (110, "EHOSTUNREACH"),
    (111, "EIDRM"),
    (112, "EINPROGRESS"),
    (113, "EISCONN"),
    (114, "ELOOP"),
    (115, "EMSGSIZE"),
    (116, "ENETDOWN"),
    (117, "ENETRESET"),
    (118, "ENETUNREACH"),
    (119, "ENOBUFS"),
    (120, "ENODATA"),
    (121, "ENOLINK"),
    (122, "ENOMSG"),
    (123, "ENOPROTOOPT"),
    (124, "ENOSR"),
    (125, "ENOSTR"),
    (126, "ENOTCONN"),
    (127, "ENOTRECOVERABLE"),
    (128, "ENOTSOCK"),
    (129, "ENOTSUP"),
    (130, "EOPNOTSUPP"),
    (131, "EOTHER"),
    (132, "EOVERFLOW"),
    (133, "EOWNERDEAD"),
    (134, "EPROTO"),
    (135, "EPROTONOSUPPORT"),
    (136, "EPROTOTYPE"),
    (137, "ETIME"),
    (138, "ETIMEDOUT"),
    (139, "ETXTBSY"),
    (140, "EWOULDBLOCK"),
];

/// Linux (asm-generic, as on x86-64 and arm64): (name, value, `strerror` text). Aliases are
/// listed under both names (`EWOULDBLOCK` = `EAGAIN`, `ENOTSUP` = `EOPNOTSUPP`,
/// `EDEADLOCK` = `EDEADLK`). Only names that share a name with Windows, or that a person may
/// type, are here; Linux has no `EOTHER`.
#[rustfmt::skip]
pub const LINUX_ERRNO: &[(&str, u32, &str)] = &[
    ("EPERM", 1, "Operation not permitted"),
    ("ENOENT", 2, "No such file or directory"),
    ("ESRCH", 3, "No such process"),
    ("EINTR", 4, "Interrupted system call"),
    ("EIO", 5, "I/O error"),
    ("ENXIO", 6, "No such device or address"),
    ("E2BIG", 7, "Argument list too long"),
    ("ENOEXEC", 8, "Exec format error"),
    ("EBADF", 9, "Bad file number"),
    ("ECHILD", 10, "No child processes"),
    ("EAGAIN", 11, "Try again"),
    ("ENOMEM", 12, "Out of memory"),
    ("EACCES", 13, "Permission denied"),
    ("EFAULT", 14, "Bad address"),
    ("ENOTBLK", 15, "Block device required"),
    ("EBUSY", 16, "Device or resource busy"),
    ("EEXIST", 17, "File exists"),
    ("EXDEV", 18, "Cross-device link"),
    ("ENODEV", 19, "No such device"),
    ("ENOTDIR", 20, "Not a directory"),
    ("EISDIR", 21, "Is a directory"),
    ("EINVAL", 22, "Invalid argument"),
    ("ENFILE", 23, "File table overflow"),
    ("EMFILE", 24, "Too many open files"),
    ("ENOTTY", 25, "Not a typewriter"),
    ("ETXTBSY", 26, "Text file busy"),
    ("EFBIG", 27, "File too large"),
    ("ENOSPC", 28, "No space left on device"),
    ("ESPIPE", 29, "Illegal seek"),
    ("EROFS", 30, "Read-only file system"),
    ("EMLINK", 31, "Too many links"),
    ("EPIPE", 32, "Broken pipe"),
    ("EDOM", 33, "Math argument out of domain of func"),
    ("ERANGE", 34, "Math result not representable"),
    ("EDEADLK", 35, "Resource deadlock would occur"),
    ("ENAMETOOLONG", 36, "File name too long"),
    ("ENOLCK", 37, "No record locks available"),
    ("ENOSYS", 38, "Invalid system call number"),
    ("ENOTEMPTY", 39, "Directory not empty"),
    ("ELOOP", 40, "Too many symbolic links encountered"),
    ("EWOULDBLOCK", 11, "Operation would block (= EAGAIN)"),
    ("ENOMSG", 42, "No message of desired type"),
    ("EIDRM", 43, "Identifier removed"),
    ("ENOSTR", 60, "Device not a stream"),
    ("ENODATA", 61, "No data available"),
    ("ETIME", 62, "Timer expired"),
    ("ENOSR", 63, "Out of streams resources"),
    ("ENOLINK", 67, "Link has been severed"),
    ("EPROTO", 71, "Protocol error"),
    ("EBADMSG", 74, "Not a data message"),
    ("EOVERFLOW", 75, "Value too large for defined data type"),
    ("EILSEQ", 84, "Illegal byte sequence"),
    ("ENOTSOCK", 88, "Socket operation on non-socket"),
    ("EDESTADDRREQ", 89, "Destination address required"),
    ("EMSGSIZE", 90, "Message too long"),
    ("EPROTOTYPE", 91, "Protocol wrong type for socket"),
    ("ENOPROTOOPT", 92, "Protocol not available"),
    ("EPROTONOSUPPORT", 93, "Protocol not supported"),
    ("EOPNOTSUPP", 95, "Operation not supported on transport endpoint"),
    ("ENOTSUP", 95, "Operation not supported (glibc alias of EOPNOTSUPP)"),
    ("EAFNOSUPPORT", 97, "Address family not supported by protocol"),
    ("EADDRINUSE", 98, "Address already in use"),
    ("EADDRNOTAVAIL", 99, "Cannot assign requested address"),
    ("ENETDOWN", 100, "Network is down"),
    ("ENETUNREACH", 101, "Network is unreachable"),
    ("ENETRESET", 102, "Network dropped connection because of reset"),
    ("ECONNABORTED", 103, "Software caused connection abort"),
    ("ECONNRESET", 104, "Connection reset by peer"),
    ("ENOBUFS", 105, "No buffer space available"),
    ("EISCONN", 106, "Transport endpoint is already connected"),
    ("ENOTCONN", 107, "Transport endpoint is not connected"),
    ("ETIMEDOUT", 110, "Connection timed out"),
    ("ECONNREFUSED", 111, "Connection refused"),
    ("EHOSTUNREACH", 113, "No route to host"),
    ("EALREADY", 114, "Operation already in progress"),
    ("EINPROGRESS", 115, "Operation now in progress"),
    ("ENAVAIL", 119, "No XENIX semaphores available"),
    ("ECANCELED", 125, "Operation Canceled"),
    ("EOWNERDEAD", 130, "Owner died"),
    ("ENOTRECOVERABLE", 131, "State not recoverable"),
];

/// `ebpf_result_t` in enum order (the index is the value): (name, the header's doc comment).
pub const EBPF_RESULTS: &[(&str, &str)] = &[
    ("EBPF_SUCCESS", "the operation was successful"),
    ("EBPF_VERIFICATION_FAILED", "program verification failed"),
    ("EBPF_JIT_COMPILATION_FAILED", "JIT compilation failed"),
    ("EBPF_PROGRAM_LOAD_FAILED", "program load failed"),
    ("EBPF_INVALID_FD", "invalid FD provided"),
    (
        "EBPF_INVALID_OBJECT",
        "invalid object provided (ebpf_object, ebpf_map, ebpf_program)",
    ),
    ("EBPF_INVALID_ARGUMENT", "an invalid argument was supplied"),
    (
        "EBPF_OBJECT_NOT_FOUND",
        "no pinned map or program exists for the path provided",
    ),
    (
        "EBPF_OBJECT_ALREADY_EXISTS",
        "a program or map is already pinned with the same path",
    ),
    ("EBPF_FILE_NOT_FOUND", "invalid ELF file path"),
    (
        "EBPF_ALREADY_PINNED",
        "the program or map is already pinned to a different path",
    ),
    ("EBPF_NOT_PINNED", "the program or map is not pinned"),
    ("EBPF_NO_MEMORY", "low memory"),
    ("EBPF_PROGRAM_TOO_LARGE", "the program is too large"),
    (
        "EBPF_RPC_EXCEPTION",
        "an RPC exception occurred (talking to eBPFSvc)",
    ),
    (
        "EBPF_ALREADY_INITIALIZED",
        "the handle was already initialized",
    ),
    (
        "EBPF_ELF_PARSING_FAILED",
        "a failure occurred in parsing the ELF file",
    ),
    ("EBPF_FAILED", "generic failure code for all other errors"),
    ("EBPF_OPERATION_NOT_SUPPORTED", "operation is not supported"),
    ("EBPF_KEY_NOT_FOUND", "the requested key was not found"),
    (
        "EBPF_ACCESS_DENIED",
        "access was denied for the requested operation",
    ),
    (
        "EBPF_BLOCKED_BY_POLICY",
        "the operation was blocked for all requesters by policy",
    ),
    ("EBPF_ARITHMETIC_OVERFLOW", "arithmetic overflow occurred"),
    (
        "EBPF_EXTENSION_FAILED_TO_LOAD",
        "the eBPF extension failed to load",
    ),
    (
        "EBPF_INSUFFICIENT_BUFFER",
        "a buffer of insufficient size was supplied",
    ),
    ("EBPF_NO_MORE_KEYS", "the enumeration found no more keys"),
    (
        "EBPF_KEY_ALREADY_EXISTS",
        "the requested key is already present",
    ),
    (
        "EBPF_NO_MORE_TAIL_CALLS",
        "caller has reached tail call limit",
    ),
    ("EBPF_PENDING", "requested action is still pending"),
    (
        "EBPF_OUT_OF_SPACE",
        "the container can not hold additional elements",
    ),
    ("EBPF_CANCELED", "operation was canceled"),
    ("EBPF_INVALID_POINTER", "invalid pointer"),
    ("EBPF_TIMEOUT", "operation timed out"),
    (
        "EBPF_STALE_ID",
        "ID is valid, but the object has been deleted",
    ),
    (
        "EBPF_INVALID_STATE",
        "the system is in an invalid state for this operation",
    ),
    ("EBPF_TRY_AGAIN", "the operation should be retried"),
];

/// `ebpf_result_to_errno()`: the (Windows) errno name efW sets for a result; the `default:`
/// branch gives `EOTHER`, `EBPF_SUCCESS` gives 0.
pub fn ebpf_result_errno(result: &str) -> &'static str {
    match result {
        "EBPF_SUCCESS" => "",
        "EBPF_NO_MEMORY" => "ENOMEM",
        "EBPF_ALREADY_INITIALIZED"
        | "EBPF_INVALID_ARGUMENT"
        | "EBPF_EXTENSION_FAILED_TO_LOAD"
        | "EBPF_INVALID_OBJECT" => "EINVAL",
        "EBPF_INVALID_FD" => "EBADF",
        "EBPF_OPERATION_NOT_SUPPORTED" => "ENOTSUP",
        "EBPF_INSUFFICIENT_BUFFER" => "ENOBUFS",
        "EBPF_FILE_NOT_FOUND"
        | "EBPF_KEY_NOT_FOUND"
        | "EBPF_NO_MORE_KEYS"
        | "EBPF_OBJECT_NOT_FOUND" => "ENOENT",
        "EBPF_OBJECT_ALREADY_EXISTS" => "EEXIST",
        "EBPF_VERIFICATION_FAILED" => "EACCES",
        "EBPF_INVALID_POINTER" => "EFAULT",
        "EBPF_OUT_OF_SPACE" => "ENOSPC",
        "EBPF_ACCESS_DENIED" => "EPERM",
        _ => "EOTHER",
    }
}

/// Win32 error codes efW translates (`win32_error_code_to_ebpf_result()`), plus a few a test
/// run meets around efW (service and driver loading): (value, name, the `ebpf_result_t` efW
/// makes of it, or "" when efW does not map it).
#[rustfmt::skip]
pub const WIN32_ERRORS: &[(u32, &str, &str)] = &[
    (1, "ERROR_INVALID_FUNCTION", "EBPF_INVALID_OBJECT"),
    (2, "ERROR_FILE_NOT_FOUND", "EBPF_FILE_NOT_FOUND"),
    (3, "ERROR_PATH_NOT_FOUND", "EBPF_OBJECT_NOT_FOUND"),
    (5, "ERROR_ACCESS_DENIED", "EBPF_ACCESS_DENIED"),
    (6, "ERROR_INVALID_HANDLE", "EBPF_INVALID_FD"),
    (8, "ERROR_NOT_ENOUGH_MEMORY", "EBPF_NO_MEMORY"),
    (14, "ERROR_OUTOFMEMORY", "EBPF_NO_MEMORY"),
    (22, "ERROR_BAD_COMMAND", "EBPF_STALE_ID"),
    (50, "ERROR_NOT_SUPPORTED", "EBPF_OPERATION_NOT_SUPPORTED"),
    (56, "ERROR_TOO_MANY_CMDS", "EBPF_PROGRAM_TOO_LARGE"),
    (68, "ERROR_TOO_MANY_NAMES", "EBPF_NO_MORE_TAIL_CALLS"),
    (87, "ERROR_INVALID_PARAMETER", "EBPF_INVALID_ARGUMENT"),
    (126, "ERROR_MOD_NOT_FOUND", ""),
    (127, "ERROR_PROC_NOT_FOUND", ""),
    (193, "ERROR_BAD_EXE_FORMAT", "EBPF_ELF_PARSING_FAILED"),
    (234, "ERROR_MORE_DATA", "EBPF_INSUFFICIENT_BUFFER"),
    (259, "ERROR_NO_MORE_ITEMS", "EBPF_NO_MORE_KEYS"),
    (288, "ERROR_NOT_OWNER", "EBPF_NOT_PINNED"),
    (534, "ERROR_ARITHMETIC_OVERFLOW", "EBPF_ARITHMETIC_OVERFLOW"),
    (537, "ERROR_VERIFIER_STOP", "EBPF_VERIFICATION_FAILED"),
    (577, "ERROR_INVALID_IMAGE_HASH", ""),
    (626, "ERROR_NO_MORE_MATCHES", "EBPF_NO_MORE_KEYS"),
    (698, "ERROR_OBJECT_NAME_EXISTS", "EBPF_ALREADY_PINNED"),
    (995, "ERROR_OPERATION_ABORTED", "EBPF_CANCELED"),
    (997, "ERROR_IO_PENDING", "EBPF_PENDING"),
    (998, "ERROR_NOACCESS", "EBPF_INVALID_POINTER"),
    (1060, "ERROR_SERVICE_DOES_NOT_EXIST", ""),
    (1062, "ERROR_SERVICE_NOT_ACTIVE", ""),
    (1168, "ERROR_NOT_FOUND", "EBPF_KEY_NOT_FOUND"),
    (1237, "ERROR_RETRY", "EBPF_TRY_AGAIN"),
    (1242, "ERROR_ALREADY_REGISTERED", "EBPF_KEY_ALREADY_EXISTS"),
    (1247, "ERROR_ALREADY_INITIALIZED", "EBPF_ALREADY_INITIALIZED"),
    (1296, "ERROR_CONTENT_BLOCKED", "EBPF_BLOCKED_BY_POLICY"),
    (1332, "ERROR_NONE_MAPPED", "EBPF_JIT_COMPILATION_FAILED"),
    (1359, "ERROR_INTERNAL_ERROR", "EBPF_KEY_ALREADY_EXISTS"),
    (1450, "ERROR_NO_SYSTEM_RESOURCES", "EBPF_OUT_OF_SPACE"),
    (1460, "ERROR_TIMEOUT", "EBPF_TIMEOUT"),
    (1726, "RPC_S_CALL_FAILED", "EBPF_RPC_EXCEPTION"),
    (2001, "ERROR_BAD_DRIVER", "EBPF_EXTENSION_FAILED_TO_LOAD"),
    (5010, "ERROR_OBJECT_ALREADY_EXISTS", "EBPF_OBJECT_ALREADY_EXISTS"),
    (5023, "ERROR_INVALID_STATE", "EBPF_INVALID_STATE"),
    (14109, "ERROR_GENERIC_COMMAND_FAILED", "EBPF_PROGRAM_LOAD_FAILED"),
];

/// What a code usually means for a person running ebpf-go on efW, beyond the header's words:
/// (name, hint). Names are `ebpf_result_t`, Windows errno or Win32 names.
pub const HINTS: &[(&str, &str)] = &[
    (
        "EOTHER",
        "efW had no errno for the ebpf_result_t (the default branch of ebpf_result_to_errno); \
         rerun with -trace-log and look for the ebpf_result_t in the trace",
    ),
    (
        "ENOBUFS",
        "a buffer ebpf-go passed was too small for what efW had to return; not a socket buffer \
         as ENOBUFS would suggest on Linux",
    ),
    (
        "EBPF_VERIFICATION_FAILED",
        "efW's verifier (PREVAIL) rejected the program; its log says which instruction",
    ),
    (
        "EBPF_EXTENSION_FAILED_TO_LOAD",
        "the extension providing the program type is not running or its program types are \
         not registered; check with `harness ext list`, reinstall with `harness ext install`",
    ),
    (
        "EBPF_ACCESS_DENIED",
        "the test does not run elevated (Administrator) or is blocked by policy",
    ),
    (
        "EBPF_JIT_COMPILATION_FAILED",
        "the JIT is unavailable, e.g. Memory Integrity (HVCI) is on or eBPFSvc is not running",
    ),
    (
        "EBPF_RPC_EXCEPTION",
        "ebpfapi could not reach eBPFSvc; check that the eBPFSvc service is running",
    ),
    (
        "EBPF_OPERATION_NOT_SUPPORTED",
        "efW does not implement this map type, program type, helper or flag yet",
    ),
    (
        "ERROR_INVALID_IMAGE_HASH",
        "Windows refused an unsigned driver: test signing is off or Secure Boot is on",
    ),
    (
        "ERROR_MOD_NOT_FOUND",
        "a DLL was not found: efW's install folder is not on PATH, or the VC runtime is missing",
    ),
    (
        "ERROR_PROC_NOT_FOUND",
        "ebpfapi.dll or a driver lacks an export: the efW build and its callers do not match",
    ),
    (
        "ERROR_SERVICE_DOES_NOT_EXIST",
        "the service (eBPFCore, NetEbpfExt, eBPFSvc, an extension) is not installed",
    ),
    (
        "ERROR_SERVICE_NOT_ACTIVE",
        "the service is installed but stopped; `harness install` starts and verifies it",
    ),
];
