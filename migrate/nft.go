package migrate

import (
	"context"
	"fmt"
	"strings"

	"github.com/ferry-migrate/ferry/internal/host"
)

// CRIU's nftables network lock creates `table inet CRIU-<uuid>` and, on this
// kind of machine, leaves it behind after a dump that kept the tree
// running. ferry removes the tables that appeared during its run and no
// others.

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

// dropCRIUTables deletes the lock tables that exist now but not in before.
func dropCRIUTables(ctx context.Context, h host.Host, before map[string]bool, s *Step) error {
	var dropped []string
	for t := range criuTables(ctx, h) {
		if before[t] {
			continue
		}
		family, name, _ := strings.Cut(t, " ")
		if _, err := h.Run(ctx, []string{"nft", "delete", "table", family, name}, host.RunOptions{}); err != nil {
			return fmt.Errorf("remove CRIU's network-lock table %s: %w", t, err)
		}
		dropped = append(dropped, t)
	}
	if len(dropped) > 0 {
		if s.Notes == nil {
			s.Notes = map[string]string{}
		}
		s.Notes["removed_nft_tables"] = strings.Join(dropped, ", ")
	}
	return nil
}
