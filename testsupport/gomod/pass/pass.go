// Package pass is a fixture package whose tests all pass.
package pass
