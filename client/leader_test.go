package client

import (
	"context"
	"errors"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"cairn"
	"cairn/rpc/pb"
)

func statusOf(t *testing.T, code codes.Code, kind cairn.Kind) error {
	t.Helper()
	st := status.New(code, "x")
	if kind != cairn.KindOther {
		var err error
		if st, err = st.WithDetails(&pb.ErrorDetail{Kind: uint32(kind)}); err != nil {
			t.Fatal(err)
		}
	}
	return st.Err()
}

// Where a call goes after each kind of failure at member 0 of three.
func TestLeaderConnRedirect(t *testing.T) {
	l := &leaderConn{addrs: []string{"a:1", "b:1", "c:1"}, log: zap.NewNop()}
	l.conns = make([]*grpc.ClientConn, 3)
	for _, c := range []struct {
		name     string
		err      error
		trailer  metadata.MD
		next     int32
		wait, ok bool
	}{
		{"not leader, leader named", statusOf(t, codes.FailedPrecondition, cairn.KindNotLeader), metadata.Pairs(leaderTrailer, "c:1"), 2, false, true},
		{"not leader, none known", statusOf(t, codes.FailedPrecondition, cairn.KindNotLeader), nil, 1, true, true},
		{"not leader, a stranger named", statusOf(t, codes.FailedPrecondition, cairn.KindNotLeader), metadata.Pairs(leaderTrailer, "z:1"), 1, true, true},
		{"unreachable", statusOf(t, codes.Unavailable, cairn.KindOther), nil, 1, true, true},
		{"leadership lost", statusOf(t, codes.Unavailable, cairn.KindUnavailable), nil, 1, true, true},
		{"an answer", statusOf(t, codes.NotFound, cairn.KindNotExist), nil, 0, false, false},
		{"safe mode", statusOf(t, codes.FailedPrecondition, cairn.KindSafeMode), nil, 0, false, false},
		{"not a status", errors.New("x"), nil, 0, false, false},
	} {
		next, wait, ok := l.redirect(0, c.err, c.trailer)
		if next != c.next || wait != c.wait || ok != c.ok {
			t.Errorf("%s: redirect = %d, %v, %v; want %d, %v, %v", c.name, next, wait, ok, c.next, c.wait, c.ok)
		}
	}
}

func TestSplitMetads(t *testing.T) {
	if got := SplitMetads(" a:1, ,b:2,"); len(got) != 2 || got[0] != "a:1" || got[1] != "b:2" {
		t.Fatalf("SplitMetads = %q", got)
	}
}

