// Package notests has no test files.
package notests

// Answer exists so the package has something to compile.
const Answer = 42
