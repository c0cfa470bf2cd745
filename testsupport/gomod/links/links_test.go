// Package links reads testdata through symbolic links, as ebpf-go does (testdata/loader-el.elf
// is a relative link): one to a file beside it, one to a file outside testdata.
package links

import (
	"os"
	"strings"
	"testing"
)

func TestReadsThroughLinks(t *testing.T) {
	for name, want := range map[string]string{
		"testdata/beside.txt": "the real file",
		"testdata/shared.txt": "shared by the module",
	} {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(string(b)); got != want {
			t.Fatalf("%s: got %q, want %q", name, got, want)
		}
	}
}
