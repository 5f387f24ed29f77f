package tests

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"cairn"
	"cairn/client"
	"cairn/rpc"
	"cairn/rpc/pb"
	"cairn/tests/cluster"
)

// TestMetadGroupBlockds runs three metads in a group and three blockds
// given all three (blockd --metad LIST), each reporting to every member.
// Files are written; the leader is SIGKILLed; the new leader, asked at
// once (no wait for a block report: the blockds' full report interval is
// the default six hours), is out of safe mode, has every blockd live and
// every block's replicas (fsck HEALTHY); a block token the old leader
// signed is still taken by a blockd, and the files read back. A blockd
// killed then has its blocks copied again, scheduled by the new leader
// alone.
func TestMetadGroupBlockds(t *testing.T) {
	g := cluster.StartGroup(t, cluster.GroupConfig{Blockds: 3, Replication: 2, BlockSize: 256 << 10, DeadAfter: 2 * time.Second})
	leader := g.WaitLeader(t, -1, 30*time.Second)
	t.Logf("leader: metad%d (%s)", leader, g.MemberAddr(leader))
	cl, err := client.Dial(g.Members(), client.Options{Creds: g.ClientCreds(), Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := cl.NS.Mkdirs(ctx, "/d", 0o755); err != nil {
		t.Fatal(err)
	}
	const files, size = 4, 600 << 10 // three blocks each
	for i := range files {
		write(t, cl, fmt.Sprintf("/d/f%d", i), uint64(50+i), size)
	}
	// A read token signed by the leader about to die.
	fb, err := cl.NS.BlockLocations(ctx, cairn.FileRef{Path: "/d/f0"})
	if err != nil || len(fb.Blocks) == 0 || len(fb.Blocks[0].Locations) == 0 {
		t.Fatalf("block locations of /d/f0: %+v, %v", fb, err)
	}
	old := fb.Blocks[0]

	g.Kill(t, leader)
	next := g.WaitLeader(t, leader, 30*time.Second)
	t.Logf("new leader: metad%d (%s)", next, g.MemberAddr(next))

	for _, l := range strings.Split(g.Log(fmt.Sprintf("metad%d", next)), "\n") {
		if strings.Contains(l, "leading the metad group") || strings.Contains(l, "judged again") {
			t.Logf("metad%d: %s", next, l)
		}
	}
	// Asked at once: the new leader heard every blockd all along.
	st, err := cl.NS.SafeMode(ctx, cairn.SafeModeGet)
	if err != nil || st.On {
		t.Fatalf("safe mode on the new leader: %+v, %v; want off", st, err)
	}
	rep, err := cl.NS.Report(ctx)
	if err != nil {
		t.Fatal(err)
	}
	live := 0
	for _, n := range rep.Nodes {
		if n.Live {
			live++
		}
	}
	if live != 3 {
		t.Fatalf("the new leader has %d live blockds, want 3: %+v", live, rep.Nodes)
	}
	out, code := g.Run(t, "fsck", "/")
	if code != 0 || cluster.LastLine(out) != cluster.HealthyLine("/") {
		t.Fatalf("fsck / through the new leader: exit %d, want HEALTHY at once:\n%s", code, out)
	}

	// The old leader's token still holds at a blockd.
	r, err := rawOp(t, old.Locations[0].DataAddr, &pb.OpHeader{Op: pb.OpHeader_READ_BLOCK, Block: rpc.ToPBBlock(&old.Block), Token: old.Token})
	if err != nil || r.Status != 0 {
		t.Fatalf("a token of the old leader at %s after the failover: %+v, %v", old.Locations[0].DataAddr, r, err)
	}
	for i := range files {
		sameAs(t, cl, fmt.Sprintf("/d/f%d", i), uint64(50+i), size)
	}

	// A blockd dies: the new leader alone copies its blocks again.
	victim := g.BlockdOf(old.Locations[0].DataAddr)
	g.KillBlockd(t, victim)
	deadline := time.Now().Add(blockdWait)
	for dead := false; !dead; {
		rep, err := cl.NS.Report(ctx)
		if err != nil {
			t.Fatal(err)
		}
		dead = true
		for _, n := range rep.Nodes {
			if n.DataAddr == g.BlockdAddr(victim) && n.Live {
				dead = false
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("blockd%d still live at the leader %v after it was killed", victim, blockdWait)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for {
		out, code = g.Run(t, "fsck", "/")
		if code == 0 && cluster.LastLine(out) == cluster.HealthyLine("/") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("fsck / not HEALTHY without blockd%d after %v:\n%s", victim, blockdWait, out)
		}
		time.Sleep(250 * time.Millisecond)
	}
	scheduled := func(i int) bool { return strings.Contains(g.Log(fmt.Sprintf("metad%d", i)), "\treplication monitor\t") }
	if !scheduled(next) {
		t.Errorf("the new leader metad%d logged no replication round", next)
	}
	for i := range g.Size() {
		if i != next && i != leader && scheduled(i) {
			t.Errorf("follower metad%d scheduled copies too", i)
		}
	}
}
