//! The fixture Go module (`testsupport/gomod`, module `harness.test/fixture`) for the suites tests.
//!
//! Packages and what each test does (counts are asserted by the suites tests, keep them in sync):
//! - `pass`: TestAlpha, TestBeta, TestTable (+3 subtests), TestParallel (+2 parallel subtests),
//!   TestReadsTestdata (reads `testdata/hello.txt`): 10 tests, all pass. TestAlpha leaves a
//!   `pass-started` marker in the directory named by `HARNESS_FIXTURE_STATE` when it is set.
//! - `fail`: TestOK passes; TestBroken fails; TestSub fails through TestSub/bad (TestSub/good
//!   passes): 5 tests, 3 fail.
//! - `skip`: TestSkipped skips, TestRuns passes.
//! - `panicky`: TestBefore passes, TestPanics panics (the binary dies; TestNeverRuns never runs
//!   and is reported "not run").
//! - `hang`: TestQuick passes, TestHangs sleeps for an hour (hits any package timeout).
//! - `bigout`: TestLargeOutput prints 20,000 lines (~2 MB) and passes; TestHostile prints control
//!   characters, `]]>`, markup and invalid UTF-8, then fails with them in its message.
//! - `flaky`: TestFlaky fails on its first run and passes afterwards (state in the directory named
//!   by `HARNESS_FIXTURE_STATE`; skips without it); TestStable passes.
//! - `notests`: no test files.
//! - `links`: TestReadsThroughLinks reads `testdata/beside.txt` (a relative link to `real.txt`
//!   beside it) and `testdata/shared.txt` (a relative link to `../../shared/shared.txt`, outside
//!   any testdata): passes only when the upload gives the test what the links point at.
//! - `tracelog`: defines ebpf-go's `-trace-log` flag in its TestMain; TestTraceLog logs
//!   `trace-log=true|false`, fails on its first run and passes afterwards (like TestFlaky; passes
//!   without the state directory). (`flaky` does not define it: a flaky test in a package without
//!   `-trace-log`.)
//! - `shared`: no Go files, only `shared.txt` for `links`.
//! - `kpanic`: TestKernelPanic panics the kernel (`echo c > /proc/sysrq-trigger`) for the crash
//!   forensics tests, but only with [`KPANIC_ENV`]`=1` *and* `harness.key=` on the kernel command
//!   line (harness's test guest); everywhere else it skips. Never set the variable on a host.
//!
//! Builds with `CGO_ENABLED=0` for linux and windows.

use std::path::{Path, PathBuf};

/// The module path (`go list` shows `harness.test/fixture/...`).
pub const MODULE: &str = "harness.test/fixture";

/// The environment variable naming the flaky test's state directory.
pub const STATE_ENV: &str = "HARNESS_FIXTURE_STATE";

/// The environment variable that arms `kpanic`'s TestKernelPanic (in the test guest only).
pub const KPANIC_ENV: &str = "HARNESS_FIXTURE_KPANIC";

/// Where the fixture module lives.
pub fn path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("gomod")
}

/// The import path of one fixture package, e.g. `pkg("pass")`.
pub fn pkg(name: &str) -> String {
    format!("{MODULE}/{name}")
}
