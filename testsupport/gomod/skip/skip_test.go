// Package skip has a skipped test and a passing one.
package skip

import "testing"

func TestSkipped(t *testing.T) { t.Skip("not supported here") }

func TestRuns(t *testing.T) {}
