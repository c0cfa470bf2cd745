// Package flaky has a test that fails on its first run and passes afterwards.
// The state lives in the directory named by HARNESS_FIXTURE_STATE.
package flaky

import (
	"os"
	"path/filepath"
	"testing"
)

func TestFlaky(t *testing.T) {
	dir := os.Getenv("HARNESS_FIXTURE_STATE")
	if dir == "" {
		t.Skip("HARNESS_FIXTURE_STATE is not set")
	}
	marker := filepath.Join(dir, "flaky-ran-once")
	if _, err := os.Stat(marker); err != nil {
		if err := os.WriteFile(marker, []byte("1"), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Fatal("first run fails on purpose")
	}
}

func TestStable(t *testing.T) {}
