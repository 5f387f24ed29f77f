package metad

import (
	"testing"
	"time"
)

// The stall watch: a tick later than the gap, or a read that finds the
// ticker late, is a stall; reads confirm through the log until the hold
// has passed without another.
func TestStallWatch(t *testing.T) {
	w := newStallWatch(time.Second) // gap 250ms, hold 2s
	ms := func(n int64) int64 { return n * int64(time.Millisecond) }
	w.lastTick.Store(0)
	w.suspectUntil.Store(0)
	steps := []struct {
		tick    bool
		at      int64 // ms
		stalled bool
	}{
		{false, 10, false},
		{true, 10, false},
		{false, 300, true}, // the ticker is late: a read sees the gap first
		{true, 5000, true}, // the ticker sees it: a hold of 2s
		{false, 5010, true},
	}
	for i, s := range steps {
		if s.tick {
			w.tick(ms(s.at))
		}
		if got := w.stalled(ms(s.at)); got != s.stalled {
			t.Fatalf("step %d at %dms: stalled %v, want %v", i, s.at, got, s.stalled)
		}
	}
	// Ticking steadily: stalled until the hold ends, 2s after the stall.
	for at := int64(5010); at <= 7100; at += 10 {
		w.tick(ms(at))
		if got, want := w.stalled(ms(at)), at < 7000; got != want {
			t.Fatalf("steady ticks at %dms: stalled %v, want %v", at, got, want)
		}
	}
}

// A group's leader that stood still confirms a read through the log, and
// the read is answered.
func TestReadAfterStallUsesBarrier(t *testing.T) {
	m := startGroupOfOne(t)
	w := m.rep.stall
	w.suspectUntil.Store(w.now() + int64(time.Hour))
	before := m.stats.readBarriers.Load()
	must(t, m.rep.confirmLead())
	if m.stats.readBarriers.Load() != before+1 {
		t.Fatal("a read after a stall was not confirmed through the log")
	}
	w.suspectUntil.Store(0)
	must(t, m.rep.confirmLead())
	if m.stats.readBarriers.Load() != before+1 {
		t.Fatal("a read without a stall went through the log")
	}
}
