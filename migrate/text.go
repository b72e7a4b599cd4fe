package migrate

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteText shows a journal to a person: the outcome, each step with its
// host and duration, the lifted CRIU lines of failed steps, and the figures.
func (j Journal) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "run %s: %s %s\n", j.ID, j.Operation, j.Result)
	if j.Target != "" {
		fmt.Fprintf(w, "target:   %s\n", j.Target)
	}
	if j.Source != "" {
		fmt.Fprintf(w, "source:   %s\n", j.Source)
	}
	if j.Dest != "" {
		fmt.Fprintf(w, "target host: %s\n", j.Dest)
	}
	if j.ImagesDir != "" {
		fmt.Fprintf(w, "images:   %s\n", j.ImagesDir)
	}
	if j.Workload != "" {
		fmt.Fprintf(w, "workload: %s\n", j.Workload)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tHOST\tTIME\tRESULT\tLOG")
	for _, s := range j.Steps {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Name, s.Host, ms(s.Duration), s.Result, s.Log)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range j.Steps {
		if s.Result != StepFailed {
			continue
		}
		fmt.Fprintf(w, "%s failed: %s\n", s.Name, s.Error)
		for _, l := range s.Lifted {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
	if st := j.Stats; st != nil {
		var parts []string
		if st.Downtime > 0 {
			parts = append(parts, "downtime "+ms(st.Downtime))
		}
		if st.FrozenTime > 0 {
			parts = append(parts, "frozen "+ms(st.FrozenTime), "memdump "+ms(st.MemdumpTime), "memwrite "+ms(st.MemwriteTime))
		}
		if st.PagesWritten > 0 {
			parts = append(parts, fmt.Sprintf("pages written %d", st.PagesWritten))
		}
		if st.RestoreTime > 0 {
			parts = append(parts, "restore "+ms(st.RestoreTime), fmt.Sprintf("pages restored %d", st.PagesRestored))
		}
		if st.ImageBytes > 0 {
			parts = append(parts, fmt.Sprintf("images %.1f MiB", float64(st.ImageBytes)/(1<<20)))
		}
		if len(parts) > 0 {
			fmt.Fprintf(w, "stats: %s\n", strings.Join(parts, ", "))
		}
	}
	_, err := fmt.Fprintln(w)
	return err
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
}

// Runs is the list shown by `ferry runs`.
type Runs []Journal

// WriteText lists runs one a line.
func (rs Runs) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tOPERATION\tTARGET\tRESULT\tSTARTED")
	for _, j := range rs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", j.ID, j.Operation, j.Target, j.Result, j.Started.Format(time.RFC3339))
	}
	return tw.Flush()
}
