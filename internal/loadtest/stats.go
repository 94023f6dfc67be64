package loadtest

import (
	"math"
	"slices"
	"time"
)

// Latencies collects request durations.
type Latencies struct {
	d []time.Duration
}

// Add records one duration.
func (l *Latencies) Add(d time.Duration) { l.d = append(l.d, d) }

// Merge adds every duration of o.
func (l *Latencies) Merge(o *Latencies) { l.d = append(l.d, o.d...) }

// Len is the number of durations recorded.
func (l *Latencies) Len() int { return len(l.d) }

// Quantile returns the q-quantile (0..1, nearest rank), 0 when empty.
func (l *Latencies) Quantile(q float64) time.Duration {
	if len(l.d) == 0 {
		return 0
	}
	if !slices.IsSorted(l.d) {
		slices.Sort(l.d)
	}
	i := int(math.Ceil(q*float64(len(l.d)))) - 1
	return l.d[max(0, min(i, len(l.d)-1))]
}

// Max returns the largest duration.
func (l *Latencies) Max() time.Duration { return l.Quantile(1) }

// median returns the median of xs (the mean of the middle two for an even
// count), NaN when empty.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func slicesSort(s []string) { slices.Sort(s) }
