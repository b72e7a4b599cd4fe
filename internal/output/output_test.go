package output

import (
	"bytes"
	"fmt"
	"io"
	"testing"

	"github.com/google/go-cmp/cmp"
)

type model struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
}

func (m model) WriteText(w io.Writer) error {
	_, err := fmt.Fprintf(w, "%s: %d\n", m.Name, m.Count)
	return err
}

func TestWrite(t *testing.T) {
	t.Parallel()
	m := model{Name: "c1", Count: 0}
	tests := []struct {
		format Format
		want   string
	}{
		{Text, "c1: 0\n"},
		{JSON, "{\n  \"name\": \"c1\",\n  \"count\": 0\n}\n"},
		{YAML, "count: 0\nname: c1\n"},
	}
	for _, tt := range tests {
		t.Run(string(tt.format), func(t *testing.T) {
			var b bytes.Buffer
			if err := Write(&b, tt.format, m); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, b.String()); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	if _, err := ParseFormat("xml"); err == nil {
		t.Error("ParseFormat(xml) succeeded")
	}
	if err := Write(io.Discard, Text, struct{}{}); err == nil {
		t.Error("text of a model without WriteText succeeded")
	}
}
