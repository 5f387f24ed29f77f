package rpc

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"cairn"
	"cairn/rpc/pb"
)

func TestParseCallKey(t *testing.T) {
	const client = "00112233445566778899aabbccddeeff"
	md := func(kv ...string) metadata.MD { return metadata.Pairs(kv...) }
	k, ok, err := parseCallKey(md(mdClientID, client, mdCallID, "42"))
	if err != nil || !ok || k.Client.String() != client || k.Call != 42 {
		t.Fatalf("valid key: %v %v %v", k, ok, err)
	}
	if k, ok, err := parseCallKey(md(mdCallID, "18446744073709551615", mdClientID, client)); err != nil || !ok || k.Call != 1<<64-1 {
		t.Errorf("largest call ID: %v %v %v", k, ok, err)
	}
	if _, ok, err := parseCallKey(md("cairn-user", "u")); ok || err != nil {
		t.Errorf("no key: ok %v err %v, want none and no error", ok, err)
	}
	if _, ok, err := parseCallKey(nil); ok || err != nil {
		t.Errorf("no metadata: ok %v err %v", ok, err)
	}
	for name, bad := range map[string]metadata.MD{
		"client only":         md(mdClientID, client),
		"call only":           md(mdCallID, "1"),
		"two clients":         md(mdClientID, client, mdClientID, client, mdCallID, "1"),
		"two calls":           md(mdClientID, client, mdCallID, "1", mdCallID, "2"),
		"short client":        md(mdClientID, client[:30], mdCallID, "1"),
		"long client":         md(mdClientID, client+"00", mdCallID, "1"),
		"upper-case client":   md(mdClientID, strings.ToUpper(client), mdCallID, "1"),
		"non-hex client":      md(mdClientID, "g"+client[1:], mdCallID, "1"),
		"empty client":        md(mdClientID, "", mdCallID, "1"),
		"call zero":           md(mdClientID, client, mdCallID, "0"),
		"leading zero":        md(mdClientID, client, mdCallID, "07"),
		"signed call":         md(mdClientID, client, mdCallID, "+7"),
		"negative call":       md(mdClientID, client, mdCallID, "-7"),
		"call overflows":      md(mdClientID, client, mdCallID, "18446744073709551616"),
		"empty call":          md(mdClientID, client, mdCallID, ""),
		"call with space":     md(mdClientID, client, mdCallID, " 7"),
		"hexadecimal call ID": md(mdClientID, client, mdCallID, "0x7"),
	} {
		if _, ok, err := parseCallKey(bad); ok || !errors.Is(err, cairn.ErrInvalid) {
			t.Errorf("%s: ok %v err %v, want a KindInvalid error", name, ok, err)
		}
	}
}

// FuzzParseCallKey: whatever a peer sends, parsing neither panics nor
// accepts what does not print back the same.
func FuzzParseCallKey(f *testing.F) {
	f.Add("00112233445566778899aabbccddeeff", "1")
	f.Add("00112233445566778899aabbccddeeff", "18446744073709551615")
	f.Add("", "")
	f.Add("zz", "01")
	f.Fuzz(func(t *testing.T, client, call string) {
		k, ok, err := parseCallKey(metadata.MD{mdClientID: {client}, mdCallID: {call}})
		if ok != (err == nil) {
			t.Fatalf("ok %v with error %v", ok, err)
		}
		if ok && (k.Client.String() != client || strconv.FormatUint(k.Call, 10) != call) {
			t.Fatalf("%q %q parsed as %v", client, call, k)
		}
	})
}

func TestMutationsAreNamespaceMethods(t *testing.T) {
	methods := map[string]bool{}
	for _, m := range pb.Namespace_ServiceDesc.Methods {
		methods["/"+pb.Namespace_ServiceDesc.ServiceName+"/"+m.MethodName] = true
	}
	// Join records the token it uses: a retry must get the first answer.
	methods[pb.Trust_Join_FullMethodName] = true
	for m := range Mutations {
		if !methods[m] {
			t.Errorf("%s is in Mutations but is no method of the Namespace service", m)
		}
	}
	for _, read := range []string{pb.Namespace_Stat_FullMethodName, pb.Namespace_List_FullMethodName, pb.Namespace_BlockLocations_FullMethodName} {
		if Mutations[read] {
			t.Errorf("%s is a read, yet in Mutations", read)
		}
	}
}

