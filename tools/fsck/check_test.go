package fsck

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"cairn"
	"cairn/client"
	"cairn/metad"
	"cairn/rpc"
	"cairn/rpc/pb"
	"cairn/xfer"
)

// testCluster is a real metad (Pebble, gRPC on loopback) whose blockds are
// played by the test through the Registry calls, and a client of it.
type testCluster struct {
	m     *metad.Metad
	c     *client.Client
	nodes []cairn.Node
}

// startMetad serves a fresh metad on 127.0.0.1 with nodes registered as
// blockds (their DataAddr as given), all heartbeating.
func startMetad(t *testing.T, nodes []cairn.Node) *testCluster {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "meta")
	if _, err := metad.Format(dir, false); err != nil {
		t.Fatal(err)
	}
	m, err := metad.Open(metad.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(rpc.ServerIdentity))
	rpc.RegisterNamespace(srv, m)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	c, err := client.Dial(lis.Addr().String(), client.Options{Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	ctx := context.Background()
	for _, n := range nodes {
		if _, err := m.Register(ctx, cairn.Registration{Node: n}); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Heartbeat(ctx, cairn.Heartbeat{StorageID: n.StorageID, Capacity: 1 << 40, Remaining: 1 << 40}); err != nil {
			t.Fatal(err)
		}
	}
	return &testCluster{m: m, c: c, nodes: nodes}
}

func threeNodes(addr string) []cairn.Node {
	var out []cairn.Node
	for i := range 3 {
		out = append(out, cairn.Node{StorageID: fmt.Sprintf("DS-%d", i), DataAddr: addr})
	}
	return out
}

// file creates path with one block of n bytes reported by each of the
// cluster's blockds as rep makes it from the block, and closes it unless
// open. It returns the block as metad records it.
func (tc *testCluster) file(t *testing.T, path string, n int64, open bool, rep func(cairn.Block) cairn.Replica) cairn.Block {
	t.Helper()
	ctx := context.Background()
	if _, err := tc.m.Create(ctx, path, cairn.CreateOptions{Client: "w", Replication: 3}); err != nil {
		t.Fatal(err)
	}
	lb, err := tc.m.AddBlock(ctx, cairn.WriterRef{Path: path, Client: "w"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := lb.Block
	for _, node := range tc.nodes {
		if err := tc.m.BlocksReceived(ctx, node.StorageID, []cairn.Replica{rep(cairn.Block{ID: b.ID, GenStamp: b.GenStamp, Len: n})}); err != nil {
			t.Fatal(err)
		}
	}
	if !open {
		b.Len = n
		if err := tc.m.Complete(ctx, cairn.WriterRef{Path: path, Client: "w"}, &b); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

func finalizedReplica(b cairn.Block) cairn.Replica {
	return cairn.Replica{Block: b, State: cairn.ReplicaFinalized}
}

// fsck runs Check and Write as `cairn fsck` does and returns the report
// and its text.
func (tc *testCluster) fsck(t *testing.T, path string, o Options) (*Report, string) {
	t.Helper()
	r, err := Check(context.Background(), tc.c, path, o)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	r.Write(&b, "test", "metad", time.Now(), 0)
	return r, b.String()
}

// TestFsckOpenFile: a file left open for writing at 0 bytes, whose block's
// replicas hold a MiB being written, is counted as a file being written,
// and -openforwrite lists it with its replicas.
func TestFsckOpenFile(t *testing.T) {
	tc := startMetad(t, threeNodes("127.0.0.1:1"))
	tc.file(t, "/open", 1<<20, true, func(b cairn.Block) cairn.Replica {
		return cairn.Replica{Block: b, State: cairn.ReplicaRBW}
	})
	r, out := tc.fsck(t, "/", Options{})
	if !strings.Contains(out, " Total files:\t0 (Files currently being written: 1)\n") ||
		!strings.Contains(out, "(Total open file blocks (not validated): 1)") {
		t.Errorf("fsck / does not count the file being written:\n%s", out)
	}
	if !r.Healthy() {
		t.Errorf("a file being written makes fsck CORRUPT:\n%s", out)
	}
	_, out = tc.fsck(t, "/", Options{OpenForWrite: true, Blocks: true, Locations: true})
	if !strings.Contains(out, "/open 0 bytes, replicated: replication=3, 1 block(s), OPENFORWRITE:  OK\n") {
		t.Errorf("fsck -openforwrite does not list the file being written:\n%s", out)
	}
	if strings.Count(out, "(RBW len=1048576)") != 3 {
		t.Errorf("fsck -openforwrite -blocks -locations does not show the 3 replicas being written:\n%s", out)
	}
}

// TestFsckTruncatedReplicas: a closed file's block whose every replica
// reports 0 bytes (cut by a raw request) is CORRUPT, each replica named
// with its node and reason.
func TestFsckTruncatedReplicas(t *testing.T) {
	tc := startMetad(t, threeNodes("127.0.0.1:1"))
	b := tc.file(t, "/f", 1<<20, false, finalizedReplica)
	ctx := context.Background()
	cut := b
	cut.Len = 0
	for _, n := range tc.nodes {
		if err := tc.m.BlockReport(ctx, n.StorageID, []cairn.Replica{finalizedReplica(cut)}); err != nil {
			t.Fatal(err)
		}
	}
	r, out := tc.fsck(t, "/", Options{})
	if r.Healthy() || r.Corrupt != 1 || !strings.HasSuffix(out, "The filesystem under path '/' is CORRUPT\n") {
		t.Errorf("every replica cut to 0 bytes: healthy %v, corrupt blocks %d:\n%s", r.Healthy(), r.Corrupt, out)
	}
	for _, n := range tc.nodes {
		want := fmt.Sprintf("/f: bad replica of %s on %s (%s), FINALIZED len=0 at stamp %d: length mismatch: the replica has 0 bytes, the block 1048576", b, n.DataAddr, n.StorageID, b.GenStamp)
		if !strings.Contains(out, want+"\n") {
			t.Errorf("fsck does not name the bad replica on %s; want %q in:\n%s", n.StorageID, want, out)
		}
	}
	for _, l := range []string{"  CORRUPT FILES:\t1\n", "  CORRUPT BLOCKS: \t1\n", " Corrupt blocks:\t\t1\n"} {
		if !strings.Contains(out, l) {
			t.Errorf("fsck lacks %q:\n%s", l, out)
		}
	}
}

// TestFsckClientReportsChangeNothing: three clients' reports against a
// healthy block leave fsck HEALTHY with 3 live replicas.
func TestFsckClientReportsChangeNothing(t *testing.T) {
	tc := startMetad(t, threeNodes("127.0.0.1:1"))
	b := tc.file(t, "/f", 1000, false, finalizedReplica)
	for _, n := range tc.nodes {
		if err := tc.c.NS.ReportBadReplicas(context.Background(), []cairn.BadReplica{{Block: b, StorageID: n.StorageID, Reason: "checksum mismatch"}}); err != nil {
			t.Fatal(err)
		}
	}
	r, out := tc.fsck(t, "/", Options{})
	if !r.Healthy() || r.Replicas != 3 || r.UnderRepl != 0 {
		t.Errorf("after three clients' reports:\n%s", out)
	}
}

// fakeVerifier plays the blockds' VERIFY_BLOCK on one loopback port: bad
// maps the index of a call to the reason its replica is reported bad.
type fakeVerifier struct {
	mu    sync.Mutex
	calls int
	bad   map[int]string
	asked []cairn.Block
}

func (v *fakeVerifier) serve(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lis.Close() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				h, err := xfer.ReadOp(bufio.NewReader(c))
				if err != nil || h.Op != pb.OpHeader_VERIFY_BLOCK {
					return
				}
				v.mu.Lock()
				i := v.calls
				v.calls++
				v.asked = append(v.asked, rpc.FromPBBlock(h.Block))
				reason := v.bad[i]
				v.mu.Unlock()
				rep := &pb.OpReply{ReplicaState: int32(cairn.ReplicaFinalized), GenStamp: h.Block.GenStamp}
				if reason != "" {
					rep.Status, rep.Message = uint32(cairn.KindIO), reason
				}
				_ = xfer.WriteReply(c, rep)
			}()
		}
	}()
	return lis.Addr().String()
}

// TestFsckVerify: -verify has each replica re-read; a replica its blockd
// finds bad is named with its reason and no longer counts; a block left
// with none is CORRUPT.
func TestFsckVerify(t *testing.T) {
	v := &fakeVerifier{bad: map[int]string{0: "checksum mismatch at chunk 2 (offset 131072)"}}
	tc := startMetad(t, threeNodes(v.serve(t)))
	b := tc.file(t, "/f", 1000, false, finalizedReplica)
	var progress bytes.Buffer
	r, out := tc.fsck(t, "/", Options{Verify: true, Progress: &progress})
	v.mu.Lock()
	calls := v.calls
	v.bad = map[int]string{3: "x", 4: "y", 5: "z"}
	v.mu.Unlock()
	if calls != 3 || r.Verified != 3 {
		t.Fatalf("verified %d replicas (%d calls), want 3:\n%s", r.Verified, calls, out)
	}
	for _, a := range v.asked {
		if a != b {
			t.Errorf("a blockd was asked to verify %s, want %s", a, b)
		}
	}
	if !r.Healthy() || r.UnderRepl != 1 || r.BadReplicas != 1 || !strings.Contains(out, ": verify: checksum mismatch at chunk 2 (offset 131072)\n") {
		t.Errorf("one replica of three bad:\n%s", out)
	}
	if !strings.Contains(progress.String(), "\rVerifying replicas: 3/3, 1 bad") {
		t.Errorf("progress line %q", progress.String())
	}
	r, out = tc.fsck(t, "/", Options{Verify: true})
	if r.Healthy() || r.Corrupt != 1 {
		t.Errorf("every replica bad under -verify: healthy %v:\n%s", r.Healthy(), out)
	}
	// A blockd that does not answer VERIFY_BLOCK: nothing is verified, and
	// nothing is called bad.
	tc2 := startMetad(t, threeNodes("127.0.0.1:1"))
	tc2.file(t, "/g", 1000, false, finalizedReplica)
	r, out = tc2.fsck(t, "/", Options{Verify: true})
	if r.Healthy() || r.BadReplicas != 0 || strings.Count(out, ": could not verify the replica of ") != 3 ||
		!strings.Contains(out, "no good replica (0 bad, 3 could not be verified)") {
		t.Errorf("no blockd answers -verify: healthy %v, bad %d:\n%s", r.Healthy(), r.BadReplicas, out)
	}
}

// TestFsckMisReplicated: a block whose three replicas are all on one rack
// of a two-rack cluster is mis-replicated (counted and named, as hdfs fsck
// does), and the path is still HEALTHY.
func TestFsckMisReplicated(t *testing.T) {
	nodes := threeNodes("127.0.0.1:1")
	for i := range nodes {
		nodes[i].Rack = "/r1"
	}
	tc := startMetad(t, append(nodes, cairn.Node{StorageID: "DS-other", DataAddr: "127.0.0.1:2", Rack: "/r2"}))
	tc.nodes = nodes // only the /r1 blockds hold the block
	b := tc.file(t, "/f", 1000, false, finalizedReplica)
	r, out := tc.fsck(t, "/", Options{Files: true})
	want := fmt.Sprintf("/f: Replica placement policy is violated for %s. Block should be additionally replicated on 1 more rack(s). Total number of racks in the cluster: 2\n", b)
	if r.MisRepl != 1 || !strings.Contains(out, want) || !strings.Contains(out, " Mis-replicated blocks:\t\t1 (100.0 %)\n") {
		t.Errorf("three replicas on one of two racks: mis-replicated %d; want the count and %q in:\n%s", r.MisRepl, want, out)
	}
	if !r.Healthy() {
		t.Errorf("a mis-replicated block makes the path CORRUPT:\n%s", out)
	}
}

// TestFsckMaintenanceReplicas: a block whose good replicas are on blockds
// in maintenance that are switched off is neither missing nor corrupt, and
// with one live replica and two such, not under-replicated; the same
// block with the blockds merely dead is missing. The summary counts the
// replicas in maintenance.
func TestFsckMaintenanceReplicas(t *testing.T) {
	blk := cairn.Block{ID: 7, GenStamp: 1, Len: 100}
	rep := func(id string, live, maint bool) cairn.ReplicaInfo {
		return cairn.ReplicaInfo{Node: cairn.Node{StorageID: id, DataAddr: id + ":9866"}, Replica: cairn.Replica{Block: blk, State: cairn.ReplicaFinalized},
			Live: live, Good: true, Maintenance: maint}
	}
	check := func(reps ...cairn.ReplicaInfo) *Report {
		r := &Report{}
		fc := &fileCheck{path: "/f", fr: cairn.FileReplicas{Size: 100, Replication: 3, Blocks: []cairn.BlockReplicas{{Block: blk, Replicas: reps}}}}
		r.checkFile(fc, Options{Blocks: true, Locations: true})
		return r
	}
	if r := check(rep("a", false, true), rep("b", false, true), rep("c", false, true)); r.Missing != 0 || r.Corrupt != 0 || r.UnderRepl != 0 || r.InMaintenance != 3 || !r.Healthy() {
		t.Fatalf("three replicas in maintenance, switched off: %+v", r)
	}
	r := check(rep("a", true, false), rep("b", false, true), rep("c", false, true))
	if r.Missing != 0 || r.UnderRepl != 0 || r.InMaintenance != 2 || !strings.Contains(strings.Join(r.Lines, "\n"), "(DEAD, IN MAINTENANCE)") {
		t.Fatalf("one live replica and two in maintenance: %+v", r)
	}
	var out bytes.Buffer
	r.Path = "/"
	r.Write(&out, "me", "127.0.0.1:9000", time.Now(), time.Millisecond)
	if !strings.Contains(out.String(), " InMaintenanceReplicas:\t2\n") {
		t.Fatalf("the summary does not count the replicas in maintenance:\n%s", out.String())
	}
	if r := check(rep("a", false, false), rep("b", false, false), rep("c", false, false)); r.Missing != 1 || r.Healthy() {
		t.Fatalf("three dead replicas, no maintenance: %+v, want missing", r)
	}
}
