package blockd

import (
	"sync"
	"testing"
	"time"
)

// TestThrottlerKeepsToTheRate: reads through the throttler wait so that,
// all together, they send no more than the rate: 10 reads of 1,000 bytes
// at 2,000 bytes a second are spread over at least 4.5 s of its clock (the
// first goes at once); idle time earns no credit; rate 0 never waits; a
// new rate applies to the next read.
func TestThrottlerKeepsToTheRate(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1000, 0)
	var slept time.Duration
	th := newThrottler()
	th.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	th.sleep = func(d time.Duration) { mu.Lock(); slept += d; mu.Unlock() }

	th.wait(1000) // no rate: no wait
	if slept != 0 {
		t.Fatalf("no rate: slept %v", slept)
	}
	th.setRate(2000)
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() { defer wg.Done(); th.wait(1000) }()
	}
	wg.Wait()
	// Reservations start at 0, 0.5 s, ..., 4.5 s: the sleeps sum to
	// 0+0.5+...+4.5 = 22.5 s, the last starting 4.5 s after the first.
	if slept != 22500*time.Millisecond {
		t.Fatalf("10 concurrent reads of 1000 bytes at 2000 B/s slept %v in all, want 22.5s", slept)
	}
	if d := th.next.Sub(now); d != 5*time.Second {
		t.Fatalf("the next read may start %v from now, want 5s", d)
	}

	// An hour idle: no credit, the next read goes at once and the one
	// after waits its share.
	mu.Lock()
	now = now.Add(time.Hour)
	slept = 0
	mu.Unlock()
	th.wait(1000)
	th.wait(1000)
	if slept != 500*time.Millisecond {
		t.Fatalf("after an idle hour: slept %v, want 500ms (no credit)", slept)
	}
	th.setRate(0)
	slept = 0
	th.wait(1 << 30)
	if slept != 0 {
		t.Fatalf("rate 0: slept %v", slept)
	}
}
