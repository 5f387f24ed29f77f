package metad

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"cairn"
	"cairn/rpc"
	"cairn/rpc/pb"
)

var (
	mkdirInfo = &grpc.UnaryServerInfo{FullMethod: pb.Namespace_Mkdir_FullMethodName}
	statInfo  = &grpc.UnaryServerInfo{FullMethod: pb.Namespace_Stat_FullMethodName}
)

// callCtx is the context of an incoming call that names itself (client,
// call).
func callCtx(client rpc.ClientID, call uint64) context.Context {
	return metadata.NewIncomingContext(context.Background(),
		metadata.Pairs("cairn-client-id", client.String(), "cairn-call-id", fmt.Sprint(call)))
}

// countingHandler answers with a new reply each time, numbering them.
type countingHandler struct {
	runs atomic.Int64
	err  error
}

func (h *countingHandler) handle(ctx context.Context, req any) (any, error) {
	n := h.runs.Add(1)
	if h.err != nil {
		return nil, h.err
	}
	return &pb.FileInfo{Name: fmt.Sprint(n)}, nil
}

func TestRetryCacheAnswersRepeats(t *testing.T) {
	clock := newFakeClock()
	rc := newRetryCache(0, 0, clock.Now, nil)
	h := &countingHandler{}
	id := rpc.NewClientID()
	req := &pb.MkdirRequest{Path: "/a", Perm: 0o755}

	r1, err := rc.intercept(callCtx(id, 1), req, mkdirInfo, h.handle)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := rc.intercept(callCtx(id, 1), req, mkdirInfo, h.handle)
	if err != nil || r2 != r1 || h.runs.Load() != 1 {
		t.Fatalf("repeat of call 1: %v %v after %d runs; want the first answer %v, one run", r2, err, h.runs.Load(), r1)
	}
	// Another call ID, or another client, is another call.
	if _, err := rc.intercept(callCtx(id, 2), req, mkdirInfo, h.handle); err != nil || h.runs.Load() != 2 {
		t.Errorf("call 2: %v, %d runs, want 2", err, h.runs.Load())
	}
	if _, err := rc.intercept(callCtx(rpc.NewClientID(), 1), req, mkdirInfo, h.handle); err != nil || h.runs.Load() != 3 {
		t.Errorf("call 1 of another client: %v, %d runs, want 3", err, h.runs.Load())
	}
	// A call that names itself nothing runs each time; so does a read.
	for range 2 {
		if _, err := rc.intercept(context.Background(), req, mkdirInfo, h.handle); err != nil {
			t.Fatal(err)
		}
		if _, err := rc.intercept(callCtx(id, 1), &pb.PathRequest{Path: "/a"}, statInfo, h.handle); err != nil {
			t.Fatal(err)
		}
	}
	if h.runs.Load() != 7 {
		t.Errorf("%d runs after four calls without a key and reads, want 7", h.runs.Load())
	}
	// The same call ID for another request is refused, changing nothing.
	_, err = rc.intercept(callCtx(id, 1), &pb.MkdirRequest{Path: "/b", Perm: 0o755}, mkdirInfo, h.handle)
	if !isKind(err, cairn.KindInvalid) || h.runs.Load() != 7 {
		t.Errorf("call 1 again with another path: %v after %d runs, want KindInvalid and no run", err, h.runs.Load())
	}
	// After the expiry the answer is gone: the call runs again.
	clock.Add(DefaultRetryCacheExpiry + time.Second)
	if _, err := rc.intercept(callCtx(id, 1), req, mkdirInfo, h.handle); err != nil || h.runs.Load() != 8 {
		t.Errorf("call 1 after the expiry: %v, %d runs, want 8", err, h.runs.Load())
	}
}

// isKind reports whether err, a gRPC status from an interceptor, carries
// kind.
func isKind(err error, kind cairn.Kind) bool {
	st, ok := status.FromError(err)
	if !ok {
		return false
	}
	for _, d := range st.Details() {
		if ed, ok := d.(*pb.ErrorDetail); ok {
			return cairn.Kind(ed.Kind) == kind
		}
	}
	return false
}

func TestRetryCacheKeepsRefusals(t *testing.T) {
	rc := newRetryCache(0, 0, time.Now, nil)
	refusal := rpc.ToStatus(cairn.E("metad.Mkdir", cairn.KindExist, "/a", ""))
	h := &countingHandler{err: refusal}
	id := rpc.NewClientID()
	req := &pb.MkdirRequest{Path: "/a"}
	for range 3 {
		if _, err := rc.intercept(callCtx(id, 9), req, mkdirInfo, h.handle); !errors.Is(err, refusal) {
			t.Fatalf("got %v, want the first answer %v", err, refusal)
		}
	}
	if h.runs.Load() != 1 {
		t.Errorf("%d runs, want 1", h.runs.Load())
	}
}

