package metad

import (
	"context"
	"testing"
	"time"

	"cairn"
)

// A leader whose process stood still (SIGSTOP, a long stall) while the
// others elected a successor runs again still taking itself for the
// leader (ready) until Raft hears of the new term. The blockds' reports
// queued for it meanwhile are read at once, and they name what the
// successor committed: a closed file's block appended to at a new stamp
// and length, the block of a file made meanwhile. Judged against this
// member's store, which lacks those entries, the first looks corrupt
// ("length mismatch") and the second of no file. A member that acts on
// that marks the replica corrupt for good (judged as a leader, it is not
// doubtful, and no later report of the same replica clears it: fsck on
// this member, leading again, calls the block CORRUPT while its store
// says otherwise) and queues the live replica's deletion, sent when it
// leads again, at its new term. So after a stall a member judges reports
// as a follower does until it has run two election timeouts without one
// (the read path's rule, readconfirm.go): doubtful, judged again when it
// leads and has every committed entry.
func TestStalledLeaderDefersReportJudgement(t *testing.T) {
	m := startGroupOfOne(t)
	ctx := context.Background()
	nodes := registerNodes(t, m, 2)
	w := cairn.WriterRef{Path: "/f", Client: "w"}
	if _, err := m.Create(ctx, "/f", cairn.CreateOptions{Perm: 0o644, Client: "w", Replication: 2, BlockSize: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	lb, err := m.AddBlock(ctx, w, nil, nil)
	must(t, err)
	last := lb.Block
	last.Len = 3481
	must(t, m.Complete(ctx, w, &last, lb.Locations...))

	// The process stood still; nothing has told it yet that it was
	// deposed.
	st := m.rep.stall
	st.suspectUntil.Store(st.now() + int64(time.Minute))
	if !m.rep.ready.Load() {
		t.Fatal("the member does not take itself for the leader")
	}
	// The successor's append: the stamp it handed out (the next one, in
	// this test) and the length its Complete recorded.
	m.st.mu.Lock()
	gs := cairn.GenStamp(m.st.nextGS)
	m.st.mu.Unlock()
	appended := cairn.Replica{Block: cairn.Block{ID: last.ID, GenStamp: gs, Len: 11673}, State: cairn.ReplicaFinalized}
	made := cairn.Replica{Block: cairn.Block{ID: last.ID + 1000, GenStamp: gs + 1, Len: 2048}, State: cairn.ReplicaFinalized}
	node := nodes[0].StorageID
	must(t, m.BlocksReceived(ctx, node, []cairn.Replica{appended, made}))

	if n := m.blocks.corruptCount(last.ID); n != 0 {
		for _, r := range m.blocks.replicasOf(last.ID) {
			t.Logf("replica on %s: %v len=%d corrupt=%q", r.StorageID, r.Block, r.Len, r.Corrupt)
		}
		t.Errorf("a member that stood still marked %d replica(s) of %s corrupt on its own store's word", n, last)
	}
	if d := m.blocks.takeDeletes(node, 0); len(d) > 0 {
		t.Errorf("a member that stood still queued the deletion of %v, replicas of blocks its store does not know yet", d)
	}

	// The member catches up with the log (here: the append made through
	// it) and leads on. fsck asks it: the block is what its store says,
	// and its replicas are good.
	if _, _, err := m.Append(ctx, "/f", "w"); err != nil {
		t.Fatal(err)
	}
	ulb, err := m.UpdateBlockForPipeline(ctx, w, last)
	must(t, err)
	if ulb.GenStamp != gs {
		t.Fatalf("the append's stamp is %d, the test expected %d", ulb.GenStamp, gs)
	}
	updated := last
	updated.GenStamp = gs
	must(t, m.UpdatePipeline(ctx, w, last, updated, lb.Locations))
	done := updated
	done.Len = 11673
	must(t, m.Complete(ctx, w, &done, lb.Locations...))
	st.suspectUntil.Store(0)
	st.lastTick.Store(st.now())
	m.rejudgeDoubtful()
	fr, err := m.ReplicaReport(ctx, "/f")
	must(t, err)
	for _, b := range fr.Blocks {
		for _, r := range b.Replicas {
			if r.Corrupt != "" && r.GenStamp == b.GenStamp {
				t.Errorf("fsck: %s (len %d in the store): replica on %s at its stamp, %d bytes, bad: %s", b.Block, b.Len, r.StorageID, r.Len, r.Corrupt)
			}
		}
	}
}
