package main

import (
	"context"
	"io"
	"testing"
)

// BenchmarkValidate_ExampleRepo is `berth validate examples/config-repo`:
// every environment loaded, contained and checked (docs/benchmarks.md).
func BenchmarkValidate_ExampleRepo(b *testing.B) {
	for b.Loop() {
		if code := run(context.Background(), []string{"validate", examples}, io.Discard, io.Discard); code != exitOK {
			b.Fatalf("exit %d", code)
		}
	}
}
