package metad

import (
	"context"
	"crypto/sha256"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"cairn"
	"cairn/rpc"
	"cairn/rpc/pb"
)

// serveNamespace serves m's Namespace over gRPC on loopback behind its
// retry cache, and returns a client of it.
func serveNamespace(t *testing.T, m *Metad) pb.NamespaceClient {
	t.Helper()
	return pb.NewNamespaceClient(serveConn(t, m))
}

// serveConn is serveNamespace's connection.
func serveConn(t *testing.T, m *Metad) *grpc.ClientConn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(m.retries.intercept))
	rpc.RegisterNamespace(srv, m)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	must(t, err)
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// asCall names a call as client id's call n.
func asCall(ctx context.Context, id rpc.ClientID, n uint64) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "cairn-client-id", id.String(), "cairn-call-id", strconv.FormatUint(n, 10))
}

// logEntries returns m's Raft log, oldest first.
func logEntries(t *testing.T, m *Metad) []*raft.Log {
	t.Helper()
	lo, err := m.rep.logs.FirstIndex()
	must(t, err)
	hi, err := m.rep.logs.LastIndex()
	must(t, err)
	var out []*raft.Log
	for i := lo; i <= hi && lo > 0; i++ {
		var e raft.Log
		must(t, m.rep.logs.GetLog(i, &e))
		out = append(out, &e)
	}
	return out
}

// callEntry finds the entry of type typ carrying call n's record.
func callEntry(es []*raft.Log, typ byte, n uint64) int {
	for i, e := range es {
		data := e.Data
		if len(data) > 0 && data[0] == entryPiped {
			if _, inner, err := splitPiped(data[1:]); err == nil {
				data = inner
			}
		}
		if e.Type != raft.LogCommand || len(data) < 1 || data[0] != typ {
			continue
		}
		rec, _, err := splitCallEntry(data[1:])
		if err != nil {
			continue
		}
		if key, _, _, err := decodeCallRecord(rec); err == nil && key.Call == n {
			return i
		}
	}
	return -1
}

