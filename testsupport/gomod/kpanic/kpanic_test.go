// Package kpanic panics the kernel of the machine it runs on, for the crash forensics tests.
// TestKernelPanic does it only when HARNESS_FIXTURE_KPANIC=1 and the kernel command line holds
// `harness.key=` (harness's test guest); anywhere else it skips.
package kpanic

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestKernelPanic(t *testing.T) {
	if os.Getenv("HARNESS_FIXTURE_KPANIC") != "1" {
		t.Skip("set HARNESS_FIXTURE_KPANIC=1 (in harness's test guest only) to panic the kernel")
	}
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil || !strings.Contains(string(cmdline), "harness.key=") {
		t.Skip("not harness's test guest (no harness.key= on the kernel command line): not panicking this kernel")
	}
	t.Log("panicking the kernel through /proc/sysrq-trigger")
	if err := os.WriteFile("/proc/sysrq-trigger", []byte("c"), 0o200); err != nil {
		t.Fatalf("writing /proc/sysrq-trigger: %v", err)
	}
	time.Sleep(time.Minute)
	t.Fatal("the kernel did not panic")
}
