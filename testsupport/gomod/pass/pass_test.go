// Package pass holds tests that all pass: plain, table subtests, parallel subtests and one reading testdata.
package pass

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAlpha leaves a "pass-started" marker in the directory named by HARNESS_FIXTURE_STATE
// (if set), so that a test can tell that this package has begun to run.
func TestAlpha(t *testing.T) {
	if dir := os.Getenv("HARNESS_FIXTURE_STATE"); dir != "" {
		if err := os.WriteFile(filepath.Join(dir, "pass-started"), []byte("1"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Log("alpha ok")
}

func TestBeta(t *testing.T) {}

func TestTable(t *testing.T) {
	for _, name := range []string{"one", "two", "three"} {
		t.Run(name, func(t *testing.T) {
			if name == "" {
				t.Fatal("empty name")
			}
		})
	}
}

func TestParallel(t *testing.T) {
	for _, name := range []string{"p1", "p2"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
		})
	}
}

func TestReadsTestdata(t *testing.T) {
	b, err := os.ReadFile("testdata/hello.txt")
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(b)) != "hello from testdata" {
		t.Fatalf("unexpected testdata content %q", b)
	}
}
