package blockd

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"cairn"
	"cairn/blocktoken"
	"cairn/checksum"
	"cairn/rpc"
	"cairn/rpc/pb"
	"cairn/xfer"
)

// recordingMetad stands in for metad, which is not under test here: it
// records what blockds tell it.
type recordingMetad struct {
	cairn.Registry // calls not listed below are not expected
	mu             sync.Mutex
	commits        []cairn.CommitSync
	received       []cairn.Replica
}

func (m *recordingMetad) CommitBlockSynchronization(_ context.Context, c cairn.CommitSync) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.commits = append(m.commits, c)
	return nil
}

func (m *recordingMetad) BlocksReceived(_ context.Context, _ string, r []cairn.Replica) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.received = append(m.received, r...)
	return nil
}

func (m *recordingMetad) lastCommit(t *testing.T) cairn.CommitSync {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.commits) == 0 {
		t.Fatal("no CommitBlockSynchronization")
	}
	return m.commits[len(m.commits)-1]
}

// startBlockd runs a blockd on dir with its data server on 127.0.0.1,
// reporting to m. prepare, if set, builds replicas in the store before.
func startBlockd(t *testing.T, m cairn.Registry, prepare func(s *Store)) *Blockd {
	t.Helper()
	return startBlockdCfg(t, m, prepare, nil)
}

// startBlockdCfg is startBlockd with tune, if set, changing the Config.
func startBlockdCfg(t *testing.T, m cairn.Registry, prepare func(s *Store), tune func(*Config)) *Blockd {
	t.Helper()
	dir := t.TempDir()
	if prepare != nil {
		s, err := OpenStore(dir, zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		prepare(s)
		s.Close()
	}
	cfg := Config{Dir: dir, MetadAddr: "127.0.0.1:1", ScanPeriod: -1, Insecure: true, Logger: zaptest.NewLogger(t)}
	if tune != nil {
		tune(&cfg)
	}
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	d.metad = m
	d.keys.Update([]cairn.BlockKey{testKey})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = d.serveData(l)
	}()
	d.node = cairn.Node{StorageID: d.store.StorageID() + "-" + t.Name(), DataAddr: l.Addr().String()}
	t.Cleanup(func() {
		_ = l.Close()
		<-served
		for d.active.Load() > 0 { // connections still being served
			time.Sleep(time.Millisecond)
		}
		d.Close()
	})
	return d
}

var (
	recBlock = cairn.Block{ID: 1<<30 + 40, GenStamp: 1001}
	recData  = pattern(5000, 21)
)

// rbwOf leaves a replica of recBlock at gs with the first n bytes of
// recData in rbw/: found as waiting for recovery (RWR) by the next start.
func rbwOf(t testing.TB, gs cairn.GenStamp, n int) func(*Store) {
	return func(s *Store) {
		w, err := s.Create(cairn.Block{ID: recBlock.ID, GenStamp: gs}, 512)
		if err != nil {
			t.Fatal(err)
		}
		writeAt(t, w, 0, recData[:n], 1024)
		w.Release()
	}
}

// writeLive writes n bytes of recData to d's replica of recBlock at gs
// through the store, leaving the stream open: a replica being written (RBW).
func writeLive(t *testing.T, d *Blockd, gs cairn.GenStamp, n int) *ReplicaWriter {
	t.Helper()
	w, err := d.store.Create(cairn.Block{ID: recBlock.ID, GenStamp: gs}, 512)
	if err != nil {
		t.Fatal(err)
	}
	writeAt(t, w, 0, recData[:n], 1024)
	return w
}

func finalizedOf(t *testing.T, n int) func(*Store) {
	return func(s *Store) {
		w, err := s.Create(recBlock, 512)
		if err != nil {
			t.Fatal(err)
		}
		writeAt(t, w, 0, recData[:n], 1024)
		if _, err := w.Finalize(); err != nil {
			t.Fatal(err)
		}
	}
}

// recoveredAs checks that d holds recBlock finalized at gs with the first
// n bytes of recData.
func recoveredAs(t *testing.T, d *Blockd, gs cairn.GenStamp, n int) {
	t.Helper()
	have, ok := d.store.Lookup(recBlock.ID)
	if !ok || have.GenStamp != gs || have.Len != int64(n) {
		t.Fatalf("%s: finalized replica %v (%v), want stamp %d and %d bytes", d.node.StorageID, have, ok, gs, n)
	}
	if got := readAll(t, d.store, have); !bytes.Equal(got, recData[:n]) {
		t.Fatalf("%s: the recovered replica's bytes differ", d.node.StorageID)
	}
}

func stateOf(d *Blockd) (cairn.Replica, bool) {
	for _, r := range d.store.Report() {
		if r.ID == recBlock.ID {
			return r, true
		}
	}
	return cairn.Replica{}, false
}

