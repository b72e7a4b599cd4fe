package migrate

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/ferry-migrate/ferry/internal/host"
	"github.com/ferry-migrate/ferry/internal/testenv"
)

// DropRunTables removes the lock table of the CRIU run whose log it is
// given and leaves another run's table alone.
func TestDropRunTables(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "nft")
	ctx := context.Background()
	mine, other := "CRIU-0ffe7700-0000-4000-80", "CRIU-0ffe7711-0000-4000-80"
	for _, name := range []string{mine, other} {
		if out, err := exec.Command("nft", "add", "table", "inet", name).CombinedOutput(); err != nil {
			t.Fatalf("%v %s", err, out)
		}
		t.Cleanup(func() { _ = exec.Command("nft", "delete", "table", "inet", name).Run() })
	}
	log := filepath.Join(t.TempDir(), "dump.log")
	if err := os.WriteFile(log, []byte("(00.000000) CRIU run id = 0ffe7700-0000-4000-8000-000000000000\n(00.000100) Version: 4.2.1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var s Step
	if err := DropRunTables(ctx, host.Local{}, &s, log); err != nil {
		t.Fatal(err)
	}
	tables := criuTables(ctx, host.Local{})
	if tables["inet "+mine] || !tables["inet "+other] {
		t.Errorf("tables after: %v; want %s gone and %s kept", tables, mine, other)
	}
	if s.Notes["removed_nft_tables"] != "inet "+mine {
		t.Errorf("notes = %v", s.Notes)
	}
}
