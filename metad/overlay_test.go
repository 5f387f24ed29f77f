package metad

import (
	"context"
	"fmt"
	"io/fs"
	"net"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"

	"cairn"
)

// inflightCount is how many entries the leader has in flight.
func inflightCount(m *Metad) int {
	m.st.mu.Lock()
	defer m.st.mu.Unlock()
	return len(m.st.inflight)
}

// waitInflight waits until n entries are in flight.
func waitInflight(t *testing.T, m *Metad, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for inflightCount(m) != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d entries in flight, want %d: a mutation waits for the one before it to commit", inflightCount(m), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// holdApplies makes the member's state machine wait before each entry
// until the returned func is called, and returns that func.
func holdApplies(m *Metad) func() {
	gate := make(chan struct{})
	hook := func(*raft.Log) { <-gate }
	m.rep.fsm.beforeApply.Store(&hook)
	return func() { m.rep.fsm.beforeApply.Store(nil); close(gate) }
}

// A group's leader builds and proposes the next mutation while the one
// before it is still being committed (group commit): the second reads the
// first's change through the overlay (a file in the directory the first
// made), and a call that only reads sees neither until they commit.
func TestGroupPipelinesMutations(t *testing.T) {
	m := startGroupOfOne(t)
	ctx := context.Background()
	release := holdApplies(m)
	defer func() {
		if m.rep.fsm.beforeApply.Load() != nil {
			release()
		}
	}()

	errs := make(chan error, 2)
	go func() { errs <- m.Mkdir(ctx, "/d", 0o755) }()
	waitInflight(t, m, 1)
	go func() {
		_, err := m.Create(ctx, "/d/f", cairn.CreateOptions{Perm: 0o644, Client: "c1", Closed: true})
		errs <- err
	}()
	waitInflight(t, m, 2)
	// Neither is committed: a read does not see them.
	if _, err := m.Stat(ctx, "/d"); cairn.KindOf(err) != cairn.KindNotExist {
		t.Fatalf("stat of a directory whose mkdir is not committed: %v, want not found", err)
	}
	release()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	fi, err := m.Stat(ctx, "/d/f")
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode.IsDir() || fi.Mode&fs.ModePerm != 0o644 {
		t.Fatalf("/d/f: %+v", fi)
	}
	if n := inflightCount(m); n != 0 || m.st.overlay != nil {
		t.Fatalf("after the commits: %d in flight, overlay %v", n, m.st.overlay != nil)
	}
}

// Many mutations at once, each depending on the one before it in its own
// chain: every one succeeds, and the store ends as a single metad's does
// after the same calls.
func TestGroupPipelineChains(t *testing.T) {
	m := startGroupOfOne(t)
	single := openCfg(t, Config{Clock: newFakeClock()})
	ctx := context.Background()
	const chains = 16
	run := func(m *Metad, i int) error {
		d := fmt.Sprintf("/c%02d", i)
		steps := []func() error{
			func() error { return m.Mkdirs(ctx, d+"/sub", 0o755) },
			func() error {
				_, err := m.Create(ctx, d+"/sub/f", cairn.CreateOptions{Perm: 0o644, Client: "c1", Closed: true})
				return err
			},
			func() error { return m.Rename(ctx, d+"/sub/f", d+"/g") },
			func() error { return m.Mkdir(ctx, d+"/sub/x", 0o700) },
			func() error { return m.Delete(ctx, d+"/sub/x", false) },
		}
		for n, s := range steps {
			if err := s(); err != nil {
				return fmt.Errorf("chain %d step %d: %w", i, n, err)
			}
		}
		return nil
	}
	errs := make(chan error, chains)
	for i := range chains {
		go func() { errs <- run(m, i) }()
	}
	for range chains {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for i := range chains {
		must(t, run(single, i))
	}
	for i := range chains {
		for _, p := range []string{"/c%02d/g", "/c%02d/sub"} {
			p = fmt.Sprintf(p, i)
			a, err := m.Stat(ctx, p)
			must(t, err)
			b, err := single.Stat(ctx, p)
			must(t, err)
			if a.Mode != b.Mode || a.Size != b.Size {
				t.Fatalf("%s: group %+v, single %+v", p, a, b)
			}
		}
		if _, err := m.Stat(ctx, fmt.Sprintf("/c%02d/sub/x", i)); cairn.KindOf(err) != cairn.KindNotExist {
			t.Fatalf("deleted dir: %v", err)
		}
	}
}

// When an entry in flight fails (the member stops leading), the entries
// built on it may never commit: nothing more is proposed until the member
// leads again, and the failed calls say the change may or may not be
// applied.
func TestGroupPipelineBreaksOnLostLeadership(t *testing.T) {
	m := startGroupOfOne(t)
	ctx := context.Background()
	release := holdApplies(m)
	errs := make(chan error, 2)
	go func() { errs <- m.Mkdir(ctx, "/a", 0o755) }()
	waitInflight(t, m, 1)
	go func() { errs <- m.Mkdir(ctx, "/a/b", 0o755) }()
	waitInflight(t, m, 2)
	shut := m.rep.r.Shutdown()
	release()
	must(t, shut.Error())
	failed := 0
	for range 2 {
		err := <-errs
		if err == nil {
			continue // committed before the shutdown
		}
		failed++
		if k := cairn.KindOf(err); k != cairn.KindUnavailable && k != cairn.KindNotLeader {
			t.Fatalf("a mutation in flight at shutdown: %v (%v), want unavailable or not leader", err, k)
		}
	}
	err := m.Mkdir(ctx, "/c", 0o755)
	switch k := cairn.KindOf(err); {
	case failed > 0 && k != cairn.KindNotLeader:
		t.Fatalf("a mutation after the pipeline broke: %v, want not leader (nothing proposed)", err)
	case k != cairn.KindNotLeader && k != cairn.KindUnavailable:
		t.Fatalf("a mutation after the shutdown: %v, want not leader or unavailable", err)
	}
	t.Logf("%d of the 2 in flight failed; then: %v", failed, err)
}

// A SetXattr in flight, then the file's Delete: the deletion of the
// file's xattr keys reads through the overlay too, so none is left for an
// inode that no longer exists.
func TestGroupPipelineDeleteAfterXattrInFlight(t *testing.T) {
	m := startGroupOfOne(t)
	ctx := context.Background()
	_, err := m.Create(ctx, "/f", cairn.CreateOptions{Perm: 0o644, Client: "c1", Closed: true})
	must(t, err)
	in, err := m.resolve("t", "/f")
	must(t, err)
	release := holdApplies(m)
	errs := make(chan error, 2)
	go func() { errs <- m.SetXattr(ctx, "/f", "user.a", []byte("v"), 0) }()
	waitInflight(t, m, 1)
	go func() { errs <- m.Delete(ctx, "/f", false) }()
	waitInflight(t, m, 2)
	release()
	for range 2 {
		must(t, <-errs)
	}
	p := xattrPrefix(in.Id)
	it, err := m.st.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	must(t, err)
	defer it.Close()
	if it.First() {
		t.Fatalf("inode %d deleted, but its xattr key %q remains", in.Id, it.Key())
	}
}

// Raft refuses an entry (a leadership transfer is under way) while the
// member stays leader in the same term, and a mutation already built on
// it through the overlay is proposed after the transfer gave up: the
// state machine drops it (its pipeline has a gap), its caller hears that
// it was not applied, and the pipeline opens again without a change of
// leader.
func TestGroupPipelineDropsEntryBuiltOnRefusedOne(t *testing.T) {
	m := startGroupOfOne(t)
	ctx := context.Background()
	// A non-voter that never answers: a transfer to it stays under way
	// until it times out.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			time.AfterFunc(300*time.Millisecond, func() { c.Close() })
		}
	}()
	addr := raft.ServerAddress(l.Addr().String())
	must(t, m.rep.r.AddNonvoter("x", addr, 0, 0).Error())

	// A is built and held before it is proposed, until the transfer is
	// under way; C is built on A and held until A has failed.
	aBuilt, aGo := make(chan struct{}), make(chan struct{})
	cBuilt, cGo := make(chan struct{}), make(chan struct{})
	errA, errC := make(chan error, 1), make(chan error, 1)
	go func() {
		errA <- m.mutate(ctx, func(b *pebble.Batch) error {
			close(aBuilt)
			<-aGo
			return b.Set([]byte("xA"), []byte("1"), nil)
		})
	}()
	<-aBuilt
	go func() {
		errC <- m.mutate(ctx, func(b *pebble.Batch) error {
			if _, err := m.st.get([]byte("xA")); err != nil {
				return fmt.Errorf("C does not see A through the overlay: %w", err)
			}
			close(cBuilt)
			<-cGo
			return b.Set([]byte("xC"), []byte("built on xA"), nil)
		})
	}()
	transfer := make(chan error, 1)
	go func() { transfer <- m.rep.r.LeadershipTransferToServer("x", addr).Error() }()
	time.Sleep(50 * time.Millisecond) // the transfer starts (if not, A commits and C too: no harm, the test says so)
	close(aGo)
	var ec error
	built := false
	select {
	case <-cBuilt:
		// C holds the store's lock, built on A; it proposes once the
		// transfer is over, when Raft takes entries again.
		built = true
		<-transfer
		close(cGo)
		ec = <-errC
	case ec = <-errC:
		// A's failure closed the pipeline before C took the lock.
		<-transfer
	}
	ea := <-errA
	t.Logf("A: %v; C: %v (built on A: %v)", ea, ec, built)
	_, errXA := m.st.get([]byte("xA"))
	_, errXC := m.st.get([]byte("xC"))
	if errXA != nil && errXC == nil {
		t.Fatalf("C, built on A, is in the store and A is not (A: %v; C: %v)", ea, ec)
	}
	if ec == nil && errXC != nil {
		t.Fatalf("C's caller was told it was applied, and it is not in the store")
	}
	// The pipeline opens again, while the member still leads.
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := m.Mkdir(ctx, "/z", 0o755)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mutations still refused 20s after the failure: %v (state %v)", err, m.rep.r.State())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The state machine's admission of pipelined entries (raftadmit.go).
func TestPipelineAdmission(t *testing.T) {
	p := pipeState{lastChange: 5}
	h := func(term, gen, base, seq uint64) pipeHeader { return pipeHeader{term, gen, base, seq} }
	steps := []struct {
		h     pipeHeader
		index uint64
		ok    bool
	}{
		{h(2, 1, 4, 1), 6, false}, // starts from index 4, but 5 changed the store since
		{h(2, 1, 5, 1), 7, true},  // a pipeline from 5
		{h(2, 1, 5, 2), 8, true},
		{h(2, 1, 5, 4), 9, false}, // 3 is missing
		{h(2, 1, 5, 5), 10, false},
		{h(2, 2, 8, 1), 11, true}, // reopened from 8
		{h(2, 1, 5, 1), 12, false},
		{h(3, 1, 11, 2), 13, false}, // no start
		{h(3, 1, 11, 1), 14, true},
	}
	for i, s := range steps {
		var ok bool
		p, ok = p.admit(s.h, s.index)
		if ok != s.ok {
			t.Fatalf("step %d (%+v at %d): admitted %v, want %v", i, s.h, s.index, ok, s.ok)
		}
	}
	if p.lastChange != 14 || p.seq != 1 {
		t.Fatalf("end state %+v", p)
	}
}

// The state machine drops a pipelined entry after a gap, changes nothing
// for it, answers errDropped, records it as dropped (a restart's replay
// does not take its call as made), and keeps its pipeline record across a
// restart.
func TestFSMDropsEntryAfterGap(t *testing.T) {
	m := openCfg(t, Config{Clock: newFakeClock()})
	f, err := newRaftFSM(m)
	must(t, err)
	entry := func(key string, seq uint64) []byte {
		b := m.st.db.NewBatch()
		defer b.Close()
		must(t, b.Set([]byte(key), []byte("v"), nil))
		return encodePiped(pipeHeader{term: 1, gen: 1, base: 0, seq: seq}, encodeEntry(entryBatch, b))
	}
	apply := func(index uint64, data []byte) any {
		return f.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: data})
	}
	if r := apply(1, entry("x1", 1)); r != nil {
		t.Fatalf("first entry: %v", r)
	}
	if r := apply(2, entry("x3", 3)); r != errDropped {
		t.Fatalf("entry after a gap: %v, want errDropped", r)
	}
	if r := apply(3, entry("x4", 4)); r != errDropped {
		t.Fatalf("entry after a dropped one: %v, want errDropped", r)
	}
	if _, err := m.st.get([]byte("x1")); err != nil {
		t.Fatal("the admitted entry is not in the store")
	}
	for _, k := range []string{"x3", "x4"} {
		if _, err := m.st.get([]byte(k)); err == nil {
			t.Fatalf("dropped entry's %s is in the store", k)
		}
	}
	if f.appliedIndex() != 3 || !f.wasDropped(2) || !f.wasDropped(3) || f.wasDropped(1) {
		t.Fatalf("applied %d, dropped 1 %v 2 %v 3 %v", f.appliedIndex(), f.wasDropped(1), f.wasDropped(2), f.wasDropped(3))
	}
	// A restart: the state machine's record comes back from the store.
	f2, err := newRaftFSM(m)
	must(t, err)
	if f2.pipe != f.pipe {
		t.Fatalf("pipeline state after a restart %+v, want %+v", f2.pipe, f.pipe)
	}
}