func recoverCmd(rid cairn.GenStamp, targets ...*Blockd) cairn.Command {
	c := cairn.Command{Kind: cairn.CmdRecover, Blocks: []cairn.Block{recBlock}, RecoveryID: rid,
		Tokens: [][]byte{recoverToken(rid)}}
	for _, d := range targets {
		c.Targets = append(c.Targets, d.node)
	}
	return c
}

// recoverToken is metad's token for a recovery of recBlock to rid.
func recoverToken(rid cairn.GenStamp) []byte {
	tok, err := blocktoken.Sign(blocktoken.Token{KeyID: testKey.ID, Expiry: time.Now().Add(time.Hour), Block: recBlock.ID,
		MinStamp: recBlock.GenStamp, MaxStamp: max(recBlock.GenStamp, rid), Modes: blocktoken.Recover, User: "test"}, testKey.Secret)
	if err != nil {
		panic(err)
	}
	return tok
}

func storageIDs(ds ...*Blockd) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.node.StorageID)
	}
	slices.Sort(out)
	return out
}

func commitNodes(c cairn.CommitSync) []string {
	out := slices.Clone(c.Nodes)
	slices.Sort(out)
	return out
}

// TestRecoveryChoosesTheLength recovers one block whose replicas on three
// blockds have different lengths and states, with the first blockd as
// primary: the length and the replicas that take part follow HDFS's
// syncBlock, and each participant ends finalized at the recovery's stamp
// with exactly that prefix of the data.
func TestRecoveryChoosesTheLength(t *testing.T) {
	const rid = 1010
	cases := []struct {
		name     string
		a, b, c  func(*testing.T, *Blockd) // after start: a live writer, if any
		prep     [3]func(*Store)
		want     int
		joinMask [3]bool
	}{
		{name: "a finalized replica sets the length; longer unfinished ones join, shorter do not",
			prep: [3]func(*Store){finalizedOf(t, 3000), rbwOf(t, 1001, 4000), rbwOf(t, 1001, 2000)},
			want: 3000, joinMask: [3]bool{true, true, false}},
		{name: "replicas being written: the shortest of them; those waiting for recovery do not join",
			a: func(t *testing.T, d *Blockd) { writeLive(t, d, 1001, 4500) }, b: func(t *testing.T, d *Blockd) { writeLive(t, d, 1001, 3500) },
			prep: [3]func(*Store){nil, nil, rbwOf(t, 1001, 1000)},
			want: 3500, joinMask: [3]bool{true, true, false}},
		{name: "only replicas waiting for recovery: the shortest",
			prep: [3]func(*Store){rbwOf(t, 1001, 4096), rbwOf(t, 1001, 1700), rbwOf(t, 1002, 2500)},
			want: 1700, joinMask: [3]bool{true, true, true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := &recordingMetad{}
			ds := []*Blockd{startBlockd(t, m, tc.prep[0]), startBlockd(t, m, tc.prep[1]), startBlockd(t, m, tc.prep[2])}
			for i, f := range []func(*testing.T, *Blockd){tc.a, tc.b, tc.c} {
				if f != nil {
					f(t, ds[i])
				}
			}
			if err := ds[0].recoverBlock(context.Background(), recoverCmd(rid, ds...)); err != nil {
				t.Fatal(err)
			}
			var joined []*Blockd
			for i, d := range ds {
				if tc.joinMask[i] {
					joined = append(joined, d)
					recoveredAs(t, d, rid, tc.want)
				} else if r, _ := stateOf(d); r.State != cairn.ReplicaRUR {
					t.Errorf("%s did not take part: its replica is %v %s, want it left under recovery", d.node.StorageID, r.Block, r.State)
				}
			}
			c := m.lastCommit(t)
			if c.Block != recBlock || c.RecoveryID != rid || c.NewGenStamp != rid || c.NewLen != int64(tc.want) || c.Delete ||
				!slices.Equal(commitNodes(c), storageIDs(joined...)) {
				t.Errorf("commit %+v; want block %v, recovery %d, length %d, nodes %v", c, recBlock, rid, tc.want, storageIDs(joined...))
			}
			m.mu.Lock()
			defer m.mu.Unlock()
			if len(m.received) != len(joined) {
				t.Errorf("replicas reported finalized: %v, want one per participant", m.received)
			}
			for _, r := range m.received {
				if r.State != cairn.ReplicaFinalized || r.GenStamp != rid || r.Len != int64(tc.want) {
					t.Errorf("reported %v %s", r.Block, r.State)
				}
			}
		})
	}
}

