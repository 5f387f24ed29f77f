package metad

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"cairn"
	"cairn/rpc"
	"cairn/rpc/pb"
	"cairn/trust"
)

// answeredLog waits until the answers of calls 1..n are in m's log and
// returns it.
func answeredLog(t *testing.T, m *Metad, n uint64) []*raft.Log {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		es := logEntries(t, m)
		all := true
		for i := uint64(1); i <= n && all; i++ {
			all = callEntry(es, entryAnswer, i) >= 0 || callEntry(es, entryCall, i) < 0
		}
		if all {
			return es
		}
		if time.Now().After(deadline) {
			t.Fatal("the calls' answers did not reach the log within 20s")
		}
	}
}

// memberUpTo is a member of m's group that applied es[:cut] — a new
// leader that has what the old one committed up to there — with three
// blockds, served behind its retry cache.
func memberUpTo(t *testing.T, m *Metad, es []*raft.Log, cut int) (*Metad, *rpc.NamespaceClient) {
	t.Helper()
	n := emptyMember(t, m)
	fsm, err := newRaftFSM(n)
	must(t, err)
	for _, e := range es[:cut] {
		if r := fsm.Apply(e); r != nil {
			t.Fatalf("apply entry %d: %v", e.Index, r)
		}
	}
	registerNodes(t, n, 3)
	return n, rpc.NewNamespaceClient(serveConn(t, n))
}

