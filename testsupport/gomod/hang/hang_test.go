// Package hang has a test that never finishes, so the package hits its timeout.
package hang

import (
	"testing"
	"time"
)

func TestQuick(t *testing.T) {}

func TestHangs(t *testing.T) {
	t.Log("going to sleep")
	time.Sleep(time.Hour)
}
