package collect

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRedact(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		network bool
		in      string
		want    string
		counts  Counts
	}{
		{"nothing", false, "Looks good.\n(00.01) Dumping finished successfully\n", "Looks good.\n(00.01) Dumping finished successfully\n", Counts{}},
		{"pem", false, "a\n-----BEGIN RSA PRIVATE KEY-----\nMIIxyz\n-----END RSA PRIVATE KEY-----\nb\n",
			"a\n-----BEGIN RSA PRIVATE KEY-----[REDACTED]-----END RSA PRIVATE KEY-----\nb\n", Counts{KindPEM: 1}},
		{"pem head cut by the cap", false, "MIIxyz\nabc\n-----END CERTIFICATE-----\nnext\n", "[REDACTED]-----END CERTIFICATE-----\nnext\n", Counts{KindPEM: 1}},
		{"pem tail cut by the cap", false, "x\n-----BEGIN CERTIFICATE-----\nMIIxyz\n", "x\n-----BEGIN CERTIFICATE-----[REDACTED]\n", Counts{KindPEM: 1}},
		{"environment", false, "config:\n  environment.DB_URL: postgres://db/x\n  limits.cpu: \"2\"\n",
			"config:\n  environment.DB_URL: [REDACTED]\n  limits.cpu: \"2\"\n", Counts{KindSecret: 1}},
		{"lxd server environment is not secret", false, "environment:\n  kernel_version: 6.18\n", "environment:\n  kernel_version: 6.18\n", Counts{}},
		{"user data block", false, "  cloud-init.user-data: |\n    #cloud-config\n    password: x\n  user.x: y\n",
			"  cloud-init.user-data: [REDACTED]\n  user.x: y\n", Counts{KindSecret: 1}},
		{"lxc.conf", false, "lxc.environment = TOKEN=abc\nlxc.uts.name = c1\n", "lxc.environment = [REDACTED]\nlxc.uts.name = c1\n", Counts{KindSecret: 1}},
		{"json", false, `{"password": "hunter2", "name": "x"}` + "\n", `{"password": "[REDACTED]", "name": "x"}` + "\n", Counts{KindSecret: 1}},
		{"json lines stay json", false, "{\n  \"api_token\": \"abc\\\"def\",\n  \"n\": 1\n}\n", "{\n  \"api_token\": \"[REDACTED]\",\n  \"n\": 1\n}\n", Counts{KindSecret: 1}},
		{"yaml quoted", false, "  environment.X: 'a b'\n", "  environment.X: '[REDACTED]'\n", Counts{KindSecret: 1}},
		{"inline", false, "mount -o user=a,password=hunter2 x\n", "mount -o user=a,password=[REDACTED] x\n", Counts{KindSecret: 1}},
		{"bearer", false, "Authorization header Bearer abcdefghijkl\n", "Authorization header [REDACTED]\n", Counts{KindPattern: 1}},
		{"aws", false, "key AKIAABCDEFGHIJKLMNOP\n", "key [REDACTED]\n", Counts{KindPattern: 1}},
		{"url credentials", false, "fetch https://bob:hunter2@example.com/x\n", "fetch https://bob:[REDACTED]@example.com/x\n", Counts{KindPattern: 1}},
		{"trust token", false, "token eyJjbGllbnRfbmFtZSI6ImMxIn0=\n", "token [REDACTED]\n", Counts{KindPattern: 1}},
		{"addresses kept without --redact-network", false, "10.0.0.1 00:16:3e:00:00:01\n", "10.0.0.1 00:16:3e:00:00:01\n", Counts{}},
		{"addresses", true, "from 10.0.0.1:8443 to 10.0.0.2, again 10.0.0.1; mac 00:16:3E:00:00:01 v6 fd42:1::5 lo 127.0.0.1 ::1\n",
			"from [ipv4-1]:8443 to [ipv4-2], again [ipv4-1]; mac [mac-1] v6 [ipv6-1] lo 127.0.0.1 ::1\n", Counts{KindIPv4: 3, KindMAC: 1, KindIPv6: 1}},
		{"not addresses", true, "(00.062949) at 12:34:56.789 version 6.18.44 kernel 5.0.2.1x deadbeef ab:cd\n",
			"(00.062949) at 12:34:56.789 version 6.18.44 kernel 5.0.2.1x deadbeef ab:cd\n", Counts{}},
		{"host names", true, "Linux db-primary-01 6.18\nssh db-primary-01.example.com ok, not db-primary-012\n",
			"Linux [hostname-1] 6.18\nssh [hostname-2] ok, not db-primary-012\n", Counts{KindHostname: 2}},
		{"short host names only as words", true, "Linux vm 6.18 root@vm: /proc/sys/vm/swappiness vm.max vmalloc\n",
			"Linux [hostname-1] 6.18 root@[hostname-1]: /proc/sys/vm/swappiness vm.max vmalloc\n", Counts{KindHostname: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := NewRedactor(tt.network)
			r.AddHostnames("db-primary-01.example.com", "localhost", "vm")
			got, c := r.Redact([]byte(tt.in))
			if diff := cmp.Diff(tt.want, string(got)); diff != "" {
				t.Errorf("text (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.counts, c); diff != "" {
				t.Errorf("counts (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRedactRealLXDInfo runs redaction over the real `lxc info` of LXD 5.0.2:
// the server certificate goes, the versions the report needs stay.
func TestRedactRealLXDInfo(t *testing.T) {
	t.Parallel()
	in := readTestdata(t, "lxc-info.txt")
	got, c := NewRedactor(false).Redact([]byte(in))
	if c[KindPEM] != 1 || c.Total() != 1 {
		t.Errorf("counts %v, want one PEM block", c)
	}
	if strings.Contains(string(got), "MIIB9zCCAX2gAwIBAgIQ") {
		t.Error("certificate left in")
	}
	for _, keep := range []string{"server_version: 5.0.2", "driver_version: 5.0.2", "kernel_version: 6.18.44-fc-v782", "certificate_fingerprint: dc1033b4"} {
		if !strings.Contains(string(got), keep) {
			t.Errorf("lost %q", keep)
		}
	}
}
