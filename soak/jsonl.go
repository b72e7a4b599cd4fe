package soak

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Types of JSON lines.
const (
	LineRecord  = "record"
	LineSummary = "summary"
)

// recordLine and summaryLine are a Record and a Summary with the "type"
// field first; the embedded struct's fields follow, flattened.
type recordLine struct {
	Type string `json:"type"`
	Record
}

type summaryLine struct {
	Type string `json:"type"`
	Summary
}

// WriteJSONLine writes v as one compact JSON object and a newline. v is a
// Record or a Summary (or a pointer to one); the object carries the fields
// of its JSON form plus "type": "record" or "summary", so a reader (jq, or
// ReadJSONLines) tells them apart:
//
//	{"type":"record","iteration":1,"workload":"web",...,"outcome":"ok",...}
//	{"type":"summary","schema":"ferry.soak/v1",...,"workloads":[...]}
//
// A soak writes one record line per move as it ends, then the summary line.
// Any other type of v is an error and writes nothing.
func WriteJSONLine(w io.Writer, v any) error {
	var line any
	switch v := v.(type) {
	case Record:
		line = recordLine{LineRecord, v}
	case *Record:
		line = recordLine{LineRecord, *v}
	case Summary:
		line = summaryLine{LineSummary, v}
	case *Summary:
		line = summaryLine{LineSummary, *v}
	default:
		return fmt.Errorf("json line of a %T: want a soak.Record or a soak.Summary", v)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(line); err != nil {
		return fmt.Errorf("encode json line: %w", err)
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// ReadJSONLines reads what WriteJSONLine wrote: the records in their order
// and the summary (nil when the stream has none, as after a soak killed
// before its end). Blank lines are skipped. A line that is not JSON, has
// another "type" or is a second summary is an error naming its line
// number; the records read before it are returned with that error, so a
// file cut off in its last line still yields its records.
func ReadJSONLines(rd io.Reader) ([]Record, *Summary, error) {
	br := bufio.NewReader(rd)
	var (
		records []Record
		summary *Summary
	)
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			if perr := parseLine(line, &records, &summary); perr != nil {
				return records, summary, fmt.Errorf("json line %d: %w", n, perr)
			}
		}
		if errors.Is(err, io.EOF) {
			return records, summary, nil
		}
		if err != nil {
			return records, summary, fmt.Errorf("read json lines: %w", err)
		}
	}
}

func parseLine(line []byte, records *[]Record, summary **Summary) error {
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(line, &head); err != nil {
		return err
	}
	switch head.Type {
	case LineRecord:
		var r recordLine
		if err := json.Unmarshal(line, &r); err != nil {
			return err
		}
		*records = append(*records, r.Record)
	case LineSummary:
		if *summary != nil {
			return errors.New("a second summary")
		}
		var s summaryLine
		if err := json.Unmarshal(line, &s); err != nil {
			return err
		}
		*summary = &s.Summary
	default:
		return fmt.Errorf("type %q: want %q or %q", head.Type, LineRecord, LineSummary)
	}
	return nil
}
