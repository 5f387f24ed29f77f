package metad

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"cairn"
)

// fakeClock is a Clock tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// openCfg formats cfg.Dir (a new directory under t's temporary directory
// when empty) and opens it; the store is closed when t ends.
func openCfg(t testing.TB, cfg Config) *Metad {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = filepath.Join(t.TempDir(), "meta")
	}
	if _, err := Format(cfg.Dir, false); err != nil && !strings.Contains(err.Error(), "already formatted") {
		t.Fatal(err)
	}
	m, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// as returns a context whose calls run as user, in groups.
func as(user string, groups ...string) context.Context {
	return cairn.WithIdentity(context.Background(), cairn.Identity{User: user, Groups: groups})
}

// remote returns a context as a call over RPC without identity has it.
func remote() context.Context { return context.WithValue(context.Background(), remoteKey{}, true) }

// dump returns every key and value of m's store, one per line: the whole
// namespace, to compare before and after.
func dump(t testing.TB, m *Metad) string {
	t.Helper()
	return dumpDB(t, m.st.db)
}

func dumpDB(t testing.TB, r pebble.Reader) string {
	t.Helper()
	it, err := r.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var b strings.Builder
	for it.First(); it.Valid(); it.Next() {
		fmt.Fprintf(&b, "%q=%x\n", it.Key(), it.Value())
	}
	if err := it.Error(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// mustCheck fails t unless Check finds dir clean.
func mustCheck(t testing.TB, dir string) *CheckReport {
	t.Helper()
	r, err := Check(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Clean() {
		var b strings.Builder
		r.Write(&b)
		t.Fatalf("check of %s is not clean:\n%s", dir, b.String())
	}
	return r
}

// reopen closes m and opens its directory again with cfg.
func reopen(t testing.TB, m *Metad, cfg Config) *Metad {
	t.Helper()
	cfg.Dir = m.cfg.Dir
	must(t, m.Close())
	m2, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m2.Close() })
	return m2
}

// finalized reports blocks as finalized replicas.
func finalized(blocks ...cairn.Block) []cairn.Replica {
	out := make([]cairn.Replica, len(blocks))
	for i, b := range blocks {
		out[i] = cairn.Replica{Block: b, State: cairn.ReplicaFinalized}
	}
	return out
}
