package client

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"cairn"
)

// scriptedNS answers AddBlock from a script of errors, then with a
// block, recording what each call named.
type scriptedNS struct {
	cairn.Namespace // the other calls: not made

	mu      sync.Mutex
	answers []error // the first calls' errors; nil, or past the end: a block
	prevs   []*cairn.Block
	excls   [][]cairn.Node
	claims  []bool
}

func (s *scriptedNS) AddBlock(_ context.Context, w cairn.WriterRef, prev *cairn.Block, excluded []cairn.Node) (cairn.LocatedBlock, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := len(s.prevs)
	s.prevs = append(s.prevs, prev)
	s.excls = append(s.excls, excluded)
	s.claims = append(s.claims, w.Claim)
	if i < len(s.answers) && s.answers[i] != nil {
		return cairn.LocatedBlock{}, s.answers[i]
	}
	return cairn.LocatedBlock{Block: cairn.Block{ID: 7, GenStamp: 1001}, Locations: []cairn.Node{{StorageID: "DS-1"}}}, nil
}

func (s *scriptedNS) calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.prevs)
}

func scriptedWriter(t *testing.T, ns *scriptedNS) *Writer {
	c := &Client{NS: ns, log: zaptest.NewLogger(t)}
	return &Writer{c: c, path: "/f", fi: cairn.FileInfo{Inode: 9, BlockSize: 1 << 20}, claim: true}
}

var notYet = cairn.E("metad.AddBlock", cairn.KindRetry, "/f", "no blockd for a new block has reached this new leader yet; try again")

// A new block that metad answers KindRetry for (a new leader no blockd
// has reached yet) is asked for again, with a growing wait, naming the
// same previous block and exclusions each time, until metad gives one.
func TestAddBlockRetriedWhileMetadSaysRetry(t *testing.T) {
	ns := &scriptedNS{answers: []error{notYet, notYet, notYet}}
	w := scriptedWriter(t, ns)
	prev := cairn.Block{ID: 6, GenStamp: 1000, Len: 1 << 20}
	w.prev = &prev
	hung := cairn.Node{StorageID: "DS-9"}
	w.exclude(hung, true)
	start := time.Now()
	if err := w.newBlock(); err != nil {
		t.Fatalf("newBlock: %v", err)
	}
	// 100 + 200 + 400 ms of waits.
	if took := time.Since(start); took < 700*time.Millisecond {
		t.Errorf("three retries took %v, want the waits between them (700ms)", took)
	}
	if w.lb == nil || w.lb.ID != 7 || w.claim || !w.unsynced {
		t.Fatalf("after newBlock: lb %+v, claim %v, unsynced %v", w.lb, w.claim, w.unsynced)
	}
	if ns.calls() != 4 {
		t.Fatalf("%d AddBlocks, want 4", ns.calls())
	}
	for i := range ns.prevs {
		if ns.prevs[i] == nil || *ns.prevs[i] != prev || len(ns.excls[i]) != 1 || ns.excls[i][0] != hung || !ns.claims[i] {
			t.Errorf("AddBlock %d named prev %v, excluded %v, claim %v; want %s, [%s], true each time", i, ns.prevs[i], ns.excls[i], ns.claims[i], prev, hung.StorageID)
		}
	}
}

// A writer whose metad keeps answering KindRetry gives up when its call's
// time is up, with an I/O error that says why: not ENOSPC, for there may
// well be room.
func TestAddBlockRetryGivesUp(t *testing.T) {
	ns := &scriptedNS{answers: make([]error, 1000)}
	for i := range ns.answers {
		ns.answers[i] = notYet
	}
	w := scriptedWriter(t, ns)
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := w.addBlock(ctx)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("gave up after %v, want about the call's 700ms", took)
	}
	if cairn.KindOf(err) != cairn.KindIO || !strings.Contains(err.Error(), "no blockd reached metad in time") || !strings.Contains(err.Error(), "has reached this new leader yet") {
		t.Fatalf("addBlock with metad saying try again throughout: %v, want KindIO saying why", err)
	}
	if n := ns.calls(); n < 2 || n > 10 {
		t.Errorf("%d AddBlocks in 700ms, want a few (100ms doubling)", n)
	}
	if w.lb != nil {
		t.Errorf("a block taken: %+v", w.lb)
	}
}

// KindNoSpace is final: no retry but the one without the exclusions that
// did not hang.
func TestAddBlockNoSpaceNotRetried(t *testing.T) {
	full := cairn.E("metad.AddBlock", cairn.KindNoSpace, "/f", "no blockd for a new block: 3 live blockd(s), 0 excluded, 3 without room")
	ns := &scriptedNS{answers: []error{full, full, full}}
	w := scriptedWriter(t, ns)
	w.exclude(cairn.Node{StorageID: "DS-2"}, false)
	err := w.newBlock()
	if cairn.KindOf(err) != cairn.KindNoSpace {
		t.Fatalf("newBlock with no room: %v, want KindNoSpace", err)
	}
	if ns.calls() != 2 || len(ns.excls[0]) != 1 || len(ns.excls[1]) != 0 {
		t.Fatalf("AddBlocks excluded %v, want [DS-2] and then none", ns.excls)
	}
}
