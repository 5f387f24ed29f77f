package metad

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"cairn"
	"cairn/rpc/pb"
	"cairn/trust"
)

// gate runs a call through metad's safe mode interceptor.
func gate(m *Metad, method string, req any) error {
	_, err := m.safeModeGate(context.Background(), req, &grpc.UnaryServerInfo{FullMethod: method},
		func(context.Context, any) (any, error) { return &pb.Empty{}, nil })
	return err
}

// TestSafeModeAtStart: a metad restarted over a namespace with blocks is
// read-only until the blockds have reported a good replica of the
// threshold's share of them, and then for the extension; meanwhile it
// refuses every mutation with a message saying how far the reports are,
// and hands out no copies or deletions.
func TestSafeModeAtStart(t *testing.T) {
	clock := newFakeClock()
	m := openCfg(t, Config{Clock: clock})
	nodes := registerNodes(t, m, 3)
	var blocks []cairn.Block
	for _, p := range []string{"/a", "/b", "/c", "/d"} {
		blocks = append(blocks, closedFile(t, m, p, 1000, nodes))
	}
	// A file being written: its first block is waited for, its last not.
	ctx := context.Background()
	_, err := m.Create(ctx, "/open", cairn.CreateOptions{Client: "w", Replication: 3, BlockSize: 64 << 20})
	must(t, err)
	w := cairn.WriterRef{Path: "/open", Client: "w"}
	lb, err := m.AddBlock(ctx, w, nil, nil)
	must(t, err)
	openFirst := lb.Block
	openFirst.Len = 64 << 20
	_, err = m.AddBlock(ctx, w, &openFirst, nil)
	must(t, err)

	m = reopen(t, m, Config{Clock: clock, SafeModeThreshold: 0.75, SafeModeExtension: 30 * time.Second})
	st, err := m.SafeMode(ctx, cairn.SafeModeGet)
	must(t, err)
	if !st.On || st.Manual || st.Total != 5 || st.Needed != 4 || st.Reported != 0 {
		t.Fatalf("after the restart: %+v, want on, 5 blocks, 4 needed, none reported", st)
	}
	if err := gate(m, pb.Namespace_Create_FullMethodName, &pb.CreateRequest{Path: "/new"}); status.Code(err) != codes.FailedPrecondition ||
		!strings.Contains(err.Error(), "needs additional 4 blocks") {
		t.Fatalf("create in safe mode: %v", err)
	}
	if err := gate(m, pb.Namespace_Rename_FullMethodName, &pb.RenameRequest{Src: "/a", Dst: "/z"}); !strings.Contains(fmtErr(err), "/a") {
		t.Fatalf("rename in safe mode: %v, want a refusal naming /a", err)
	}
	if err := gate(m, pb.Namespace_Stat_FullMethodName, &pb.PathRequest{Path: "/a"}); err != nil {
		t.Fatalf("stat in safe mode: %v", err)
	}
	if err := m.CommitBlockSynchronization(ctx, cairn.CommitSync{Block: blocks[0]}); !errors.Is(err, cairn.ErrSafeMode) {
		t.Fatalf("commitBlockSynchronization in safe mode: %v", err)
	}

	for _, n := range nodes {
		_, err := m.Register(ctx, cairn.Registration{Node: n})
		must(t, err)
	}
	// A replica of no file would be deleted, but not in safe mode.
	stray := cairn.Block{ID: 999999, GenStamp: 1, Len: 10}
	must(t, m.BlockReport(ctx, nodes[0].StorageID, finalized(blocks[0], blocks[1], stray)))
	if cmds := heartbeatAll(t, m, nodes, ""); len(cmds[nodes[0].StorageID]) != 0 {
		t.Fatalf("commands in safe mode: %+v", cmds)
	}
	st, _ = m.SafeMode(ctx, cairn.SafeModeGet)
	if !st.On || st.Reported != 2 {
		t.Fatalf("after two blocks reported: %+v", st)
	}
	// A replica at the wrong length is not a good one: it does not count.
	short := blocks[2]
	short.Len--
	must(t, m.BlockReport(ctx, nodes[1].StorageID, finalized(short)))
	if st, _ = m.SafeMode(ctx, cairn.SafeModeGet); st.Reported != 2 {
		t.Fatalf("a corrupt replica counted: %+v", st)
	}
	must(t, m.BlocksReceived(ctx, nodes[2].StorageID, finalized(blocks[2])))
	if st, _ = m.SafeMode(ctx, cairn.SafeModeGet); st.Reported != 3 || st.LeavesIn != 0 {
		t.Fatalf("three of four needed reported: %+v", st)
	}
	// A finalized replica of the open file's first block: it counts.
	must(t, m.BlocksReceived(ctx, nodes[2].StorageID, finalized(openFirst)))
	st, _ = m.SafeMode(ctx, cairn.SafeModeGet)
	if !st.On || st.Reported != 4 || st.LeavesIn != 30*time.Second || !strings.Contains(st.Message, "in 30 seconds") {
		t.Fatalf("threshold reached: %+v, want on for the 30 s extension", st)
	}
	clock.Add(29 * time.Second)
	m.safe.check(clock.Now())
	if !m.safe.isOn() {
		t.Fatal("safe mode left before the extension ended")
	}
	clock.Add(time.Second)
	m.safe.check(clock.Now())
	st, _ = m.SafeMode(ctx, cairn.SafeModeGet)
	if st.On {
		t.Fatalf("after the extension: %+v", st)
	}
	if err := gate(m, pb.Namespace_Create_FullMethodName, &pb.CreateRequest{Path: "/new"}); err != nil {
		t.Fatalf("create after safe mode: %v", err)
	}
	cmds := heartbeatAll(t, m, nodes, "")
	if del := deletes(cmds, stray.ID); len(del[nodes[0].StorageID]) != 1 {
		t.Fatalf("the stray replica's deletion was not sent once safe mode ended: %+v", cmds)
	}
}

func fmtErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestSafeModeByHand: only a superuser enters or leaves; entered by hand,
// safe mode stays whatever the blockds report.
func TestSafeModeByHand(t *testing.T) {
	m := openCfg(t, Config{Clock: newFakeClock()})
	if _, err := m.SafeMode(as("mallory"), cairn.SafeModeEnter); !errors.Is(err, cairn.ErrAccess) {
		t.Fatalf("enter by a user: %v", err)
	}
	// Through TLS only an admin certificate may, whoever the caller
	// says it speaks for.
	mount := trust.WithPeer(as(currentUser()), trust.Peer{Role: trust.RoleMount, Name: "host1"})
	if _, err := m.SafeMode(mount, cairn.SafeModeEnter); !errors.Is(err, cairn.ErrAccess) {
		t.Fatalf("enter by a mount speaking for the superuser: %v", err)
	}
	admin := trust.WithPeer(as("carol"), trust.Peer{Role: trust.RoleAdmin, Name: "carol"})
	if st, err := m.SafeMode(admin, cairn.SafeModeEnter); err != nil || !st.On {
		t.Fatalf("enter by an admin: %+v, %v", st, err)
	}
	m.safe.leave()
	su := as(currentUser())
	st, err := m.SafeMode(su, cairn.SafeModeEnter)
	must(t, err)
	if !st.On || !st.Manual || !strings.Contains(st.Message, "turned on manually") {
		t.Fatalf("entered: %+v", st)
	}
	if err := gate(m, pb.Namespace_Mkdir_FullMethodName, &pb.MkdirRequest{Path: "/d"}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("mkdir in safe mode: %v", err)
	}
	m.safe.check(m.clock.Now())
	if _, err := m.SafeMode(as("mallory"), cairn.SafeModeLeave); !errors.Is(err, cairn.ErrAccess) {
		t.Fatalf("leave by a user: %v", err)
	}
	if st, _ = m.SafeMode(su, cairn.SafeModeGet); !st.On {
		t.Fatal("safe mode entered by hand left by itself")
	}
	if st, err = m.SafeMode(su, cairn.SafeModeLeave); err != nil || st.On {
		t.Fatalf("leave: %+v, %v", st, err)
	}
	if _, err := m.SafeMode(su, cairn.SafeModeAction(7)); !errors.Is(err, cairn.ErrInvalid) {
		t.Fatalf("unknown action: %v", err)
	}
}

// TestSafeModeEmptyNamespace: with no block to wait for, metad starts
// writable.
func TestSafeModeEmptyNamespace(t *testing.T) {
	m := openCfg(t, Config{Clock: newFakeClock(), SafeModeThreshold: DefaultSafeModeThreshold, SafeModeExtension: DefaultSafeModeExtension})
	if m.safe.isOn() {
		t.Fatalf("safe mode over an empty namespace: %+v", m.safe.status(m.clock.Now()))
	}
}

