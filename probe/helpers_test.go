package probe_test

import (
	"encoding/json"
	"io"
	"path/filepath"
	"sort"
)

func sortStrings(s []string) { sort.Strings(s) }

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func filepathGlob(p string) ([]string, error) { return filepath.Glob(p) }
