// Package runtime checks what ebpf-go's Windows tests need from the environment: the efW
// runtime is reachable from a fresh session (as ebpfapi.dll must be on PATH), and the installed
// build's version is passed in CI_EFW_VERSION.
package runtime

import (
	"os"
	"path/filepath"
	"testing"
)

func TestRuntimeLoadable(t *testing.T) {
	dir := os.Getenv("EFW_RUNTIME_DIR")
	if dir == "" {
		t.Fatal("load ebpfapi: not found (EFW_RUNTIME_DIR unset: sshd was not restarted after install?)")
	}
	if _, err := os.Stat(filepath.Join(dir, "bin", "ebpfapi")); err != nil {
		t.Fatalf("load ebpfapi: %v", err)
	}
}

func TestVersionFromHarness(t *testing.T) {
	v := os.Getenv("CI_EFW_VERSION")
	if v == "" {
		t.Fatal("CI_EFW_VERSION is not set")
	}
	t.Logf("efW version under test: %s", v)
}

func TestTestdata(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "program.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(b) == 0 {
		t.Fatal("empty testdata")
	}
}

func TestSkippedOnLinux(t *testing.T) {
	t.Skip("needs a Windows guest")
}

// TestFailsOnRequest fails when EFW_DEMO_FAIL is set: the end-to-end tests use it to see a failure
// reported the way CI shows it (JUnit, exit code 1, a GitHub Actions annotation on this line).
func TestFailsOnRequest(t *testing.T) {
	if os.Getenv("EFW_DEMO_FAIL") != "" {
		t.Errorf("failing on request (EFW_DEMO_FAIL=%s)", os.Getenv("EFW_DEMO_FAIL"))
	}
}