func TestRetryCacheRefusesMalformedKeys(t *testing.T) {
	rc := newRetryCache(0, 0, time.Now, nil)
	h := &countingHandler{}
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("cairn-client-id", "nothex", "cairn-call-id", "1"))
	if _, err := rc.intercept(ctx, &pb.MkdirRequest{Path: "/a"}, mkdirInfo, h.handle); !isKind(err, cairn.KindInvalid) || h.runs.Load() != 0 {
		t.Errorf("malformed client ID: %v after %d runs, want KindInvalid and no run", err, h.runs.Load())
	}
}

// TestRetryCacheRepeatWaits: a repeat that comes while the first attempt
// runs waits for it and gets its answer; the call runs once. The first
// attempt runs on though its caller went away.
func TestRetryCacheRepeatWaits(t *testing.T) {
	rc := newRetryCache(0, 0, time.Now, nil)
	entered, release := make(chan struct{}), make(chan struct{})
	var runs atomic.Int64
	var sawCancel atomic.Bool
	slow := func(ctx context.Context, req any) (any, error) {
		runs.Add(1)
		close(entered)
		<-release
		sawCancel.Store(ctx.Err() != nil)
		return &pb.Empty{}, nil
	}
	id := rpc.NewClientID()
	req := &pb.MkdirRequest{Path: "/a"}
	first, cancelFirst := context.WithCancel(callCtx(id, 5))
	var wg sync.WaitGroup
	var r1 any
	wg.Add(1)
	go func() {
		defer wg.Done()
		r1, _ = rc.intercept(first, req, mkdirInfo, slow)
	}()
	<-entered
	cancelFirst() // the caller gives up: the call goes on
	var r2 any
	var err2 error
	wg.Add(1)
	go func() {
		defer wg.Done()
		r2, err2 = rc.intercept(callCtx(id, 5), req, mkdirInfo, slow)
	}()
	close(release)
	wg.Wait()
	if err2 != nil || r2 != r1 || runs.Load() != 1 {
		t.Errorf("repeat during the first attempt: %v %v, %d runs; want the first answer, 1 run", r2, err2, runs.Load())
	}
	if sawCancel.Load() {
		t.Error("the mutation saw its caller's cancellation")
	}
}

// TestRetryCacheNoAnswerNoEntry: an attempt that ended without an answer
// (a panic, a context error) leaves nothing behind: the call runs again.
func TestRetryCacheNoAnswerNoEntry(t *testing.T) {
	rc := newRetryCache(0, 0, time.Now, nil)
	id := rpc.NewClientID()
	req := &pb.MkdirRequest{Path: "/a"}
	func() {
		defer func() { _ = recover() }()
		_, _ = rc.intercept(callCtx(id, 1), req, mkdirInfo, func(context.Context, any) (any, error) { panic("boom") })
	}()
	h := &countingHandler{err: status.Error(codes.DeadlineExceeded, "late")}
	_, _ = rc.intercept(callCtx(id, 1), req, mkdirInfo, h.handle)
	h.err = nil
	if _, err := rc.intercept(callCtx(id, 1), req, mkdirInfo, h.handle); err != nil || h.runs.Load() != 2 {
		t.Errorf("after a panic and a deadline: %v, %d runs, want 2", err, h.runs.Load())
	}
	if n := rc.len(); n != 1 {
		t.Errorf("%d entries, want 1", n)
	}
}

// TestRetryCacheBounded: with room for 3 answers, the oldest go first.
func TestRetryCacheBounded(t *testing.T) {
	rc := newRetryCache(3, time.Hour, time.Now, nil)
	h := &countingHandler{}
	id := rpc.NewClientID()
	req := &pb.MkdirRequest{Path: "/a"}
	for call := uint64(1); call <= 10; call++ {
		if _, err := rc.intercept(callCtx(id, call), req, mkdirInfo, h.handle); err != nil {
			t.Fatal(err)
		}
		if n := rc.len(); n > 3 {
			t.Fatalf("%d entries after call %d, want at most 3", n, call)
		}
	}
	if _, err := rc.intercept(callCtx(id, 10), req, mkdirInfo, h.handle); err != nil || h.runs.Load() != 10 {
		t.Errorf("the newest call again: %v, %d runs, want its kept answer (10 runs)", err, h.runs.Load())
	}
	if _, err := rc.intercept(callCtx(id, 1), req, mkdirInfo, h.handle); err != nil || h.runs.Load() != 11 {
		t.Errorf("the oldest call again: %v, %d runs, want it run again (11)", err, h.runs.Load())
	}
}

