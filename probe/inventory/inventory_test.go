package inventory

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ferry-migrate/ferry/internal/host"
)

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file string
		want []Host
	}{
		{"hosts.ini", []Host{
			{"localhost", "local"},
			{"web1", "ssh://ops@10.0.0.11"},
			{"web2", "ssh://ops@10.0.0.12:2222"},
			// The host's own ansible_user wins over group vars; the
			// more specific group's vars over its parent's.
			{"db1", "ssh://admin@db1.example.com"},
			{"db6", "ssh://root@[fd00::6]:22"},
		}},
		{"hosts.yaml", []Host{
			{"localhost", "local"},
			{"db1", "ssh://admin@db1.example.com"},
			{"db6", "ssh://root@[fd00::6]:22"},
			{"web1", "ssh://deploy@10.0.0.11"},
			{"web2", "ssh://deploy@10.0.0.12:2222"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			b, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			got, err := Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			// Every spec is one ferry accepts.
			for _, h := range got {
				if _, err := host.ParseSpec(h.Spec); err != nil {
					t.Errorf("%s: %v", h.Spec, err)
				}
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"":                                "no hosts",
		"[web\nweb1\n":                    "unclosed section",
		"web1 ansible_port=http\n":        "not a port number",
		"web1 ansible_connection=winrm\n": "not supported",
		"web[01:10]\n":                    "ranges",
		"web1 novalue\n":                  "key=value",
		"all:\n  hosts: [1, 2]\n":         "inventory",
		"web1 ansible_host=\"10.0.0.1\n":  "unclosed quote",
	}
	for in, want := range tests {
		_, err := Parse([]byte(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want error with %q", in, err, want)
		}
	}
}
