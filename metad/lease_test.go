package metad

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"cairn"
	"cairn/trust"
)

func leaseConfig(clk *fakeClock) Config {
	return Config{Clock: clk, LeaseSoft: time.Minute, LeaseHard: time.Hour}
}

func stat(t testing.TB, m *Metad, path string) cairn.FileInfo {
	t.Helper()
	fi, err := m.Stat(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	return fi
}

// TestLeaseSoftLimit: within the soft limit a file being written is its
// writer's; past it, another client's Create recovers and closes it at the
// length its reported replicas have, and Append may take it over.
func TestLeaseSoftLimit(t *testing.T) {
	clk := newFakeClock()
	m := openCfg(t, leaseConfig(clk))
	ctx := context.Background()
	fakeNode(t, m, "DS-1")
	blocks := writeFile(t, ctx, m, "/f", "c1", "", true, testBlock, 0)
	// The last block's replica reports 1234 bytes; metad recorded none.
	last := blocks[1]
	last.Len = 1234
	must(t, m.BlocksReceived(ctx, "DS-1", finalized(last)))

	clk.Add(59 * time.Second)
	_, err := m.Create(ctx, "/f", cairn.CreateOptions{Client: "c2"})
	if !errors.Is(err, cairn.ErrExist) || !stat(t, m, "/f").Writing {
		t.Fatalf("create by another client within the soft limit: %v, writing %v; want ErrExist and the file still open", err, stat(t, m, "/f").Writing)
	}
	if r, err := m.tryTakeOver("/f", "c2"); !errors.Is(err, cairn.ErrBusy) || r != nil {
		t.Fatalf("take-over within the soft limit: %v, %v; want ErrBusy", r, err)
	}
	// The writer renews; a minute after that it is still its.
	must(t, m.RenewLease(ctx, "c1"))
	clk.Add(59 * time.Second)
	if _, err := m.tryTakeOver("/f", "c2"); !errors.Is(err, cairn.ErrBusy) {
		t.Fatalf("take-over 59 s after a renewal: %v, want ErrBusy", err)
	}
	clk.Add(time.Second)
	_, err = m.Create(ctx, "/f", cairn.CreateOptions{Client: "c2"})
	if !errors.Is(err, cairn.ErrExist) || !strings.Contains(err.Error(), "recovered") {
		t.Fatalf("create past the soft limit: %v, want ErrExist saying the lease is being recovered", err)
	}
	// The file stays open until its last block's replicas agree: the old
	// writer can do nothing meanwhile, and an append is told to retry.
	if fi := stat(t, m, "/f"); !fi.Writing {
		t.Fatalf("closed before its block recovery")
	}
	if _, _, err := m.Append(ctx, "/f", "c2"); !errors.Is(err, cairn.ErrRetry) {
		t.Errorf("append during the block recovery: %v, want ErrRetry", err)
	}
	if _, err := m.AddBlock(ctx, cairn.WriterRef{Path: "/f", Client: "c1"}, &last, nil); !errors.Is(err, cairn.ErrBusy) {
		t.Errorf("the old writer during recovery: %v, want ErrBusy", err)
	}
	if n := playPrimary(t, m, "DS-1", map[cairn.BlockID]int64{last.ID: 1234}); n != 1 {
		t.Fatalf("%d block recoveries handed to the primary, want 1", n)
	}
	fi := stat(t, m, "/f")
	if fi.Writing || fi.Size != testBlock+1234 {
		t.Errorf("after recovery: writing %v, size %d; want closed at %d", fi.Writing, fi.Size, testBlock+1234)
	}
	if _, err := m.AddBlock(ctx, cairn.WriterRef{Path: "/f", Client: "c1"}, &last, nil); !errors.Is(err, cairn.ErrPermission) {
		t.Errorf("the old writer after recovery: %v, want ErrPermission (not open)", err)
	}

	// Append's take-over of a file whose writer passed the soft limit.
	writeFile(t, ctx, m, "/g", "c3", "", true)
	clk.Add(time.Minute)
	r, err := m.tryTakeOver("/g", "c4")
	if err != nil || r == nil || r.holder != "c3" {
		t.Fatalf("take-over past the soft limit: %+v, %v", r, err)
	}
	mustCheckOpen(t, m)
}

// tryTakeOver runs takeOver for client in a batch of its own, as Append
// would, and commits what it changed.
func (m *Metad) tryTakeOver(path, client string) (*recovered, error) {
	var r *recovered
	err := m.mutate(context.Background(), func(b *pebble.Batch) error {
		in, err := m.resolve("test", path)
		if err != nil {
			return err
		}
		r, err = m.takeOver("test", path, b, in, client)
		return err
	})
	if r != nil {
		m.afterRecovery(r)
	}
	return r, err
}

// TestLeaseHardLimit: past the hard limit metad closes abandoned files
// itself: at the length it recorded (Fsync), at the length the replicas
// reported, or without an empty last block. Files whose writers renew are
// left alone, and a restarted metad counts its writers as renewed then.
func TestLeaseHardLimit(t *testing.T) {
	clk := newFakeClock()
	cfg := leaseConfig(clk)
	m := openCfg(t, cfg)
	ctx := context.Background()
	fakeNode(t, m, "DS-1")

	synced := writeFile(t, ctx, m, "/synced", "dead1", "", true, testBlock, 0)
	s := synced[1]
	s.Len = 500
	must(t, m.Fsync(ctx, cairn.WriterRef{Path: "/synced", Client: "dead1"}, s))
	reported := writeFile(t, ctx, m, "/reported", "dead2", "", true, 0)
	r := reported[0]
	r.Len = 777
	must(t, m.BlocksReceived(ctx, "DS-1", finalized(r)))
	writeFile(t, ctx, m, "/empty", "dead3", "", true, testBlock, 0)
	writeFile(t, ctx, m, "/none", "dead4", "", true)
	writeFile(t, ctx, m, "/alive", "alive", "", true, 0)

	clk.Add(59 * time.Minute)
	must(t, m.RenewLease(ctx, "alive"))
	if n, err := m.recoverExpiredLeases(); err != nil || n != 0 {
		t.Fatalf("before the hard limit: recovered %d, %v", n, err)
	}
	// metad restarts: every writer counts as renewed now.
	m = reopen(t, m, cfg)
	fakeNode(t, m, "DS-1")
	// Its full report: /reported's replica, and /synced's being written.
	must(t, m.BlockReport(ctx, "DS-1", []cairn.Replica{{Block: r, State: cairn.ReplicaFinalized}, {Block: s, State: cairn.ReplicaRWR}}))
	clk.Add(59 * time.Minute)
	must(t, m.RenewLease(ctx, "alive"))
	if n, err := m.recoverExpiredLeases(); err != nil || n != 0 {
		t.Fatalf("59 minutes after a restart: recovered %d, %v", n, err)
	}
	clk.Add(time.Minute)
	fakeNode(t, m, "DS-1") // a heartbeat: its replica is live
	if n, err := m.recoverExpiredLeases(); err != nil || n != 4 {
		t.Fatalf("past the hard limit: recovered %d, %v; want 4", n, err)
	}
	// /none closes at once, and so does /empty, whose empty last block
	// nobody reported (its pipeline was forgotten in the restart); the
	// others once their last block is recovered: /synced's replica holds
	// what was synced, /reported's what it reported.
	lens := map[cairn.BlockID]int64{s.ID: 500, r.ID: 777}
	if n := playPrimary(t, m, "DS-1", lens); n != 2 {
		t.Fatalf("%d block recoveries handed to the primary, want 2", n)
	}
	for path, size := range map[string]int64{"/synced": testBlock + 500, "/reported": 777, "/empty": testBlock, "/none": 0} {
		if fi := stat(t, m, path); fi.Writing || fi.Size != size {
			t.Errorf("%s: writing %v, size %d; want closed at %d", path, fi.Writing, fi.Size, size)
		}
	}
	if fb, _ := m.BlockLocations(ctx, cairn.FileRef{Path: "/empty"}); len(fb.Blocks) != 1 {
		t.Errorf("/empty keeps %d blocks, want 1 (its empty last block dropped)", len(fb.Blocks))
	}
	if !stat(t, m, "/alive").Writing {
		t.Error("a renewing writer lost its file")
	}
	mustCheckOpen(t, m)
}

// TestLeaseGrantTime: a lease granted by a call that does not renew (as
// Append grants one) counts from its grant time, not from the holder's
// last renewal: a metad up for longer than the hard limit does not take a
// freshly granted file back.
func TestLeaseGrantTime(t *testing.T) {
	clk := newFakeClock()
	m := openCfg(t, leaseConfig(clk))
	ctx := context.Background()
	writeFile(t, ctx, m, "/f", "c", "", false)
	clk.Add(2 * time.Hour)
	must(t, m.mutate(ctx, func(b *pebble.Batch) error { // what Append does
		in, err := m.resolve("test", "/f")
		if err != nil {
			return err
		}
		in.LeaseHolder, in.LeaseNs = "appender", clk.Now().UnixNano()
		return setInode(b, in)
	}))
	if n, err := m.recoverExpiredLeases(); err != nil || n != 0 {
		t.Fatalf("a lease granted now: recovered %d, %v", n, err)
	}
	if _, err := m.tryTakeOver("/f", "other"); !errors.Is(err, cairn.ErrBusy) {
		t.Fatalf("take-over of a lease granted now: %v, want ErrBusy", err)
	}
	clk.Add(time.Hour)
	if n, err := m.recoverExpiredLeases(); err != nil || n != 1 {
		t.Fatalf("an hour after the grant: recovered %d, %v; want 1", n, err)
	}
}

// TestAppendable: what Append needs resolved: a regular file its caller
// may write, whose lease is free, its own, or past the soft limit.
func TestAppendable(t *testing.T) {
	clk := newFakeClock()
	m := fixture(t, leaseConfig(clk))
	try := func(ctx context.Context, path, client string) (*recovered, error) {
		var r *recovered
		err := m.mutate(ctx, func(b *pebble.Batch) error {
			in, rr, err := m.appendable(ctx, "test", path, client, b)
			if err != nil {
				return err
			}
			r = rr
			in.LeaseHolder, in.LeaseNs = client, clk.Now().UnixNano()
			return setInode(b, in)
		})
		if r != nil {
			m.afterRecovery(r)
		}
		return r, err
	}
	for _, c := range []struct {
		name   string
		ctx    context.Context
		path   string
		client string
		want   *cairn.Error
	}{
		{"no write permission", bob, "/pub/af", "b", cairn.ErrAccess},
		{"no search permission", bob, "/home/alice/f", "b", cairn.ErrAccess},
		{"a directory", context.Background(), "/pub", "b", cairn.ErrIsDir},
		{"a fifo", context.Background(), "/pub/fifo", "b", cairn.ErrInvalid},
		{"no client", alice, "/pub/af", "", cairn.ErrInvalid},
		{"another's live lease", context.Background(), "/a/w", "c2", cairn.ErrBusy},
	} {
		if _, err := try(c.ctx, c.path, c.client); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want kind %q", c.name, err, c.want.Kind)
		}
	}
	if r, err := try(alice, "/pub/af", "a1"); err != nil || r != nil {
		t.Fatalf("alice appends to her file: %v, %v", r, err)
	}
	if r, err := try(alice, "/pub/af", "a1"); err != nil || r != nil {
		t.Fatalf("the holder appends again: %v, %v", r, err)
	}
	clk.Add(time.Minute)
	if r, err := try(context.Background(), "/a/w", "c2"); err != nil || r == nil || r.holder != "c1" {
		t.Fatalf("take-over past the soft limit: %+v, %v", r, err)
	}
}

