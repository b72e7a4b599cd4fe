package migrate

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/ferry-migrate/ferry/internal/host"
)

// CRIU's nftables network lock creates `table inet CRIU-<run id>` (the id
// cut to fit the name) and sometimes leaves it behind after a dump that
// kept the tree running. ferry removes the tables of its own CRIU runs,
// found by the run ids their logs open with, and no others: CRIU runs of
// other tools or other ferry runs on the same host keep theirs.

// criuTables lists the CRIU lock tables on h; errors (no nft) give none.
func criuTables(ctx context.Context, h host.Host) map[string]bool {
	t, _ := CRIUTables(ctx, h)
	return t
}

// CRIUTables lists CRIU's network-lock tables on h as "family name".
func CRIUTables(ctx context.Context, h host.Host) (map[string]bool, error) {
	out, err := host.Output(ctx, h, "nft", "list", "tables")
	if err != nil {
		return nil, err
	}
	tables := map[string]bool{}
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) == 3 && f[0] == "table" && strings.HasPrefix(f[2], "CRIU-") {
			tables[f[1]+" "+f[2]] = true
		}
	}
	return tables, nil
}

// runIDs reads the "CRIU run id = ..." lines of CRIU logs.
func runIDs(logs ...string) []string {
	var ids []string
	for _, l := range logs {
		b, err := os.ReadFile(l)
		if err != nil {
			continue
		}
		for _, line := range strings.SplitN(string(b), "\n", 8) {
			if _, id, ok := strings.Cut(line, "CRIU run id = "); ok {
				ids = append(ids, strings.TrimSpace(id))
			}
		}
	}
	return ids
}

// DropRunTables deletes, on h, the lock tables of the CRIU runs that wrote
// logs, and says which in the step's notes (s may be nil).
func DropRunTables(ctx context.Context, h host.Host, s *Step, logs ...string) error {
	ids := runIDs(logs...)
	if len(ids) == 0 {
		return nil
	}
	mine := map[string]bool{}
	for t := range criuTables(ctx, h) {
		_, name, _ := strings.Cut(t, " ")
		for _, id := range ids {
			if short := strings.TrimPrefix(name, "CRIU-"); short != "" && strings.HasPrefix(id, short) {
				mine[t] = true
			}
		}
	}
	return dropTables(ctx, h, mine, s)
}

// dropCRIUTables deletes the lock tables that exist now but not in before.
func dropCRIUTables(ctx context.Context, h host.Host, before map[string]bool, s *Step) error {
	drop := map[string]bool{}
	for t := range criuTables(ctx, h) {
		if !before[t] {
			drop[t] = true
		}
	}
	return dropTables(ctx, h, drop, s)
}

func dropTables(ctx context.Context, h host.Host, tables map[string]bool, s *Step) error {
	var dropped []string
	for t := range tables {
		family, name, _ := strings.Cut(t, " ")
		if _, err := h.Run(ctx, []string{"nft", "delete", "table", family, name}, host.RunOptions{}); err != nil {
			return fmt.Errorf("remove CRIU's network-lock table %s: %w", t, err)
		}
		dropped = append(dropped, t)
	}
	if len(dropped) > 0 && s != nil {
		if s.Notes == nil {
			s.Notes = map[string]string{}
		}
		s.Notes["removed_nft_tables"] = strings.Join(dropped, ", ")
	}
	return nil
}
