package xfer

import (
	"testing"
	"time"
)

// The node nearest the end of a pipeline waits least, so it is the first
// to give up on a silent node after it.
func TestHopTimeout(t *testing.T) {
	base, ext := 10*time.Second, 5*time.Second
	for _, c := range []struct {
		downstream int
		want       time.Duration
	}{{0, base}, {1, base}, {2, base + ext}, {3, base + 2*ext}} {
		if got := HopTimeout(base, ext, c.downstream); got != c.want {
			t.Errorf("HopTimeout(%v, %v, %d) = %v, want %v", base, ext, c.downstream, got, c.want)
		}
	}
}