// playPrimary acts as blockd node, the primary of every block recovery
// metad hands it on a heartbeat: a block in lens is recovered to that
// length on node; any other has no replica anywhere. It returns how many
// recoveries it ran.
func playPrimary(t testing.TB, m *Metad, node string, lens map[cairn.BlockID]int64) int {
	t.Helper()
	ctx := context.Background()
	cmds, err := m.Heartbeat(ctx, cairn.Heartbeat{StorageID: node, Capacity: 1 << 40, Remaining: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range cmds {
		if c.Kind != cairn.CmdRecover {
			continue
		}
		n++
		b := c.Blocks[0]
		cs := cairn.CommitSync{Block: b, RecoveryID: c.RecoveryID, NewGenStamp: c.RecoveryID}
		if l, ok := lens[b.ID]; ok {
			cs.NewLen, cs.Nodes = l, []string{node}
		} else {
			cs.Delete = true
		}
		if err := m.CommitBlockSynchronization(ctx, cs); err != nil {
			t.Fatalf("commit the recovery of %s: %v", b, err)
		}
		// A second report of the same recovery is refused.
		if err := m.CommitBlockSynchronization(ctx, cs); !errors.Is(err, cairn.ErrInvalid) {
			t.Errorf("a repeated commit of recovery %d: %v, want ErrInvalid", c.RecoveryID, err)
		}
	}
	return n
}

// TestCommitSyncOnlyFromThePrimary: a block recovery's outcome counts
// only from the blockd certificate of the primary metad named for it:
// another blockd that knows (or guesses: they are generation stamps) the
// recovery ID is refused, and the file stays under recovery.
func TestCommitSyncOnlyFromThePrimary(t *testing.T) {
	clk := newFakeClock()
	m := openCfg(t, leaseConfig(clk))
	ctx := context.Background()
	fakeNode(t, m, "DS-1")
	fakeNode(t, m, "DS-2")
	blocks := writeFile(t, ctx, m, "/f", "c1", "", true, testBlock, 0)
	last := blocks[1]
	last.Len = 1234
	must(t, m.BlocksReceived(ctx, "DS-1", finalized(last)))
	must(t, m.BlocksReceived(ctx, "DS-2", finalized(last)))
	clk.Add(61 * time.Second)
	if _, err := m.Create(ctx, "/f", cairn.CreateOptions{Client: "c2"}); !errors.Is(err, cairn.ErrExist) {
		t.Fatalf("create past the soft limit: %v", err)
	}
	var cs *cairn.CommitSync
	var primary, other string
	for _, n := range []string{"DS-1", "DS-2"} {
		cmds, err := m.Heartbeat(ctx, cairn.Heartbeat{StorageID: n, Capacity: 1 << 40, Remaining: 1 << 40})
		must(t, err)
		for _, c := range cmds {
			if c.Kind == cairn.CmdRecover {
				cs = &cairn.CommitSync{Block: c.Blocks[0], RecoveryID: c.RecoveryID, NewGenStamp: c.RecoveryID}
				primary = n
			}
		}
	}
	if cs == nil {
		t.Fatal("no recovery handed out")
	}
	other = map[string]string{"DS-1": "DS-2", "DS-2": "DS-1"}[primary]
	cs.NewLen, cs.Nodes = 0, []string{other}
	as := func(p trust.Peer) context.Context { return trust.WithPeer(ctx, p) }
	for _, p := range []trust.Peer{{Role: trust.RoleBlockd, Name: other}, {Role: trust.RoleMount, Name: primary}} {
		if err := m.CommitBlockSynchronization(as(p), *cs); !errors.Is(err, cairn.ErrPermission) {
			t.Fatalf("%s committed the recovery of primary %s: %v, want a permission error", p, primary, err)
		}
	}
	if fi := stat(t, m, "/f"); !fi.Writing || fi.Size != testBlock {
		t.Fatalf("after refused commits: writing %v, size %d", fi.Writing, fi.Size)
	}
	cs.NewLen, cs.Nodes = 1234, []string{primary}
	must(t, m.CommitBlockSynchronization(as(trust.Peer{Role: trust.RoleBlockd, Name: primary}), *cs))
	if fi := stat(t, m, "/f"); fi.Writing || fi.Size != testBlock+1234 {
		t.Fatalf("after the primary's commit: writing %v, size %d", fi.Writing, fi.Size)
	}
}
