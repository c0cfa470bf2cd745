// Package tracelog defines ebpf-go's -trace-log flag in its TestMain (as ebpf-go's
// testmain.Run does). TestTraceLog logs whether the flag was given, fails on its first run and
// passes afterwards (state in HARNESS_FIXTURE_STATE; passes without it), so that a rerun shows
// whether the rerun got -trace-log.
package tracelog

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var traceLog = flag.Bool("trace-log", false, "write a trace log (as ebpf-go's testmain)")

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(m.Run())
}

func TestTraceLog(t *testing.T) {
	t.Logf("trace-log=%v", *traceLog)
	dir := os.Getenv("HARNESS_FIXTURE_STATE")
	if dir == "" {
		return
	}
	marker := filepath.Join(dir, "tracelog-ran-once")
	if _, err := os.Stat(marker); err != nil {
		if err := os.WriteFile(marker, []byte("1"), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Fatal("first run fails on purpose")
	}
}