// TestRecoveryStopsALiveWriter recovers a block while a real stream is
// writing its replica over the data port: the writer is stopped, the
// replica is claimed and finalized at what had arrived, and the stream's
// next packet is refused.
func TestRecoveryStopsALiveWriter(t *testing.T) {
	m := &recordingMetad{}
	a, b := startBlockd(t, m, nil), startBlockd(t, m, nil)
	conn, err := net.Dial("tcp", a.node.DataAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	bw, br := bufio.NewWriter(conn), bufio.NewReader(conn)
	if err := xfer.WriteOp(bw, &pb.OpHeader{Op: pb.OpHeader_WRITE_BLOCK, Block: rpc.ToPBBlock(&recBlock), ChunkSize: 512, Client: "test", Stage: pb.OpHeader_CREATE,
		Token: testToken(t, recBlock.ID, recBlock.GenStamp, recBlock.GenStamp, blocktoken.Write)}); err != nil {
		t.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	if rep, err := xfer.ReadReply(br); err != nil || rep.Status != 0 {
		t.Fatalf("write setup: %v %v", rep, err)
	}
	send := func(seq uint64, off, n int) *xfer.Ack {
		t.Helper()
		p := xfer.Packet{Seq: seq, Offset: int64(off), Data: recData[off : off+n], Sums: checksum.SumsAt(int64(off), recData[off:off+n], 512, nil)}
		if _, err := bw.Write(xfer.AppendPacket(nil, &p)); err != nil {
			t.Fatal(err)
		}
		if err := bw.Flush(); err != nil {
			t.Fatal(err)
		}
		ack, err := xfer.ReadAck(br)
		if err != nil {
			return nil
		}
		return ack
	}
	for i := 0; i < 3; i++ {
		if ack := send(uint64(i), i*1000, 1000); ack == nil || !ack.OK() {
			t.Fatalf("packet %d: ack %v", i, ack)
		}
	}
	if r, _ := stateOf(a); r.State != cairn.ReplicaRBW || r.Len != 3000 {
		t.Fatalf("before the recovery: %v %s, want RBW with 3000 bytes", r.Block, r.State)
	}
	if err := a.recoverBlock(context.Background(), recoverCmd(1010, a, b)); err != nil {
		t.Fatal(err)
	}
	recoveredAs(t, a, 1010, 3000)
	if c := m.lastCommit(t); c.NewLen != 3000 || !slices.Equal(c.Nodes, []string{a.node.StorageID}) {
		t.Errorf("commit %+v, want 3000 bytes on %s alone (%s has no replica)", c, a.node.StorageID, b.node.StorageID)
	}
	if ack := send(3, 3000, 1000); ack != nil && ack.OK() {
		t.Fatalf("the stopped writer's next packet was accepted")
	}
	recoveredAs(t, a, 1010, 3000)
}

// TestRecoveryRefusesAStaleReplica recovers a block one of whose replicas
// has a stamp older than metad's: that replica is refused and left alone,
// and the recovery goes on with the others.
func TestRecoveryRefusesAStaleReplica(t *testing.T) {
	m := &recordingMetad{}
	a := startBlockd(t, m, rbwOf(t, 1001, 2600))
	stale := startBlockd(t, m, rbwOf(t, 999, 4000))
	rep, err := callOp(context.Background(), stale.node, &pb.OpHeader{Op: pb.OpHeader_INIT_RECOVERY, Block: rpc.ToPBBlock(&recBlock), NewGenStamp: 1010, Token: recoverToken(1010)})
	if cairn.KindOf(err) != cairn.KindInvalid {
		t.Fatalf("INIT_RECOVERY of a stale replica: %v %v, want KindInvalid", rep, err)
	}
	if err := a.recoverBlock(context.Background(), recoverCmd(1010, a, stale)); err != nil {
		t.Fatal(err)
	}
	recoveredAs(t, a, 1010, 2600)
	if c := m.lastCommit(t); !slices.Equal(c.Nodes, []string{a.node.StorageID}) {
		t.Errorf("commit nodes %v, want only %s", c.Nodes, a.node.StorageID)
	}
	if r, _ := stateOf(stale); r.State != cairn.ReplicaRWR || r.GenStamp != 999 || r.Len != 4000 {
		t.Errorf("the stale replica is now %v %s; want it untouched", r.Block, r.State)
	}
}

// TestNewerRecoveryTakesOver claims the replicas for a recovery whose
// primary then vanishes: a newer recovery takes them over and completes,
// an older one is refused, and the first recovery can no longer finalize.
func TestNewerRecoveryTakesOver(t *testing.T) {
	m := &recordingMetad{}
	a, b := startBlockd(t, m, rbwOf(t, 1001, 3300)), startBlockd(t, m, rbwOf(t, 1001, 3100))
	ctx := context.Background()
	for _, d := range []*Blockd{a, b} {
		if r, err := a.initRecoveryOn(ctx, d.node, recBlock, 1010, recoverToken(1010)); err != nil || r.State != cairn.ReplicaRWR {
			t.Fatalf("first recovery on %s: %v %v", d.node.StorageID, r, err)
		}
	}
	if _, err := a.initRecoveryOn(ctx, b.node, recBlock, 1005, recoverToken(1005)); cairn.KindOf(err) != cairn.KindBusy {
		t.Fatalf("an older recovery: %v, want KindBusy", err)
	}
	if err := a.recoverBlock(ctx, recoverCmd(1020, a, b)); err != nil {
		t.Fatal(err)
	}
	recoveredAs(t, a, 1020, 3100)
	recoveredAs(t, b, 1020, 3100)
	if c := m.lastCommit(t); c.RecoveryID != 1020 || c.NewLen != 3100 || !slices.Equal(commitNodes(c), storageIDs(a, b)) {
		t.Errorf("commit %+v", c)
	}
	if _, err := a.updateRecoveryOn(ctx, b.node, recBlock, 1010, 3100, recoverToken(1010)); err == nil {
		t.Errorf("the superseded recovery finalized a replica")
	}
	recoveredAs(t, b, 1020, 3100)
}

// TestRecoveryWithNoReplicaAsksToDelete: when no target has a replica, the
// commit asks metad to delete the block.
func TestRecoveryWithNoReplicaAsksToDelete(t *testing.T) {
	m := &recordingMetad{}
	a, b := startBlockd(t, m, nil), startBlockd(t, m, nil)
	if err := a.recoverBlock(context.Background(), recoverCmd(1010, a, b)); err != nil {
		t.Fatal(err)
	}
	if c := m.lastCommit(t); !c.Delete || c.Block != recBlock || c.RecoveryID != 1010 || len(c.Nodes) != 0 {
		t.Errorf("commit %+v, want a delete of %v", c, recBlock)
	}
}

// TestVerifyBlockOverTheWire: VERIFY_BLOCK answers 0 for a sound replica,
// in any state, and the scanner's reason for a damaged one.
func TestVerifyBlockOverTheWire(t *testing.T) {
	m := &recordingMetad{}
	a := startBlockd(t, m, finalizedOf(t, 3000))
	b := startBlockd(t, m, rbwOf(t, 1001, 2000))
	verify := func(d *Blockd) (*pb.OpReply, error) {
		return callOp(context.Background(), d.node, &pb.OpHeader{Op: pb.OpHeader_VERIFY_BLOCK, Block: rpc.ToPBBlock(&recBlock),
			Token: testToken(t, recBlock.ID, 0, 1<<62, blocktoken.Read)})
	}
	for _, d := range []*Blockd{a, b} {
		if rep, err := verify(d); err != nil || cairn.ReplicaState(rep.ReplicaState) == 0 {
			t.Errorf("%s: VERIFY_BLOCK of a sound replica: %v %v", d.node.StorageID, rep, err)
		}
	}
	flip(t, a.store.BlockPath(cairn.Block{ID: recBlock.ID, GenStamp: recBlock.GenStamp}), 1500)
	_, err := verify(a)
	if cairn.KindOf(err) != cairn.KindIO || !bytes.Contains([]byte(err.Error()), []byte("checksum mismatch at chunk 2")) {
		t.Errorf("VERIFY_BLOCK of a damaged replica: %v, want the chunk that fails", err)
	}
	other := recBlock
	other.ID++
	if _, err := callOp(context.Background(), a.node, &pb.OpHeader{Op: pb.OpHeader_VERIFY_BLOCK, Block: rpc.ToPBBlock(&other),
		Token: testToken(t, other.ID, 0, 1<<62, blocktoken.Read)}); cairn.KindOf(err) != cairn.KindNotExist {
		t.Errorf("VERIFY_BLOCK of a block not here: %v, want KindNotExist", err)
	}
}

// TestPlanRecovery covers planRecovery's refusals.
func TestPlanRecovery(t *testing.T) {
	rr := func(st cairn.ReplicaState, n int64) recoveryReplica {
		return recoveryReplica{r: cairn.Replica{Block: cairn.Block{Len: n}, State: st}}
	}
	if _, _, err := planRecovery([]recoveryReplica{rr(cairn.ReplicaFinalized, 10), rr(cairn.ReplicaFinalized, 12)}); err == nil {
		t.Error("finalized replicas of different lengths were accepted")
	}
	n, parts, err := planRecovery([]recoveryReplica{rr(cairn.ReplicaRWR, 10), rr(cairn.ReplicaRBW, 12), rr(cairn.ReplicaRBW, 11)})
	if err != nil || n != 11 || len(parts) != 2 {
		t.Errorf("planRecovery = %d, %v, %v; want 11 with the two RBW", n, parts, err)
	}
}