// Each mutating call whose change a leader committed, but whose answer
// died with it, made again at the new leader with the same client and
// call IDs (callReplayed), answers as its first run did and changes
// nothing more: an AddBlock gets the block it allocated (not a second
// one, nor "the last block is ..."), a Complete, Rename, Link, Delete
// or AbandonBlock succeeds rather than finding its own change. A call
// whose change was not committed runs as a new one there.
func TestReplayedCallsAnswerAsFirstRun(t *testing.T) {
	m := startGroupOfOne(t)
	registerNodes(t, m, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	lc := rpc.NewNamespaceClient(serveConn(t, m))
	id := rpc.NewClientID()
	call := func(n uint64) context.Context { return asCall(ctx, id, n) }
	const bs = 64 << 10
	w := cairn.WriterRef{Path: "/f", Client: "w"}
	if _, err := lc.Create(call(1), "/f", cairn.CreateOptions{Perm: 0o644, Client: "w", BlockSize: bs, Replication: 2}); err != nil {
		t.Fatal(err)
	}
	b1, err := lc.AddBlock(call(2), w, nil, nil)
	must(t, err)
	full := b1.Block
	full.Len = bs
	b2, err := lc.AddBlock(call(3), w, &full, nil)
	must(t, err)
	last := b2.Block
	last.Len = 100
	must(t, lc.Complete(call(4), w, &last, b2.Locations...))
	must(t, lc.Mkdir(call(5), "/d", 0o755))
	must(t, lc.Rename(call(6), "/f", "/d/g"))
	must(t, lc.Link(call(7), "/d/g", "/h"))
	must(t, lc.Delete(call(8), "/h", false))
	wa := cairn.WriterRef{Path: "/a", Client: "w"}
	if _, err := lc.Create(call(9), "/a", cairn.CreateOptions{Perm: 0o644, Client: "w", BlockSize: bs}); err != nil {
		t.Fatal(err)
	}
	ab, err := lc.AddBlock(call(10), wa, nil, nil)
	must(t, err)
	must(t, lc.AbandonBlock(call(11), wa, ab.Block))
	es := answeredLog(t, m, 11)

	// lost(n) is a new leader that has call n's change but not its answer.
	lost := func(n uint64) (*Metad, *rpc.NamespaceClient) {
		cut := callEntry(es, entryAnswer, n)
		if cut < 0 || callEntry(es, entryCall, n) < 0 || callEntry(es, entryCall, n) > cut {
			t.Fatalf("call %d's change is not in the log before its answer", n)
		}
		return memberUpTo(t, m, es, cut)
	}
	blocksOf := func(n *Metad, path string) []cairn.LocatedBlock {
		t.Helper()
		fb, err := n.BlockLocations(ctx, cairn.FileRef{Path: path})
		must(t, err)
		return fb.Blocks
	}

	t.Run("AddBlock", func(t *testing.T) {
		n, c := lost(3)
		got, err := c.AddBlock(call(3), w, &full, nil)
		if err != nil {
			t.Fatalf("AddBlock made again after its answer was lost: %v", err)
		}
		if got.Block != b2.Block || got.Offset != bs || len(got.Locations) != 2 || got.Token == nil {
			t.Fatalf("AddBlock made again answered %v at %d on %d nodes (token %v), want %v at %d on 2 fresh nodes with a token",
				got.Block, got.Offset, len(got.Locations), got.Token != nil, b2.Block, bs)
		}
		if bl := blocksOf(n, "/f"); len(bl) != 2 {
			t.Fatalf("/f has %d blocks after AddBlock made again, want 2", len(bl))
		}
	})
	t.Run("FirstAddBlock", func(t *testing.T) {
		n, c := lost(2)
		got, err := c.AddBlock(call(2), w, nil, nil)
		if err != nil || got.Block != b1.Block || got.Offset != 0 {
			t.Fatalf("first AddBlock made again answered %v at %d, %v; want %v at 0", got.Block, got.Offset, err, b1.Block)
		}
		if bl := blocksOf(n, "/f"); len(bl) != 1 {
			t.Fatalf("/f has %d blocks, want 1", len(bl))
		}
	})
	t.Run("AddBlockNotApplied", func(t *testing.T) {
		// Its change never committed: the call runs as a new one.
		n, c := memberUpTo(t, m, es, callEntry(es, entryCall, 3))
		got, err := c.AddBlock(call(3), w, &full, nil)
		if err != nil || got.Block.ID == b1.Block.ID || got.Offset != bs {
			t.Fatalf("AddBlock whose change was lost answered %v at %d, %v; want a second block at %d", got.Block, got.Offset, err, bs)
		}
		if bl := blocksOf(n, "/f"); len(bl) != 2 {
			t.Fatalf("/f has %d blocks, want 2", len(bl))
		}
	})
	t.Run("Complete", func(t *testing.T) {
		n, c := lost(4)
		if err := c.Complete(call(4), w, &last, b2.Locations...); err != nil {
			t.Fatalf("Complete made again after its answer was lost: %v", err)
		}
		fi, err := n.Stat(ctx, "/f")
		if err != nil || fi.Writing || fi.Size != bs+100 {
			t.Fatalf("/f after Complete made again: %+v, %v; want closed, %d bytes", fi, err, bs+100)
		}
	})
	t.Run("Rename", func(t *testing.T) {
		n, c := lost(6)
		if err := c.Rename(call(6), "/f", "/d/g"); err != nil {
			t.Fatalf("Rename made again after its answer was lost: %v", err)
		}
		if _, err := n.Stat(ctx, "/d/g"); err != nil {
			t.Fatal(err)
		}
		// Another rename of the gone name is a new call: refused.
		if err := c.Rename(call(100), "/f", "/d/g"); cairn.KindOf(err) != cairn.KindNotExist {
			t.Fatalf("a new rename of a missing name: %v, want ENOENT", err)
		}
	})
	t.Run("Link", func(t *testing.T) {
		_, c := lost(7)
		if err := c.Link(call(7), "/d/g", "/h"); err != nil {
			t.Fatalf("Link made again after its answer was lost: %v", err)
		}
	})
	t.Run("Delete", func(t *testing.T) {
		n, c := lost(8)
		if err := c.Delete(call(8), "/h", false); err != nil {
			t.Fatalf("Delete made again after its answer was lost: %v", err)
		}
		if _, err := n.Stat(ctx, "/d/g"); err != nil {
			t.Fatalf("the other name went with the delete made again: %v", err)
		}
	})
	t.Run("AbandonBlock", func(t *testing.T) {
		n, c := lost(11)
		if err := c.AbandonBlock(call(11), wa, ab.Block); err != nil {
			t.Fatalf("AbandonBlock made again after its answer was lost: %v", err)
		}
		if bl := blocksOf(n, "/a"); len(bl) != 0 {
			t.Fatalf("/a has %d blocks, want 0", len(bl))
		}
	})
}

// A Join made again after a failover lost its answer finds its token
// used by its own first run: it gets a certificate (recorded in place of
// the first, even for a token that names no storage ID); the same token
// in a new call is refused as before.
func TestJoinReplayedGetsACertificate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "meta")
	if _, err := Format(dir, false); err != nil {
		t.Fatal(err)
	}
	m := openTrusted(t, dir)
	defer func() { _ = m.Close() }()
	ctx := context.Background()
	tok, _, err := m.IssueJoinToken(ctx, trust.RoleBlockd, "", time.Hour)
	must(t, err)
	key, _ := trust.NewKey()
	csr, _ := trust.NewCSR(key, trust.Peer{Role: trust.RoleBlockd, Name: "DS-1"})
	_, _, err = m.Join(ctx, tok, csr)
	must(t, err)
	again := withPendingCall(ctx, &pendingCall{method: pb.Trust_Join_FullMethodName, replay: true})
	cert, ca, err := m.Join(again, tok, csr)
	if err != nil {
		t.Fatalf("Join made again after its answer was lost: %v", err)
	}
	if _, err := trust.SaveCreds(filepath.Join(t.TempDir(), "c"), key, cert, ca); err != nil {
		t.Fatalf("the certificate of the Join made again does not fit the key and CA: %v", err)
	}
	if _, _, err := m.Join(ctx, tok, csr); err == nil || !strings.Contains(err.Error(), "used already") {
		t.Fatalf("the token in a new call: %v, want used already", err)
	}
}

// FuzzParseCrashPoint: CAIRN_CRASH never panics its parser, and what it
// takes names a method, a count from 1 and a mark as given.
func FuzzParseCrashPoint(f *testing.F) {
	f.Add("before-answer:AddBlock:3:/tmp/mark")
	f.Add("before-answer:Complete:1")
	f.Add("before-answer::0:")
	f.Add("after:AddBlock:x")
	f.Fuzz(func(t *testing.T, v string) {
		c, err := parseCrashPoint(v)
		if err != nil {
			return
		}
		if c.n < 1 || !strings.HasPrefix(c.method, "/") || strings.Contains(c.method[1:], "/") || c.method == "/" {
			t.Fatalf("%q parsed to %+v", v, c)
		}
		if want := "before-answer:" + c.method[1:] + ":"; !strings.HasPrefix(v, want) {
			t.Fatalf("%q parsed to method %q", v, c.method)
		}
	})
}
