package probe

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/internal/testenv"
)

// TestFeatureBatch checks that the one-command batch and one command per
// feature agree, with a CRIU path a shell would split and expand: the
// path reaches CRIU as data, never as script text.
func TestFeatureBatch(t *testing.T) {
	testenv.RequireRoot(t)
	info := testenv.CRIU(t)
	dir := filepath.Join(t.TempDir(), `it's a $(dir) "x"`)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	criu := filepath.Join(dir, "criu")
	if err := os.Symlink(info.Path, criu); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	newG := func() *gatherer {
		return &gatherer{h: host.Local{}, opt: Options{CommandTimeout: 30e9}, sem: make(chan struct{}, 8), f: &Facts{Unknown: map[string]string{}}}
	}
	batch := newG()
	res, err := batch.runBatch(ctx, featureScript, append([]string{criu, "3"}, CRIUFeatures...)...)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != len(CRIUFeatures)+2 {
		t.Fatalf("%d results, want %d", len(res), len(CRIUFeatures)+2)
	}
	if !batch.criuBatch(ctx, criu) {
		t.Fatal("batch failed")
	}
	one := newG()
	one.criuFeaturesOneByOne(ctx, criu)
	if diff := cmp.Diff(one.f.CRIU.Features, batch.f.CRIU.Features); diff != "" {
		t.Errorf("batch and one-by-one differ (-one +batch):\n%s", diff)
	}
	if batch.f.CRIU.Check.Verdict == "" || len(batch.f.Unknown) > 0 {
		t.Errorf("check %+v, unknown %v", batch.f.CRIU.Check, batch.f.Unknown)
	}
	x, err := one.xsave(ctx, criu)
	if err != nil {
		t.Fatal(err)
	}
	if x != batch.f.CPU.XSave {
		t.Errorf("xsave one by one %+v, batch %+v", x, batch.f.CPU.XSave)
	}

	progs := newG()
	res, err = progs.runBatch(ctx, programScript, "sh", "no-such-program-ferry", "nft; echo pwned")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]output{
		"sh":                    {text: "/usr/bin/sh", exitCode: 0},
		"no-such-program-ferry": {text: "", exitCode: 1},
	}
	got := map[string]output{"sh": res["sh"], "no-such-program-ferry": res["no-such-program-ferry"]}
	if p, _ := os.Readlink("/bin"); p == "usr/bin" || p == "/usr/bin" {
		// merged /usr: command -v may say either
		if got["sh"].text == "/bin/sh" {
			want["sh"] = output{text: "/bin/sh"}
		}
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(output{})); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if out, ok := res["nft; echo pwned"]; !ok || out.exitCode != 1 {
		t.Errorf("a name with shell syntax: %+v, %v (results %v)", out, ok, res)
	}
	for name, out := range res {
		if out.text == "pwned" {
			t.Errorf("%s: the shell ran data", name)
		}
	}
}

// sshLike is the local machine seen as a host without a local filesystem,
// so that the probe takes the paths it takes for ssh hosts.
type sshLike struct{ host.Local }

func TestPrefetch(t *testing.T) {
	t.Parallel()
	g := &gatherer{h: sshLike{}, opt: Options{CommandTimeout: 30e9}, sem: make(chan struct{}, 8), f: &Facts{Unknown: map[string]string{}}}
	g.prefetch(context.Background())
	if len(g.files) != len(prefetchFiles) {
		t.Fatalf("%d files prefetched, want %d", len(g.files), len(prefetchFiles))
	}
	for _, p := range []string{"/proc/version", "/proc/config.gz", "/proc/sys/kernel/osrelease"} {
		want, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		got, err := g.read(context.Background(), p)
		if err != nil || !cmp.Equal(want, got) {
			t.Errorf("%s: %d bytes, %v; want %d bytes", p, len(got), err, len(want))
		}
	}
	if _, err := os.Stat("/run/.containerenv"); err != nil {
		if ok, err := g.exists(context.Background(), "/run/.containerenv"); ok || !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("missing file: %v, %v", ok, err)
		}
	}
}

// recorder is the local host, remembering the stdout of every command.
type recorder struct {
	host.Local
	mu     sync.Mutex
	stdout []string
}

func (r *recorder) Run(ctx context.Context, argv []string, opt host.RunOptions) (*host.Result, error) {
	res, err := r.Local.Run(ctx, argv, opt)
	if res != nil {
		r.mu.Lock()
		r.stdout = append(r.stdout, string(res.Stdout))
		r.mu.Unlock()
	}
	return res, err
}

// TestFeatureBatchKilled checks that a batch killed by its timeout leaves
// no work directory behind.
func TestFeatureBatchKilled(t *testing.T) {
	testenv.RequireRoot(t)
	rec := &recorder{}
	g := &gatherer{h: rec, opt: Options{CommandTimeout: time.Second}, sem: make(chan struct{}, 8), f: &Facts{Unknown: map[string]string{}}}
	// A "criu" whose every check outlives the batch's 3 s timeout.
	slow := filepath.Join(t.TempDir(), "criu")
	if err := os.WriteFile(slow, []byte("#!/bin/sh\nexec sleep 30\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := g.runBatch(context.Background(), featureScript, slow, "2", "uffd", "tun"); err == nil {
		t.Fatal("a batch past its timeout succeeded")
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.stdout) == 0 {
		t.Fatal("no command ran")
	}
	first, _, _ := strings.Cut(rec.stdout[0], "\n")
	dir, ok := strings.CutPrefix(first, batchDirMarker)
	if !ok {
		t.Fatalf("the batch did not announce its directory: %q", rec.stdout[0])
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s left behind: %v", dir, err)
	}
}