// A member that takes the connection but never answers (its host cut off
// from the network after the connection was made breaks nothing the
// client sees) is left for the next once a probe of it goes unanswered:
// the call is answered by the member that does.
func TestLeaderConnLeavesSilentMember(t *testing.T) {
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	}()

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()

	dial := func(a string) (*grpc.ClientConn, error) {
		return grpc.NewClient(a, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	l, err := dialGroup([]string{silent.Addr().String(), lis.Addr().String()}, zap.NewNop(), dial)
	if err != nil {
		t.Fatal(err)
	}
	l.probeEvery, l.probeTimeout = 100*time.Millisecond, 200*time.Millisecond
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var reply healthpb.HealthCheckResponse
	if err := l.Invoke(ctx, healthpb.Health_Check_FullMethodName, &healthpb.HealthCheckRequest{}, &reply); err != nil {
		t.Fatalf("a call with member 0 silent: %v, want member 1's answer", err)
	}
	if l.cur.Load() != 1 {
		t.Fatalf("the call ended at member %d, want 1", l.cur.Load())
	}
}

// A member that is slow to answer a call but answers the probes keeps the
// call: it is not sent again elsewhere.
func TestLeaderConnWaitsForSlowMember(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	srv := grpc.NewServer(grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
		method, _ := grpc.MethodFromServerStream(stream)
		if method == pb.Namespace_MetadMembers_FullMethodName {
			return status.Error(codes.Unimplemented, "a probe's answer")
		}
		calls.Add(1)
		time.Sleep(time.Second)
		return stream.SendMsg(&healthpb.HealthCheckResponse{})
	}))
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	other, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	other.Close() // nothing there: refused

	dial := func(a string) (*grpc.ClientConn, error) {
		return grpc.NewClient(a, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	l, err := dialGroup([]string{lis.Addr().String(), other.Addr().String()}, zap.NewNop(), dial)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.probeEvery, l.probeTimeout = 100*time.Millisecond, 500*time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var reply healthpb.HealthCheckResponse
	if err := l.Invoke(ctx, healthpb.Health_Check_FullMethodName, &healthpb.HealthCheckRequest{}, &reply); err != nil {
		t.Fatalf("a call at a slow member: %v", err)
	}
	if n := calls.Load(); n != 1 || l.cur.Load() != 0 {
		t.Fatalf("the slow member got the call %d times and the call ended at member %d; want once, at member 0", n, l.cur.Load())
	}
}

// Clients dialed one after another with a shared LeaderHint (a gateway
// dials one per request): the first finds the leader past a dead member;
// the next starts there, not at the dead one.
func TestLeaderHintShared(t *testing.T) {
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead.Close() // nothing there: refused
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()

	addrs := []string{dead.Addr().String(), lis.Addr().String()}
	hint := NewLeaderHint()
	dialOne := func() *Client {
		t.Helper()
		c, err := Dial(addrs[0]+","+addrs[1], Options{Insecure: true, Leader: hint, Identity: cairn.Identity{User: "u"}})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	first := dialOne()
	defer first.Close()
	if got := first.conn.(*leaderConn).cur.Load(); got != 0 {
		t.Fatalf("a client of a hint that knows no leader starts at member %d, want 0", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var reply healthpb.HealthCheckResponse
	if err := first.conn.Invoke(ctx, healthpb.Health_Check_FullMethodName, &healthpb.HealthCheckRequest{}, &reply); err != nil {
		t.Fatalf("a call with member 0 dead: %v, want member 1's answer", err)
	}
	next := dialOne()
	defer next.Close()
	if got := next.conn.(*leaderConn).cur.Load(); got != 1 {
		t.Fatalf("the next client of the hint starts at member %d, want 1 (where the first was answered)", got)
	}
}

// One name with several addresses stands for a group, a member at each;
// a list, an IP address, a name with one address or none stays as given.
func TestSplitMetadsByName(t *testing.T) {
	was := lookupHost
	defer func() { lookupHost = was }()
	lookupHost = func(_ context.Context, host string) ([]string, error) {
		switch host {
		case "metads.example":
			return []string{"10.0.0.3", "10.0.0.1", "10.0.0.2", "10.0.0.1"}, nil
		case "one.example":
			return []string{"10.0.0.9"}, nil
		case "localhost":
			return []string{"127.0.0.1", "::1"}, nil
		case "v6.example":
			return []string{"fd00::2", "fd00::1", "10.0.0.1"}, nil
		}
		return nil, errors.New("no such host")
	}
	for _, c := range []struct {
		in   string
		want []string
	}{
		{"metads.example:9000", []string{"10.0.0.1:9000", "10.0.0.2:9000", "10.0.0.3:9000"}},
		{" metads.example:9000 ,", []string{"10.0.0.1:9000", "10.0.0.2:9000", "10.0.0.3:9000"}},
		{"metads.example:9000,b:9000", []string{"metads.example:9000", "b:9000"}},
		{"one.example:9000", []string{"one.example:9000"}},
		{"nowhere.example:9000", []string{"nowhere.example:9000"}},
		{"10.1.2.3:9000", []string{"10.1.2.3:9000"}},
		{"[::1]:9000", []string{"[::1]:9000"}},
		{"metads.example", []string{"metads.example"}},
		{"localhost:9000", []string{"localhost:9000"}},
		{"v6.example:9000", []string{"[fd00::1]:9000", "[fd00::2]:9000"}},
	} {
		if got := SplitMetads(c.in); !slices.Equal(got, c.want) {
			t.Errorf("SplitMetads(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