// flakyNS serves Mkdir and Stat, records the call key of every attempt,
// and answers as answer says for each attempt (nil: done).
type flakyNS struct {
	pb.UnimplementedNamespaceServer
	mu     sync.Mutex
	keys   []CallKey
	hasKey []bool
	answer func(attempt int, ctx context.Context) error
}

func (f *flakyNS) record(ctx context.Context) int {
	k, ok, err := CallKeyFrom(ctx)
	if err != nil {
		panic(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keys = append(f.keys, k)
	f.hasKey = append(f.hasKey, ok)
	return len(f.keys)
}

func (f *flakyNS) Mkdir(ctx context.Context, r *pb.MkdirRequest) (*pb.Empty, error) {
	if err := f.answer(f.record(ctx), ctx); err != nil {
		return nil, err
	}
	return &pb.Empty{}, nil
}

func (f *flakyNS) Stat(ctx context.Context, r *pb.PathRequest) (*pb.FileInfo, error) {
	if err := f.answer(f.record(ctx), ctx); err != nil {
		return nil, err
	}
	return &pb.FileInfo{Name: "x"}, nil
}

// serveFlaky serves f on 127.0.0.1 and returns a Namespace client whose
// connection retries with policy p.
func serveFlaky(t *testing.T, f *flakyNS, p RetryPolicy) *NamespaceClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterNamespaceServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(RetryInterceptor(NewClientID(), p)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return NewNamespaceClient(conn)
}

var fastRetry = RetryPolicy{Attempts: 4, Backoff: time.Millisecond, MaxBackoff: time.Millisecond}

// TestRetrySameCallID: a mutating call whose answer is lost in transport
// (Unavailable, without an answer from metad) is made again with the same
// client and call ID, and the next call gets the next call ID.
func TestRetrySameCallID(t *testing.T) {
	f := &flakyNS{answer: func(attempt int, _ context.Context) error {
		if attempt == 1 {
			return status.Error(codes.Unavailable, "connection reset")
		}
		return nil
	}}
	ns := serveFlaky(t, f, fastRetry)
	ctx := context.Background()
	if err := ns.Mkdir(ctx, "/a", 0o755); err != nil {
		t.Fatalf("mkdir: %v", err)
	}
	if err := ns.Mkdir(ctx, "/b", 0o755); err != nil {
		t.Fatalf("mkdir: %v", err)
	}
	if len(f.keys) != 3 || !f.hasKey[0] || !f.hasKey[1] || !f.hasKey[2] {
		t.Fatalf("attempts %v (keys %v), want 3, each with a key", f.keys, f.hasKey)
	}
	if f.keys[0] != f.keys[1] {
		t.Errorf("the retry has key %v, the first attempt %v: want the same", f.keys[1], f.keys[0])
	}
	if f.keys[2].Client != f.keys[0].Client || f.keys[2].Call == f.keys[0].Call {
		t.Errorf("the next call has key %v after %v: want the same client, another call ID", f.keys[2], f.keys[0])
	}
}

// TestRetryAfterAttemptTimeout: an attempt that gets no answer within the
// attempt timeout is made again with the same IDs while the call's own
// context still runs.
func TestRetryAfterAttemptTimeout(t *testing.T) {
	f := &flakyNS{answer: func(attempt int, ctx context.Context) error {
		if attempt == 1 {
			<-ctx.Done() // no answer until the client gives up on this attempt
			return ctx.Err()
		}
		return nil
	}}
	p := fastRetry
	p.AttemptTimeout = 50 * time.Millisecond
	ns := serveFlaky(t, f, p)
	if err := ns.Mkdir(context.Background(), "/a", 0o755); err != nil {
		t.Fatalf("mkdir: %v", err)
	}
	if len(f.keys) != 2 || f.keys[0] != f.keys[1] {
		t.Fatalf("attempts with keys %v, want 2 with the same", f.keys)
	}
}

// TestNoRetryOfAnswers: metad's own answers — even Unavailable with an
// ErrorDetail (KindUnavailable, KindRetry) — are not transport failures;
// a call whose context ended is not made again; reads carry no call ID
// and are not made again.
func TestNoRetryOfAnswers(t *testing.T) {
	answer := toStatus(cairn.E("metad.Mkdir", cairn.KindRetry, "/a", "not yet"))
	f := &flakyNS{answer: func(int, context.Context) error { return answer }}
	ns := serveFlaky(t, f, fastRetry)
	err := ns.Mkdir(context.Background(), "/a", 0o755)
	if !errors.Is(err, cairn.ErrRetry) || len(f.keys) != 1 {
		t.Errorf("mkdir answered KindRetry: %v after %d attempts, want that answer after 1", err, len(f.keys))
	}

	f2 := &flakyNS{answer: func(int, context.Context) error { return status.Error(codes.Unavailable, "down") }}
	ns2 := serveFlaky(t, f2, fastRetry)
	if _, err := ns2.Stat(context.Background(), "/a"); err == nil || len(f2.keys) != 1 || f2.hasKey[0] {
		t.Errorf("stat in transport failure: %v after %d attempts (key %v), want a failure after 1, without a key", err, len(f2.keys), f2.hasKey)
	}
	if err := ns2.Mkdir(context.Background(), "/a", 0o755); err == nil || len(f2.keys) != 1+fastRetry.Attempts {
		t.Errorf("mkdir always Unavailable: %v after %d attempts, want a failure after %d", err, len(f2.keys)-1, fastRetry.Attempts)
	}

	ctx, cancel := context.WithCancel(context.Background())
	f3 := &flakyNS{answer: func(int, context.Context) error {
		cancel()
		return status.Error(codes.Unavailable, "down")
	}}
	ns3 := serveFlaky(t, f3, fastRetry)
	if err := ns3.Mkdir(ctx, "/a", fs.FileMode(0o755)); err == nil || len(f3.keys) != 1 {
		t.Errorf("mkdir whose caller went away: %v after %d attempts, want a failure after 1", err, len(f3.keys))
	}
}

// TestNamedCallKeepsItsIDs: a call its caller named already (a client of
// a metad group names each call once, above its members' connections)
// reaches metad with those IDs, on every attempt, not the connection's.
func TestNamedCallKeepsItsIDs(t *testing.T) {
	f := &flakyNS{answer: func(attempt int, _ context.Context) error {
		if attempt == 1 {
			return status.Error(codes.Unavailable, "connection reset")
		}
		return nil
	}}
	ns := serveFlaky(t, f, fastRetry)
	id := NewClientID()
	namer := NewCallNamer(id)
	ctx, key := namer.Name(context.Background(), pb.Namespace_Mkdir_FullMethodName)
	if key.Client != id || key.Call != 1 {
		t.Fatalf("named %v, want client %s call 1", key, id)
	}
	if again, k2 := namer.Name(ctx, pb.Namespace_Mkdir_FullMethodName); again != ctx || k2 != key {
		t.Fatalf("a named call named again: %v, want %v kept", k2, key)
	}
	if _, k := namer.Name(context.Background(), pb.Namespace_Stat_FullMethodName); k != (CallKey{}) {
		t.Fatalf("a read was named %v", k)
	}
	if err := ns.Mkdir(ctx, "/a", 0o755); err != nil {
		t.Fatalf("mkdir: %v", err)
	}
	if len(f.keys) != 2 || f.keys[0] != key || f.keys[1] != key {
		t.Fatalf("attempts carried %v, want %v twice", f.keys, key)
	}
}
