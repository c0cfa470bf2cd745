// Package bigout prints a lot of output and XML-hostile bytes.
package bigout

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

func TestLargeOutput(t *testing.T) {
	line := strings.Repeat("x", 100)
	for i := 0; i < 20000; i++ {
		fmt.Printf("line %05d %s\n", i, line)
	}
}

func TestHostile(t *testing.T) {
	fmt.Println("control: \x00\x01\x07\x1b[31mred\x1b[0m \x0c")
	fmt.Println("cdata end: ]]> and <tag attr=\"v\"> & 'q'")
	os.Stdout.Write([]byte("invalid utf8: \xff\xfe\xc3\x28 end\n"))
	t.Error("hostile failure: ]]> \x00 \xff <&>")
}
