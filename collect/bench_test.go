package collect

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/ferry-migrate/ferry/internal/host"
)

// BenchmarkCollectLocal is `ferry collect` on this host: every host-level
// collector, real commands and files, redaction and the tar.gz.
func BenchmarkCollectLocal(b *testing.B) {
	benchCollect(b, []Target{{Host: host.Local{}, Role: RoleHost}}, false)
}

// BenchmarkCollectLocalRedactNetwork adds --redact-network.
func BenchmarkCollectLocalRedactNetwork(b *testing.B) {
	benchCollect(b, []Target{{Host: host.Local{}, Role: RoleHost}}, true)
}

// BenchmarkCollectTestbedPair collects from a source and a target host made
// of network namespaces, as the testbed's hosts are.
func BenchmarkCollectTestbedPair(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root for network namespaces")
	}
	var ts []Target
	for i, role := range []string{RoleSource, RoleTarget} {
		name := "ferry-cbench" + strconv.Itoa(i)
		if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
			b.Fatalf("ip netns add: %v: %s", err, out)
		}
		b.Cleanup(func() { _ = exec.Command("ip", "netns", "delete", name).Run() })
		ts = append(ts, Target{Host: &host.Netns{Label: "testbed:cbench" + strconv.Itoa(i), Netns: name}, Role: role})
	}
	benchCollect(b, ts, false)
}

func benchCollect(b *testing.B, ts []Target, network bool) {
	dir := b.TempDir()
	var size int64
	var n int
	for i := 0; b.Loop(); i++ {
		res, err := Collect(context.Background(), Request{
			Hosts: ts, Output: filepath.Join(dir, "b"+strconv.Itoa(i)+".tar.gz"),
			Options: Options{RedactNetwork: network},
		})
		if res == nil {
			b.Fatal(err)
		}
		size, n = res.Bundle.Size, len(res.Manifest.Artefacts)
		os.Remove(res.Bundle.Path)
	}
	b.ReportMetric(float64(size), "bundle-bytes")
	b.ReportMetric(float64(n), "artefacts")
}

// BenchmarkRedact measures redaction throughput on real LXD output (the
// lxc info sample with its certificate, repeated to 8 MiB).
func BenchmarkRedact(b *testing.B) {
	for _, network := range []bool{false, true} {
		b.Run(map[bool]string{false: "secrets", true: "secrets+network"}[network], func(b *testing.B) {
			sample, err := os.ReadFile(filepath.Join("testdata", "lxc-info-c1-show-log.txt"))
			if err != nil {
				b.Fatal(err)
			}
			var data []byte
			for len(data) < 8<<20 {
				data = append(data, sample...)
			}
			r := NewRedactor(network)
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				r.Redact(data)
			}
		})
	}
}
