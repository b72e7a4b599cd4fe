package criubin

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ferry-migrate/ferry/internal/host"
)

func TestParseVersion(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    Version
		wantErr bool
	}{
		{"Version: 4.2\nGitID: v4.2\n", Version{4, 2, 0}, false},
		{"Version: 4.2.1\n", Version{4, 2, 1}, false},
		{"(00.000048) Version: 3.17.1 (gitid 0)\n", Version{3, 17, 1}, false},
		{"criu: command not found", Version{}, true},
	}
	for _, tt := range tests {
		got, err := ParseVersion(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseVersion(%q) error = %v", tt.in, err)
		}
		if got != tt.want {
			t.Errorf("ParseVersion(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
	if got := (Version{4, 2, 1}).Int(); got != 40201 {
		t.Errorf("Int = %d", got)
	}
}

// fakeCRIU writes an executable that prints a version like criu does.
func fakeCRIU(t *testing.T, out string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "criu")
	if err := os.WriteFile(p, []byte("#!/bin/sh\nprintf '"+out+"'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFindExplicit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := fakeCRIU(t, `Version: 4.2\nGitID: v4.2\n`)
	got, err := Find(ctx, host.Local{}, p)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Info{Path: p, Version: Version{4, 2, 0}, VersionString: "4.2.0"}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}

	_, err = Find(ctx, host.Local{}, "/nonexistent/criu")
	var nf *NotFoundError
	if !errors.As(err, &nf) {
		t.Fatalf("missing explicit criu: err = %v, want NotFoundError", err)
	}

	bad := fakeCRIU(t, `hello\n`)
	if _, err := Find(ctx, host.Local{}, bad); err == nil {
		t.Error("a binary without a version line was accepted")
	}
}