// A member that applied the log of a group knows the calls the leader
// answered: a create made again there, with the same client and call
// IDs, gets the first answer (not "file exists"), and a create whose
// answer never reached the log (its leader died first) is run again and
// answers with the file it made.
func TestRaftRetryCacheFollowsLog(t *testing.T) {
	m := startGroupOfOne(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lc := serveNamespace(t, m)
	id := rpc.NewClientID()
	first, err := lc.Create(asCall(ctx, id, 1), &pb.CreateRequest{Path: "/f", Perm: 0o644, Client: "c1"})
	must(t, err)
	if _, err := lc.Create(asCall(ctx, id, 2), &pb.CreateRequest{Path: "/g", Perm: 0o644, Client: "c1"}); err != nil {
		t.Fatal(err)
	}
	// The answers are replicated after the calls answer.
	var es []*raft.Log
	for deadline := time.Now().Add(20 * time.Second); ; {
		es = logEntries(t, m)
		if callEntry(es, entryAnswer, 1) >= 0 && callEntry(es, entryAnswer, 2) >= 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the calls' answers did not reach the log within 20s")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// A member that applied the whole log answers call 1 from its cache.
	n := emptyMember(t, m)
	fsm, err := newRaftFSM(n)
	must(t, err)
	for _, e := range es {
		if r := fsm.Apply(e); r != nil {
			t.Fatalf("apply entry %d: %v", e.Index, r)
		}
	}
	nc := serveNamespace(t, n)
	again, err := nc.Create(asCall(ctx, id, 1), &pb.CreateRequest{Path: "/f", Perm: 0o644, Client: "c1"})
	if err != nil {
		t.Fatalf("create made again at a member that applied the log: %v, want the first answer", err)
	}
	if !proto.Equal(first, again) {
		t.Fatalf("create made again answered %v, want the first answer %v", again, first)
	}
	// Another call is applied as such: the name is taken.
	if _, err := nc.Create(asCall(ctx, id, 3), &pb.CreateRequest{Path: "/f", Perm: 0o644, Client: "c1"}); err == nil {
		t.Fatal("a new create of an existing name succeeded")
	}

	// A member that has call 2's change but not its answer runs it again,
	// told so: the file it made is its answer.
	cut := callEntry(es, entryAnswer, 2)
	if callEntry(es, entryCall, 2) < 0 || callEntry(es, entryCall, 2) > cut {
		t.Fatalf("call 2's change is not in the log before its answer")
	}
	o := emptyMember(t, m)
	ofsm, err := newRaftFSM(o)
	must(t, err)
	for _, e := range es[:cut] {
		if r := ofsm.Apply(e); r != nil {
			t.Fatalf("apply entry %d: %v", e.Index, r)
		}
	}
	oc := serveNamespace(t, o)
	got, err := oc.Create(asCall(ctx, id, 2), &pb.CreateRequest{Path: "/g", Perm: 0o644, Client: "c1"})
	if err != nil {
		t.Fatalf("create made again, its answer lost with its leader: %v", err)
	}
	fi, err := o.Stat(ctx, "/g")
	must(t, err)
	if got.GetInode() != fi.Inode || got.GetName() != "g" {
		t.Fatalf("create made again answered %v, want the file /g (inode %d)", got, fi.Inode)
	}
	// The same call ID with other arguments is refused.
	if _, err := oc.Create(asCall(ctx, id, 2), &pb.CreateRequest{Path: "/h", Perm: 0o644, Client: "c1"}); err == nil {
		t.Fatal("call ID 2 used for another create was applied")
	}
}

// An answer's encoding round-trips: a reply decodes to the method's reply
// type, an error keeps its code and metad's detail.
func TestAnswerEncoding(t *testing.T) {
	reply := &pb.FileInfo{Name: "f", Inode: 7}
	b, err := encodeAnswer(reply, nil)
	must(t, err)
	resp, callErr, err := decodeAnswer(pb.Namespace_Create_FullMethodName, b)
	if err != nil || callErr != nil || !proto.Equal(resp.(proto.Message), reply) {
		t.Fatalf("decoded %v, %v, %v; want %v", resp, callErr, err, reply)
	}
	want := rpc.ToStatus(cairn.E("metad.Create", cairn.KindExist, "/f", ""))
	b, err = encodeAnswer(nil, want)
	must(t, err)
	_, callErr, err = decodeAnswer(pb.Namespace_Create_FullMethodName, b)
	must(t, err)
	var kind cairn.Kind
	for _, d := range status.Convert(callErr).Details() {
		if ed, ok := d.(*pb.ErrorDetail); ok {
			kind = cairn.Kind(ed.Kind)
		}
	}
	if status.Code(callErr) != status.Code(want) || kind != cairn.KindExist {
		t.Fatalf("decoded error %v (kind %v), want %v", callErr, kind, want)
	}
	if _, _, err := decodeAnswer("/cairn.Namespace/NoSuch", append([]byte{answerReply}, 1)); err == nil {
		t.Fatal("an answer to an unknown method decoded")
	}
}

// FuzzCallEntry: a Raft entry's call record and answer never panic their
// decoders, and what decodes encodes back the same.
func FuzzCallEntry(f *testing.F) {
	var sum [sha256.Size]byte
	rec := encodeCallRecord(rpc.CallKey{Call: 9}, pb.Namespace_Create_FullMethodName, sum)
	f.Add(encodeCallEntry(entryCall, rec, []byte("batch")))
	f.Add(encodeCallEntry(entryAnswer, rec, []byte{answerReply}))
	f.Add([]byte{entryAnswer, 0, 0, 0, 200})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 1 {
			return
		}
		r, body, err := splitCallEntry(data[1:])
		if err != nil {
			return
		}
		key, method, s, err := decodeCallRecord(r)
		if err != nil {
			return
		}
		if string(encodeCallRecord(key, method, s)) != string(r) {
			t.Fatalf("record %x re-encodes differently", r)
		}
		_, _, _ = decodeAnswer(method, body)
	})
}

// A member that becomes the leader counts every writer's lease from
// then: renewals went to the old leader, so a writer it never heard from
// keeps its file however long this member had run.
func TestNewLeaderRenewsLeases(t *testing.T) {
	clk := newFakeClock()
	addr := freeRaftAddr(t)
	rc := RaftConfig{Self: addr, Peers: []string{addr}, Bootstrap: true, Listen: addr, ElectionTimeout: 100 * time.Millisecond}
	m := openCfg(t, Config{Raft: &rc, Clock: clk, LeaseSoft: time.Minute, LeaseHard: time.Hour})
	clk.Add(2 * time.Hour) // the member ran long before it led
	must(t, m.startReplica(rc))
	t.Cleanup(m.rep.stop)
	for deadline := time.Now().Add(20 * time.Second); !m.rep.ready.Load(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the member of a group of one did not lead within 20s")
		}
	}
	if m.leases.hardExpired("writer-of-the-old-leader") {
		t.Fatal("a new leader counts a writer it never heard from as silent since its own start")
	}
	clk.Add(time.Hour)
	if !m.leases.hardExpired("writer-of-the-old-leader") {
		t.Fatal("a writer silent for the hard limit after the failover keeps its lease")
	}
}
