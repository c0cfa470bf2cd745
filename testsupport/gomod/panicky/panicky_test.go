// Package panicky has a test that panics after a passing one; the panic ends the test binary.
package panicky

import "testing"

func TestBefore(t *testing.T) {}

func TestPanics(t *testing.T) {
	var m map[string]int
	m["boom"] = 1 // assignment to a nil map panics
}

func TestNeverRuns(t *testing.T) {}
