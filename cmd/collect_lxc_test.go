package cmd

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-migrate/ferry/internal/daemontest"
	"github.com/ferry-migrate/ferry/internal/exit"
	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/migrate"
	"github.com/ferry-migrate/ferry/report"
	"github.com/ferry-migrate/ferry/report/bundle"
)

// TestCollectDaemonRestoreFailure bundles the stock stateful-restore
// failure of real LXD and Incus daemons (the known console issue): every
// item maintainers ask for is in the bundle, the secrets planted in the
// container's configuration and log directory are not, and ferry report
// names the console cause.
func TestCollectDaemonRestoreFailure(t *testing.T) {
	t.Cleanup(daemontest.Teardown)
	for _, kind := range []string{migrate.KindLXD, migrate.KindIncus} {
		t.Run(kind, func(t *testing.T) {
			c := daemontest.Daemon(t, kind)
			t.Setenv("FERRY_RUNS", t.TempDir())
			name := daemontest.Name("collect")
			daemontest.Launch(t, c, name, daemontest.Stock)
			client := map[string]string{migrate.KindLXD: "lxc", migrate.KindIncus: "incus"}[kind]

			secrets := []string{"s3cret-env-4242", "s3cret-userdata-4343", "s3cretbearer4444zz", "c3NoLXBsYW50ZWQta2V5"}
			for _, kv := range []string{
				"environment.DB_PASSWORD=s3cret-env-4242",
				"user.user-data=#cloud-config\nchpasswd:\n  list: |\n    root:s3cret-userdata-4343\n",
			} {
				if _, err := c.Host.Run(context.Background(), []string{client, "config", "set", name, kv}, host.RunOptions{Env: c.Env}); err != nil {
					t.Fatalf("config set: %v", err)
				}
			}
			logDir := c.LogDirs(name)[0]
			planted := "Authorization: Bearer s3cretbearer4444zz\n-----BEGIN OPENSSH PRIVATE KEY-----\nc3NoLXBsYW50ZWQta2V5\n-----END OPENSSH PRIVATE KEY-----\n"
			if err := os.WriteFile(filepath.Join(logDir, "planted.log"), []byte(planted), 0o600); err != nil {
				t.Fatal(err)
			}

			target := kind + ":" + name
			var j migrate.Journal
			if code, stderr := runJSON(t, &j, "checkpoint", target, "--snapshot", "s1"); code != exit.OK {
				t.Fatalf("checkpoint: exit %d\n%s", code, stderr)
			}
			if code, stderr := runJSON(t, &j, "restore", target, "--snapshot", "s1"); code != exit.Migration {
				t.Fatalf("stock restore: exit %d, want 4\n%s", code, stderr)
			}

			out := filepath.Join(t.TempDir(), "bundle.tar.gz")
			var res CollectResult
			if code, stderr := runJSON(t, &res, "collect", "--run", j.ID, "--out", out); code != exit.OK {
				t.Fatalf("collect: exit %d\n%s\n%+v", code, stderr, res)
			}
			b, err := bundle.Open(context.Background(), out)
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Verify(); err != nil {
				t.Error(err)
			}
			if b.Manifest.Container != target {
				t.Errorf("container %q, want %q", b.Manifest.Container, target)
			}
			status := map[string]string{}
			for _, a := range b.Manifest.Artefacts {
				status[a.Path] = a.Status
			}
			logs := strings.ReplaceAll(strings.TrimPrefix(logDir, "/"), "/", "-")
			want := map[string][]string{
				"local/" + kind + "-info/" + kind + "-info.txt":    {bundle.StatusOK},
				"local/container-info/info-show-log.txt":           {bundle.StatusOK},
				"local/container-config/config-show-expanded.yaml": {bundle.StatusOK},
				"local/container-mountinfo/mountinfo.txt":          {bundle.StatusOK, bundle.StatusNonZero}, // stopped by the failure
				"local/container-logs/" + logs + "/lxc.log":        {bundle.StatusOK},
				"local/container-logs/" + logs + "/planted.log":    {bundle.StatusOK},
				"local/dmesg/dmesg.txt":                            {bundle.StatusOK},
				"local/mountinfo/proc-self-mountinfo":              {bundle.StatusOK},
				"local/uname/uname.txt":                            {bundle.StatusOK},
				"local/lxd-bridge/etc-default-lxd-bridge":          {bundle.StatusAbsent},
				"local/criu-version/criu-version.txt":              {bundle.StatusOK},
				"local/facts/facts.json":                           {bundle.StatusOK},
				"run/run/journal.json":                             {bundle.StatusOK},
				"run/run/command.txt":                              {bundle.StatusOK},
			}
			if kind == migrate.KindLXD {
				want["local/lxd-log/var-log-lxd-lxd.log"] = []string{bundle.StatusOK}
			} else {
				want["local/incus-log/var-log-incus-incusd.log"] = []string{bundle.StatusOK}
			}
			for p, ok := range want {
				if !contains(ok, status[p]) {
					t.Errorf("%s: status %q, want one of %q", p, status[p], ok)
				}
			}
			config, _ := b.File("local/container-config/config-show-expanded.yaml")
			if !bytes.Contains(config, []byte("environment.DB_PASSWORD: [REDACTED]")) {
				t.Errorf("config:\n%s", config)
			}
			raw := decompressed(t, out)
			for _, s := range secrets {
				if bytes.Contains(raw, []byte(s)) {
					t.Errorf("secret %q is in the bundle", s)
				}
			}

			io, stdout, errOut := testIO()
			if code := Run(context.Background(), []string{"report", out, "--format", "json"}, io); code != exit.OK {
				t.Fatalf("report: exit %d: %s", code, errOut)
			}
			var r report.Report
			if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
				t.Fatal(err)
			}
			if len(r.KnownIssues) == 0 || r.KnownIssues[0].Category != "tty" {
				t.Errorf("known issues: %+v", r.KnownIssues)
			}
			if r.Failure == nil || r.Failure.Result != migrate.RunFailed {
				t.Errorf("failure: %+v", r.Failure)
			}
		})
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func decompressed(t *testing.T, p string) []byte {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
