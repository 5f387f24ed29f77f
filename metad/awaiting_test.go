package metad

import (
	"context"
	"strings"
	"testing"
	"time"

	"cairn"
)

// heartbeatRoom has each of nodes heartbeat m, saying it has room left.
func heartbeatRoom(t *testing.T, m *Metad, room int64, nodes ...cairn.Node) {
	t.Helper()
	for _, n := range nodes {
		if _, err := m.Heartbeat(context.Background(), cairn.Heartbeat{StorageID: n.StorageID, Capacity: 1 << 40, Remaining: room}); err != nil {
			t.Fatal(err)
		}
	}
}

// A member that takes over the lead after every blockd went silent for it
// (its host was cut off, say) answers AddBlock with KindRetry, not
// KindNoSpace, until the blockds have had --dead-after since the takeover
// to reach it: they are most likely on their way. Heard from since (even
// without room), or silent past --dead-after, the answer is KindNoSpace
// again. A retried AddBlock (its answer lost) gets the same rule, and
// then the same block.
func TestAddBlockWaitsForBlockdsAfterTakeover(t *testing.T) {
	m := startGroupOfOne(t)
	clock := m.clock.(*fakeClock)
	dead := m.cfg.DeadAfter
	ctx := context.Background()
	nodes := registerNodes(t, m, 3)
	for _, p := range []string{"/f", "/g", "/h"} {
		if _, err := m.Create(ctx, p, cairn.CreateOptions{Perm: 0o644, Client: "w", Replication: 3, BlockSize: 1 << 20}); err != nil {
			t.Fatal(err)
		}
	}
	f, g, h := cairn.WriterRef{Path: "/f", Client: "w"}, cairn.WriterRef{Path: "/g", Client: "w"}, cairn.WriterRef{Path: "/h", Client: "w"}
	first, err := m.AddBlock(ctx, h, nil, nil)
	must(t, err)

	// The member's host cut off: every blockd silent past --dead-after.
	clock.Add(dead + time.Second)
	if _, err := m.AddBlock(ctx, f, nil, nil); cairn.KindOf(err) != cairn.KindNoSpace {
		t.Fatalf("AddBlock with every blockd dead, long after the takeover: %v, want KindNoSpace", err)
	}
	// Back, and elected: the blockds have not reached it yet.
	m.rep.becomeLeader()
	if !m.rep.ready.Load() {
		t.Fatal("the member does not lead after becomeLeader")
	}
	clock.Add(4 * time.Second)
	_, err = m.AddBlock(ctx, f, nil, nil)
	if cairn.KindOf(err) != cairn.KindRetry || !strings.Contains(err.Error(), "no blockd for a new block has reached this new leader yet; try again") {
		t.Fatalf("AddBlock 4s after the takeover, no blockd heard from since: %v, want KindRetry saying why", err)
	}
	// The retry of an AddBlock whose answer was lost, too.
	if _, err := m.AddBlock(ctx, h, nil, nil); cairn.KindOf(err) != cairn.KindRetry {
		t.Fatalf("AddBlock made again 4s after the takeover: %v, want KindRetry", err)
	}

	// Heard from, but full: there is no room, and no one else to wait for.
	heartbeatRoom(t, m, 0, nodes...)
	if _, err := m.AddBlock(ctx, f, nil, nil); cairn.KindOf(err) != cairn.KindNoSpace || !strings.Contains(err.Error(), "3 without room") {
		t.Fatalf("AddBlock with every blockd heard from since the takeover, none with room: %v, want KindNoSpace", err)
	}
	// With room: the file gets its block, and the retried AddBlock the
	// block it allocated before.
	heartbeatRoom(t, m, 1<<40, nodes...)
	lb, err := m.AddBlock(ctx, f, nil, nil)
	if err != nil || len(lb.Locations) != 3 {
		t.Fatalf("AddBlock once the blockds reached the new leader: %+v, %v", lb, err)
	}
	again, err := m.AddBlock(ctx, h, nil, nil)
	if err != nil || again.Block != first.Block || len(again.Locations) != 3 {
		t.Fatalf("AddBlock made again: %+v, %v; want %s again", again, err, first.Block)
	}

	// Cut off again, elected again, and the blockds never come back: the
	// grace holds while they may, and ends at --dead-after since the
	// takeover.
	clock.Add(dead + time.Second)
	m.rep.becomeLeader()
	clock.Add(dead - time.Second)
	if _, err := m.AddBlock(ctx, g, nil, nil); cairn.KindOf(err) != cairn.KindRetry {
		t.Fatalf("AddBlock just inside --dead-after of the takeover: %v, want KindRetry", err)
	}
	clock.Add(time.Second)
	if _, err := m.AddBlock(ctx, g, nil, nil); cairn.KindOf(err) != cairn.KindNoSpace {
		t.Fatalf("AddBlock --dead-after past the takeover with no blockd heard from: %v, want KindNoSpace", err)
	}
}

// A single metad gets the same grace from its start: a restarted metad
// knows no blockd until they register again (their next heartbeat is
// told to), and a writer then is told to try again, not that there is no
// room; past --dead-after with none, there is none.
func TestAddBlockWaitsForBlockdsAfterStart(t *testing.T) {
	clock := newFakeClock()
	m := openCfg(t, Config{Clock: clock, DeadAfter: time.Minute})
	ctx := context.Background()
	if _, err := m.Create(ctx, "/f", cairn.CreateOptions{Perm: 0o644, Client: "w", Replication: 1}); err != nil {
		t.Fatal(err)
	}
	f, g := cairn.WriterRef{Path: "/f", Client: "w"}, cairn.WriterRef{Path: "/g", Client: "w"}
	clock.Add(10 * time.Second)
	_, err := m.AddBlock(ctx, f, nil, nil)
	if cairn.KindOf(err) != cairn.KindRetry || !strings.Contains(err.Error(), "has reached this metad since it started yet") {
		t.Fatalf("AddBlock 10s after the start, no blockd registered: %v, want KindRetry saying why", err)
	}
	registerNodes(t, m, 1)
	if _, err := m.AddBlock(ctx, f, nil, nil); err != nil {
		t.Fatalf("AddBlock once a blockd registered: %v", err)
	}

	m2 := openCfg(t, Config{Clock: clock, DeadAfter: time.Minute})
	if _, err := m2.Create(ctx, "/g", cairn.CreateOptions{Perm: 0o644, Client: "w", Replication: 1}); err != nil {
		t.Fatal(err)
	}
	clock.Add(time.Minute)
	if _, err := m2.AddBlock(ctx, g, nil, nil); cairn.KindOf(err) != cairn.KindNoSpace {
		t.Fatalf("AddBlock a minute (--dead-after) after the start, no blockd registered: %v, want KindNoSpace", err)
	}
}
