// Package fail has one passing test, one failing test and one failing subtest.
package fail

import "testing"

func TestOK(t *testing.T) {}

func TestBroken(t *testing.T) {
	t.Log("about to fail")
	t.Error("expected 1, got 2")
}

func TestSub(t *testing.T) {
	t.Run("good", func(t *testing.T) {})
	t.Run("bad", func(t *testing.T) { t.Fatal("sub failed") })
}
