package loadtest

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Row is one figure of a scenario: its median over the runs, each run's
// value, the baseline measured in the same run, and the target it is held
// to, if any.
type Row struct {
	Name  string    `json:"name"`
	Unit  string    `json:"unit"`
	Value float64   `json:"value"`
	Runs  []float64 `json:"runs,omitempty"`
	// Baseline is the same figure for the scenario's baseline (NaN: none).
	Baseline     float64 `json:"-"`
	BaselineName string  `json:"baseline_name,omitempty"`
	// Target reads like "≥ 0.6"; Met says whether Value meets it.
	Target string `json:"target,omitempty"`
	Met    *bool  `json:"met,omitempty"`
	Note   string `json:"note,omitempty"`
}

// MarshalJSON writes a missing value or baseline (NaN) as null and an
// infinite one (an offline transition that never came) as "inf".
func (r Row) MarshalJSON() ([]byte, error) {
	type plain Row
	runs := make([]any, len(r.Runs))
	for i, v := range r.Runs {
		runs[i] = jsonNumber(v)
	}
	out := struct {
		plain
		Value    any   `json:"value"`
		Runs     []any `json:"runs,omitempty"`
		Baseline any   `json:"baseline,omitempty"`
	}{plain: plain(r), Value: jsonNumber(r.Value), Runs: runs, Baseline: jsonNumber(r.Baseline)}
	return json.Marshal(out)
}

// jsonNumber is v, or nil for NaN, or "inf" for +Inf.
func jsonNumber(v float64) any {
	switch {
	case math.IsNaN(v):
		return nil
	case math.IsInf(v, 1):
		return "inf"
	case math.IsInf(v, -1):
		return "-inf"
	}
	return v
}

// ScenarioReport is what a scenario measured.
type ScenarioReport struct {
	Name    string         `json:"name"`
	Title   string         `json:"title"`
	Params  map[string]any `json:"params"`
	Rows    []Row          `json:"rows"`
	Notes   []string       `json:"notes,omitempty"`
	Seconds float64        `json:"seconds"`
	// Skipped says why the scenario did not run ("" when it did).
	Skipped string `json:"skipped,omitempty"`
}

// row adds a figure.
func (s *ScenarioReport) row(r Row) { s.Rows = append(s.Rows, r) }

// note adds a free-text remark printed under the table.
func (s *ScenarioReport) note(format string, args ...any) {
	s.Notes = append(s.Notes, fmt.Sprintf(format, args...))
}

// Machine describes where the suite ran.
type Machine struct {
	CPUs     int    `json:"cpus"`
	CPUModel string `json:"cpu_model"`
	MemTotal string `json:"mem_total"`
	Kernel   string `json:"kernel"`
	Go       string `json:"go"`
	Redis    string `json:"redis"`
}

// Report is a whole run of the suite.
type Report struct {
	Started time.Time `json:"started"`
	Seconds float64   `json:"seconds"`
	// LoadAvg is /proc/loadavg at the start and at the end: other
	// processes on the machine skew every throughput figure.
	LoadAvg   [2]string        `json:"load_avg"`
	Command   string           `json:"command"`
	Machine   Machine          `json:"machine"`
	Scenarios []ScenarioReport `json:"scenarios"`
}

// machine reads the machine's description from /proc.
func machine(redisVersion string) Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), Redis: redisVersion}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				m.CPUModel = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
				kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
				m.MemTotal = fmt.Sprintf("%.1f GiB", kb/(1<<20))
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

// loadAvg is the first three fields of /proc/loadavg.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// met returns whether v meets a target of "≥ x" or "≤ x" and the target
// text.
func atLeast(v, x float64) *bool { ok := v >= x; return &ok }
func atMost(v, x float64) *bool  { ok := v <= x; return &ok }

// format renders a number with a precision that suits its size.
func format(v float64) string {
	switch {
	case math.IsNaN(v):
		return "-"
	case math.IsInf(v, 1):
		return "∞"
	case v == 0:
		return "0"
	case math.Abs(v) >= 1000:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case math.Abs(v) >= 100:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case math.Abs(v) >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
}

// PrintTable writes the scenario as an aligned text table.
func (s ScenarioReport) PrintTable(w io.Writer) {
	fmt.Fprintf(w, "\n== %s (%s) ==\n", s.Title, s.Name)
	if s.Skipped != "" {
		fmt.Fprintf(w, "skipped: %s\n", s.Skipped)
		return
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "figure\tvalue\tunit\tbaseline\ttarget\truns")
	for _, r := range s.Rows {
		base := format(r.Baseline)
		if r.BaselineName != "" && !math.IsNaN(r.Baseline) {
			base += " (" + r.BaselineName + ")"
		}
		target := r.Target
		if r.Met != nil {
			if *r.Met {
				target += " MET"
			} else {
				target += " MISSED"
			}
		}
		runs := make([]string, len(r.Runs))
		for i, v := range r.Runs {
			runs[i] = format(v)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, format(r.Value), r.Unit, base, target, strings.Join(runs, " "))
	}
	_ = tw.Flush()
	for _, n := range s.Notes {
		fmt.Fprintf(w, "  - %s\n", n)
	}
	fmt.Fprintf(w, "  (%.1fs)\n", s.Seconds)
}

// writeJSON writes v as indented JSON to path.
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
