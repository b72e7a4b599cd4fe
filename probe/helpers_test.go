package probe_test

import (
	"encoding/json"
	"io"
	"sort"
)

func sortStrings(s []string) { sort.Strings(s) }

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
