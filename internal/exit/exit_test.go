package exit

import (
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
)

type hinted struct{}

func (hinted) Error() string { return "low-level" }
func (hinted) Hint() string  { return "install criu" }

func TestCodeAndHints(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		err       error
		wantCode  int
		wantHints []string
	}{
		{"nil", nil, OK, nil},
		{"plain", errors.New("x"), Failure, nil},
		{"usage", Usagef("see --help", "bad %s", "flag"), Usage, []string{"see --help"}},
		{"wrapped code", fmt.Errorf("ctx: %w", New(Incompatible, errors.New("x"), "a")), Incompatible, []string{"a"}},
		{"hinter deep", fmt.Errorf("probe: %w", hinted{}), Failure, []string{"install criu"}},
		{"both no dup", WithHint(fmt.Errorf("w: %w", hinted{}), "install criu", "then retry"), Failure, []string{"install criu", "then retry"}},
		{"keeps code", WithHint(New(Migration, errors.New("x")), "h"), Migration, []string{"h"}},
		{"joined", errors.Join(hinted{}, New(Usage, errors.New("y"), "z")), Usage, []string{"install criu", "z"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := CodeOf(tt.err); got != tt.wantCode {
				t.Errorf("CodeOf = %d, want %d", got, tt.wantCode)
			}
			if diff := cmp.Diff(tt.wantHints, HintsOf(tt.err)); diff != "" {
				t.Errorf("HintsOf (-want +got):\n%s", diff)
			}
		})
	}
}
