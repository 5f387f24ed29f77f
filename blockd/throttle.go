package blockd

import (
	"sync"
	"time"

	"cairn"
)

// throttler bounds the bytes a second that the balancer's copies send,
// all of them together (HDFS's DataTransferThrottler, at
// dfs.datanode.balance.bandwidthPerSec). Each read reserves its bytes' share
// of time after the reservations before it and waits for its turn, so the
// copies together keep to the rate whatever their number; idle time earns
// no credit. The rate is the one of the latest balancer copy metad sent (a
// balancer's -bandwidth); 0 is no limit.
type throttler struct {
	mu    sync.Mutex
	rate  int64     // bytes a second; 0: no limit
	next  time.Time // when the next reservation may start
	now   func() time.Time
	sleep func(time.Duration)
}

func newThrottler() *throttler { return &throttler{now: time.Now, sleep: time.Sleep} }

// setRate sets the bytes a second.
func (t *throttler) setRate(rate int64) {
	t.mu.Lock()
	t.rate = max(0, rate)
	t.mu.Unlock()
}

// wait blocks until n more bytes may go.
func (t *throttler) wait(n int) {
	t.mu.Lock()
	if t.rate <= 0 || n <= 0 {
		t.mu.Unlock()
		return
	}
	now := t.now()
	if t.next.Before(now) {
		t.next = now
	}
	d := t.next.Sub(now)
	t.next = t.next.Add(time.Duration(float64(n) / float64(t.rate) * float64(time.Second)))
	t.mu.Unlock()
	if d > 0 {
		t.sleep(d)
	}
}

// throttledSource is a replica read at the throttler's pace.
type throttledSource struct {
	Source
	t *throttler
}

func (s throttledSource) ReadChunks(first, count int64, buf []byte) ([]byte, []uint64, error) {
	data, sums, err := s.Source.ReadChunks(first, count, buf)
	s.t.wait(len(data))
	return data, sums, err
}

var _ Source = throttledSource{}

// balancerCopy reports whether c is a balancer move's copy, which goes at
// the balancer's bandwidth.
func balancerCopy(c cairn.Command) bool { return c.Kind == cairn.CmdTransfer && c.Bandwidth > 0 }