// TestRetryCacheConcurrent: many clients repeating their calls at once;
// each call runs once (run with -race).
func TestRetryCacheConcurrent(t *testing.T) {
	rc := newRetryCache(1000, time.Hour, time.Now, nil)
	var mu sync.Mutex
	runs := map[string]int{}
	handler := func(ctx context.Context, req any) (any, error) {
		k, _, _ := rpc.CallKeyFrom(ctx)
		mu.Lock()
		runs[k.String()]++
		mu.Unlock()
		return &pb.Empty{}, nil
	}
	var wg sync.WaitGroup
	for c := range 8 {
		id := rpc.NewClientID()
		for r := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for call := uint64(1); call <= 50; call++ {
					req := &pb.MkdirRequest{Path: fmt.Sprintf("/c%d/%d", c, call)}
					if _, err := rc.intercept(callCtx(id, call), req, mkdirInfo, handler); err != nil {
						t.Errorf("client %d repeat %d call %d: %v", c, r, call, err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	if len(runs) != 8*50 {
		t.Errorf("%d calls ran, want %d", len(runs), 8*50)
	}
	for k, n := range runs {
		if n != 1 {
			t.Errorf("call %s ran %d times", k, n)
		}
	}
}

// TestLostAnswerOverRPC: a Mkdir, a Create, a Link, a Concat... that metad applied
// but whose answers were lost in transport are reported done by the
// client, which makes them again with the same call IDs; without the retry
// cache the second attempt would answer EEXIST for the caller's own work.
func TestLostAnswerOverRPC(t *testing.T) {
	m := openCfg(t, Config{})
	rc := newRetryCache(0, 0, m.clock.Now, nil)
	var lost sync.Map // call keys whose first answer was dropped
	var drops atomic.Int64
	// Outermost: applied by the cache and metad within, then the answer
	// is dropped as a broken connection would, once per call.
	lossy := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		resp, err := handler(ctx, req)
		if k, ok, _ := rpc.CallKeyFrom(ctx); ok {
			if _, seen := lost.LoadOrStore(k, true); !seen {
				drops.Add(1)
				return nil, status.Error(codes.Unavailable, "connection reset by peer")
			}
		}
		return resp, err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(lossy, rpc.ServerIdentity, markRemote, rc.intercept))
	rpc.RegisterNamespace(srv, m)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	id := cairn.Identity{User: m.superuser, Groups: []string{"supergroup"}}
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(rpc.IdentityInterceptor(id),
			rpc.RetryInterceptor(rpc.NewClientID(), rpc.RetryPolicy{Backoff: time.Millisecond, MaxBackoff: time.Millisecond})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ns := rpc.NewNamespaceClient(conn)
	ctx := context.Background()
	if err := ns.Mkdir(ctx, "/d", 0o755); err != nil {
		t.Fatalf("mkdir whose first answer was lost: %v, want success", err)
	}
	if _, err := ns.Create(ctx, "/d/f", cairn.CreateOptions{Perm: 0o644, Client: "c1"}); err != nil {
		t.Fatalf("create whose first answer was lost: %v, want success", err)
	}
	if err := ns.Link(ctx, "/d/f", "/d/h"); err != nil {
		t.Fatalf("link whose first answer was lost: %v, want success", err)
	}
	if fi, err := ns.Stat(ctx, "/d/h"); err != nil || fi.Nlink != 2 {
		t.Fatalf("after one link: %+v, %v; want 2 names", fi, err)
	}
	if err := ns.Rename(ctx, "/d/f", "/d/g"); err != nil {
		t.Fatalf("rename whose first answer was lost: %v, want success", err)
	}
	if err := ns.Delete(ctx, "/d/g", false); err != nil {
		t.Fatalf("delete whose first answer was lost: %v, want success", err)
	}
	if err := ns.Delete(ctx, "/d/h", false); err != nil {
		t.Fatalf("delete of the last name whose first answer was lost: %v, want success", err)
	}
	fakeNode(t, m, "n1")
	writeFile(t, ctx, m, "/d/ct", "w", "n1", false, testBlock)
	writeFile(t, ctx, m, "/d/cs", "w", "n1", false, 10)
	if err := ns.Concat(ctx, "/d/ct", []string{"/d/cs"}); err != nil {
		t.Fatalf("concat whose first answer was lost: %v, want success", err)
	}
	if fi, err := ns.Stat(ctx, "/d/ct"); err != nil || fi.Size != testBlock+10 {
		t.Fatalf("after one concat: %+v, %v; want %d bytes", fi, err, testBlock+10)
	}
	if err := ns.Delete(ctx, "/d/ct", false); err != nil {
		t.Fatalf("delete whose first answer was lost: %v, want success", err)
	}
	if drops.Load() != 8 {
		t.Errorf("%d answers dropped, want 8", drops.Load())
	}
	// A real conflict is still one.
	if err := ns.Mkdir(ctx, "/d", 0o755); !errors.Is(err, cairn.ErrExist) {
		t.Errorf("mkdir of an existing directory, a new call: %v, want ErrExist", err)
	}
	es, _, err := ns.List(ctx, "/d", "", 10)
	if err != nil || len(es) != 0 {
		t.Errorf("/d holds %v (%v), want nothing", es, err)
	}
}
