//! A generated Go module shaped like ebpf-go's test suite, for the wire benchmarks
//! (`suites/benches/wire.rs` on loopback, `harness/benches/wire_vm.rs` into a TCG guest):
//! `packages` test packages whose test binaries are 5–15 MB (each embeds a random payload) and
//! whose testdata dirs (0.1–0.9 MB, nested) the tests read; four tests each.

use std::path::Path;

/// Deterministic, incompressible bytes (xorshift64*), so payloads behave like code on the wire.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Writes the module; returns its package names.
pub fn generate(dir: &Path, packages: usize) -> Vec<String> {
    std::fs::write(dir.join("go.mod"), "module example.com/wire\n\ngo 1.21\n").unwrap();
    let mut names = Vec::new();
    for i in 0..packages {
        let name = format!("p{i:02}");
        let pkg = dir.join(&name);
        std::fs::create_dir_all(pkg.join("testdata/nested")).unwrap();
        // ~4.7 MB of test binary plus 1–10 MB of payload: binaries of 5–15 MB.
        let payload = 1_000_000 + i * 9_000_000 / packages.max(1);
        let fixture = 100_000 + (i % 5) * 200_000;
        std::fs::write(pkg.join("payload.bin"), random_bytes(i as u64, payload)).unwrap();
        std::fs::write(
            pkg.join("testdata/fixture.bin"),
            random_bytes(1000 + i as u64, fixture),
        )
        .unwrap();
        std::fs::write(pkg.join("testdata/nested/case.txt"), format!("case {i}\n")).unwrap();
        std::fs::write(
            pkg.join(format!("{name}.go")),
            format!(
                "package {name}\n\n// Sum adds up b.\nfunc Sum(b []byte) (s int) {{\n\
                 \tfor _, c := range b {{\n\t\ts += int(c)\n\t}}\n\treturn s\n}}\n"
            ),
        )
        .unwrap();
        std::fs::write(
            pkg.join(format!("{name}_test.go")),
            format!(
                r#"package {name}

import (
	_ "embed"
	"os"
	"testing"
)

//go:embed payload.bin
var payload []byte

func TestPayload(t *testing.T) {{
	if len(payload) != {payload} {{
		t.Fatalf("payload is %d bytes", len(payload))
	}}
}}

func TestFixture(t *testing.T) {{
	b, err := os.ReadFile("testdata/fixture.bin")
	if err != nil {{
		t.Fatal(err)
	}}
	if len(b) != {fixture} {{
		t.Fatalf("fixture is %d bytes", len(b))
	}}
}}

func TestNested(t *testing.T) {{
	b, err := os.ReadFile("testdata/nested/case.txt")
	if err != nil || string(b) != "case {i}\n" {{
		t.Fatalf("case.txt: %q %v", b, err)
	}}
}}

func TestSum(t *testing.T) {{
	if Sum(payload[:1024]) <= 0 {{
		t.Fatal("sum of random bytes is 0")
	}}
}}
"#
            ),
        )
        .unwrap();
        names.push(name);
    }
    names
}
