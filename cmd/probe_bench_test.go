package cmd

import (
	"context"
	"testing"

	"github.com/ferry-migrate/ferry/internal/testenv"
)

// BenchmarkProbeCommand is `ferry probe -o json` of this machine, as a user
// runs it (target: under 0.5 s).
func BenchmarkProbeCommand(b *testing.B) {
	testenv.RequireRoot(b)
	testenv.CRIU(b)
	for b.Loop() {
		streams, _, errOut := testIO()
		if code := Run(context.Background(), []string{"probe", "-o", "json"}, streams); code != 0 {
			b.Fatalf("exit %d: %s", code, errOut)
		}
	}
}
