package chaos

import (
	"bufio"
	"bytes"
	"strconv"
	"strings"
	"testing"
)

// metric returns the value of an unlabelled metric of node n's /metrics, or
// of the sum of a labelled one's series.
func metric(t *testing.T, n *node, name string) float64 {
	t.Helper()
	r := call("GET", n.base+"/metrics", "", nil)
	if r.status != 200 {
		t.Fatalf("%s /metrics: %v", n.name, r)
	}
	sum, found := 0.0, false
	sc := bufio.NewScanner(bytes.NewReader(r.body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		series, value, ok := strings.Cut(line, " ")
		if !ok || (series != name && !strings.HasPrefix(series, name+"{")) {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("%s: metric line %q: %v", n.name, line, err)
		}
		sum += v
		found = true
	}
	if !found {
		t.Fatalf("%s: metric %s not exported", n.name, name)
	}
	return sum
}
