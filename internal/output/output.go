// Package output renders a command's one data model as text, JSON or YAML.
// Text is the model's own business (it implements Texter); JSON and YAML come
// from its json tags, so the two machine formats never drift apart.
package output

import (
	"encoding/json"
	"fmt"
	"io"

	"sigs.k8s.io/yaml"
)

// Format is an output format named by --output.
type Format string

const (
	Text Format = "text"
	JSON Format = "json"
	YAML Format = "yaml"
)

// Formats lists the accepted --output values.
var Formats = []Format{Text, JSON, YAML}

// ParseFormat checks an --output value.
func ParseFormat(s string) (Format, error) {
	for _, f := range Formats {
		if string(f) == s {
			return f, nil
		}
	}
	return "", fmt.Errorf("unknown output format %q (want text, json or yaml)", s)
}

// Texter is a data model that knows how to show itself to a person.
type Texter interface {
	WriteText(w io.Writer) error
}

// Write renders v to w in format f.
func Write(w io.Writer, f Format, v any) error {
	switch f {
	case JSON:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case YAML:
		b, err := yaml.Marshal(v)
		if err != nil {
			return fmt.Errorf("render yaml: %w", err)
		}
		_, err = w.Write(b)
		return err
	case Text, "":
		t, ok := v.(Texter)
		if !ok {
			return fmt.Errorf("%T has no text form; use --output json", v)
		}
		return t.WriteText(w)
	}
	return fmt.Errorf("unknown output format %q", f)
}
