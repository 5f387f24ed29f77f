package metad

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// Two entries in flight write one key, the first K=1, the second K=2; the
// state machine applies them in that order, but their callers, woken
// together, take the store's lock in the other order, so the second is
// taken out of the overlay first. When that pop rebuilds the overlay (it
// passed overlayRebuild), the rebuilt overlay holds the first entry's
// K=1 and not the second's K=2, which is in the store: the next mutation
// reads K=1 through the overlay, a value two entries old, and builds on
// it. The first entry's pop does not rebuild again (the overlay is small
// now), so every mutation reads the stale K=1 until the list empties.
func TestOverlayRebuildKeepsLaterApplied(t *testing.T) {
	s, err := openStore(filepath.Join(t.TempDir(), "store"), true, 8<<20, nil)
	must(t, err)
	t.Cleanup(func() { _ = s.close() })
	key := []byte("itest")
	big := bytes.Repeat([]byte{'x'}, overlayRebuild+1)

	s.mu.Lock()
	b1 := s.db.NewBatch()
	must(t, b1.Set(key, []byte("1"), nil))
	must(t, b1.Set([]byte("ibig"), big, nil))
	e1, err := s.pushInflight(b1)
	must(t, err)
	b2 := s.db.NewBatch()
	must(t, b2.Set(key, []byte("2"), nil))
	e2, err := s.pushInflight(b2)
	must(t, err)
	s.mu.Unlock()

	// The state machine applies both, in log order.
	for _, b := range []*pebble.Batch{b1, b2} {
		c := s.db.NewBatch()
		must(t, c.SetRepr(append([]byte(nil), b.Repr()...)))
		must(t, c.Commit(pebble.NoSync))
		_ = c.Close()
	}

	// The second's caller pops first.
	s.mu.Lock()
	s.popInflight(e2, false)
	done := s.readThroughOverlay()
	v, err := s.get(key)
	done()
	s.mu.Unlock()
	must(t, err)
	if string(v) != "2" {
		t.Errorf("a mutation built after both entries applied reads %s=%q through the overlay, want %q (the store has it)", key, v, "2")
	}

	s.mu.Lock()
	s.popInflight(e1, false)
	s.mu.Unlock()
}
