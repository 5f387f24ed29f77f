package tests

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"cairn"
	"cairn/client"
	"cairn/tests/cluster"
)

// TestMetadGroupAnswerLostInFailover SIGKILLs a group's leader exactly
// between an AddBlock's change, committed by a majority, and its answer
// (the crash point CAIRN_CRASH before-answer), while a client writes a
// file of five blocks through the client library. The client makes the
// call again at the new leader with the same call IDs; the new leader,
// which has the change but not the answer, answers with the block the
// first run allocated (not a second one). The file reads back equal with
// five blocks, and fsck is HEALTHY. A second writer, open at the old
// leader with a block under way, goes on writing after the failover
// without reopening: its lease holds at the new leader (AddBlock,
// Complete), and its pipeline, set up with the old leader's block
// token, carries the rest of its block.
func TestMetadGroupAnswerLostInFailover(t *testing.T) {
	const bs = 256 << 10
	// The third successful AddBlock the leader runs kills it; the mark
	// file lets one member crash, once.
	t.Setenv("CAIRN_CRASH", "before-answer:AddBlock:3:"+filepath.Join(t.TempDir(), "crashed"))
	g := cluster.StartGroup(t, cluster.GroupConfig{Blockds: 3, Replication: 2, BlockSize: bs})
	leader := g.WaitLeader(t, -1, 30*time.Second)
	cl, err := client.Dial(g.Members(), client.Options{Creds: g.ClientCreds(), Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// The second writer: its block under way at the old leader (the
	// first AddBlock).
	const size2 = bs + 100<<10
	buf2 := make([]byte, size2)
	_, _ = newStream(72).Read(buf2)
	w2, err := cl.Create(ctx, "/w2", 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w2.Write(buf2[:100<<10]); err != nil {
		t.Fatal(err)
	}
	if err := w2.Flush(); err != nil {
		t.Fatal(err)
	}

	// The first writer: its second block's AddBlock (the third) kills
	// the leader before the answer.
	const size1 = 4*bs + 1000
	write(t, cl, "/w1", 71, size1)
	if !g.Exited(t, leader, 10*time.Second) {
		t.Fatalf("metad%d, the leader, did not crash at the third AddBlock", leader)
	}
	next := g.WaitLeader(t, leader, 30*time.Second)
	t.Logf("metad%d crashed before answering an AddBlock; metad%d leads", leader, next)
	if !strings.Contains(g.Log(fmt.Sprintf("metad%d", next)), "AddBlock made again: answered with the block it allocated") {
		t.Errorf("metad%d did not answer the AddBlock made again with the block allocated before the crash", next)
	}

	// The second writer goes on, without reopening.
	if _, err := w2.Write(buf2[100<<10:]); err != nil {
		t.Fatalf("the writer open at the old leader, writing after the failover: %v", err)
	}
	if err := w2.Close(); err != nil {
		t.Fatalf("the writer open at the old leader, closing at the new one: %v", err)
	}

	for _, f := range []struct {
		path   string
		seed   uint64
		size   int64
		blocks int
	}{{"/w1", 71, size1, 5}, {"/w2", 72, size2, 2}} {
		fb, err := cl.NS.BlockLocations(ctx, cairn.FileRef{Path: f.path})
		if err != nil {
			t.Fatal(err)
		}
		if len(fb.Blocks) != f.blocks || fb.Size != f.size || fb.Writing {
			t.Errorf("%s: %d blocks, %d bytes, writing %v; want %d blocks, %d bytes, closed", f.path, len(fb.Blocks), fb.Size, fb.Writing, f.blocks, f.size)
		}
		sameAs(t, cl, f.path, f.seed, f.size)
	}
	out, code := g.Run(t, "fsck", "/")
	if code != 0 || cluster.LastLine(out) != cluster.HealthyLine("/") {
		t.Fatalf("fsck / after the failover: exit %d, want HEALTHY:\n%s", code, out)
	}
}