// TestSafeModeLetsABlockdJoin: Trust's Join is in rpc.Mutations for the
// retry cache only; it changes no namespace, and a blockd that must join
// (a new host, or one whose certificate lapsed while the cluster was
// down) may hold the very blocks startup safe mode waits for. Refused in
// safe mode, that blockd could never report them, and safe mode would
// never end by itself.
func TestSafeModeLetsABlockdJoin(t *testing.T) {
	clock := newFakeClock()
	m := openCfg(t, Config{Clock: clock})
	nodes := registerNodes(t, m, 1)
	closedFile(t, m, "/a", 1000, nodes)
	m = reopen(t, m, Config{Clock: clock, SafeModeThreshold: 1, SafeModeExtension: time.Second})
	if !m.safe.isOn() {
		t.Fatal("not in safe mode after the restart")
	}
	if err := gate(m, pb.Trust_Join_FullMethodName, &pb.JoinRequest{}); err != nil {
		t.Fatalf("join in safe mode: %v; want it let through", err)
	}
	if err := gate(m, pb.Namespace_Create_FullMethodName, &pb.CreateRequest{Path: "/new"}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("create in safe mode: %v; want refused", err)
	}
}

// TestSafeModeForgetsBlocksGoneSinceStart: a member of a metad group
// counts its store's blocks as it opens, then applies the log's entries
// it had not applied: a file deleted there leaves a block no blockd will
// report. Recounted when the member becomes the leader (recountSafeMode),
// safe mode waits only for the blocks still in the namespace, and leaves
// once those are reported; without the recount it stayed on for good
// (TestMetadGroupChaos, after the whole group was SIGKILLed).
func TestSafeModeForgetsBlocksGoneSinceStart(t *testing.T) {
	clock := newFakeClock()
	m := openCfg(t, Config{Clock: clock})
	nodes := registerNodes(t, m, 1)
	kept := closedFile(t, m, "/kept", 1000, nodes)
	closedFile(t, m, "/deleted", 1000, nodes)

	m = reopen(t, m, Config{Clock: clock, SafeModeThreshold: 0.999})
	ctx := context.Background()
	if st, _ := m.SafeMode(ctx, cairn.SafeModeGet); !st.On || st.Total != 2 || st.Needed != 2 {
		t.Fatalf("after the restart: %+v, want on, waiting for 2 blocks", st)
	}
	// The store changes behind safe mode's count, as the log's entries
	// change a member's (the gate, not the call, refuses mutations in
	// safe mode).
	must(t, m.Delete(ctx, "/deleted", false))
	_, err := m.Register(ctx, cairn.Registration{Node: nodes[0]})
	must(t, err)
	must(t, m.BlockReport(ctx, nodes[0].StorageID, finalized(kept)))
	if !m.safe.isOn() {
		t.Fatal("safe mode left before the recount: the test no longer shows the case")
	}
	must(t, m.recountSafeMode())
	if st, _ := m.SafeMode(ctx, cairn.SafeModeGet); st.On {
		t.Fatalf("after the recount: %+v, want off: the one block still there was reported", st)
	}
}

// TestSafeModeRecountsFromBlockMap: a member that takes the lead counts,
// for startup safe mode, every block of which its block map holds a good
// replica, however it was recorded; and it says which blocks it still
// waits for.
func TestSafeModeRecountsFromBlockMap(t *testing.T) {
	clock := newFakeClock()
	m := openCfg(t, Config{Clock: clock})
	nodes := registerNodes(t, m, 1)
	a := closedFile(t, m, "/a", 1000, nodes)
	b := closedFile(t, m, "/b", 1000, nodes)

	m = reopen(t, m, Config{Clock: clock, SafeModeThreshold: 0.999})
	ctx := context.Background()
	// /a's replica recorded without a report counted for it (as a
	// replica recorded unjudged by a follower and judged as it leads).
	m.blocks.mu.Lock()
	m.blocks.add(nodes[0].StorageID, cairn.Replica{Block: a, State: cairn.ReplicaFinalized})
	m.blocks.mu.Unlock()
	must(t, m.recountSafeMode())
	if st, _ := m.SafeMode(ctx, cairn.SafeModeGet); !st.On || st.Total-st.Reported != 1 {
		t.Fatalf("after the recount: %+v, want on, waiting for /b's block alone", st)
	}
	if w := m.safe.waitingFor(0); len(w) != 1 || w[0] != b.ID {
		t.Fatalf("waiting for %v, want [%d]", w, b.ID)
	}
}
