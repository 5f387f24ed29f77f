package blockd

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"cairn"
	"cairn/rpc"
)

// fakeRegistry stands in for a metad over real gRPC: it takes every
// registration, heartbeat and report, counting heartbeats; with hang set,
// every call waits until its caller gives up.
type fakeRegistry struct {
	cairn.Registry // calls not listed below are not expected
	hang           bool
	heartbeats     atomic.Int64
	calls          atomic.Int64
}

func (f *fakeRegistry) wait(ctx context.Context) error {
	f.calls.Add(1)
	if f.hang {
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

func (f *fakeRegistry) Register(ctx context.Context, r cairn.Registration) (cairn.Registered, error) {
	if err := f.wait(ctx); err != nil {
		return cairn.Registered{}, err
	}
	return cairn.Registered{NamespaceID: "NS-test"}, nil
}

func (f *fakeRegistry) Heartbeat(ctx context.Context, h cairn.Heartbeat) ([]cairn.Command, error) {
	rep, err := f.HeartbeatReply(ctx, h)
	return rep.Commands, err
}

func (f *fakeRegistry) HeartbeatReply(ctx context.Context, h cairn.Heartbeat) (cairn.HeartbeatReply, error) {
	if err := f.wait(ctx); err != nil {
		return cairn.HeartbeatReply{}, err
	}
	f.heartbeats.Add(1)
	return cairn.HeartbeatReply{}, nil
}

func (f *fakeRegistry) BlockReport(ctx context.Context, _ string, _ []cairn.Replica) error {
	return f.wait(ctx)
}

func (f *fakeRegistry) BlocksReceived(ctx context.Context, _ string, _ []cairn.Replica) error {
	return f.wait(ctx)
}

func (f *fakeRegistry) BlocksDeleted(ctx context.Context, _ string, _ []cairn.Block) error {
	return f.wait(ctx)
}

// serveRegistry serves r over gRPC on 127.0.0.1 and returns the address;
// the server permits pings as metad's does (metad/main.go pingPolicy).
func serveRegistry(t *testing.T, r cairn.Registry) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}))
	rpc.RegisterRegistry(srv, r)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	return l.Addr().String()
}

// A metad that answers nothing holds none of an actor's calls past its
// deadline: register, heartbeat and incremental report each fail in time,
// and the report stays queued for the next try.
func TestActorCallsHaveDeadlines(t *testing.T) {
	reg := &fakeRegistry{hang: true}
	addr := serveRegistry(t, reg)
	const timeout = 300 * time.Millisecond
	d := startBlockdCfg(t, nil, nil, func(c *Config) { c.MetadAddr, c.MetadTimeout, c.Heartbeat = addr, timeout, 100*time.Millisecond })
	a := d.actors[0]
	ctx := context.Background()
	within := func(what string, f func() error) {
		t.Helper()
		start := time.Now()
		err := f()
		took := time.Since(start)
		if err == nil {
			t.Errorf("%s at a metad that answers nothing: no error", what)
		}
		if took > 10*timeout {
			t.Errorf("%s at a metad that answers nothing took %v, want about its deadline %v", what, took, timeout)
		}
	}
	within("register", func() error { return d.register(ctx, a) })
	within("heartbeat", func() error { return d.heartbeat(ctx, a) })
	d.received(cairn.Replica{Block: cairn.Block{ID: 1 << 30, GenStamp: 1001, Len: 1}, State: cairn.ReplicaFinalized})
	within("incremental report", func() error {
		if n := sendQueued(ctx, d, a, &a.incoming, "incremental block report", a.reg.BlocksReceived); n != 0 {
			return nil
		}
		return errors.New("not sent")
	})
	a.mu.Lock()
	queued := len(a.incoming)
	a.mu.Unlock()
	if queued != 1 {
		t.Errorf("%d replicas queued after the failed report, want the 1 back in the queue", queued)
	}
	if reg.calls.Load() < 3 {
		t.Errorf("the metad got %d calls, want at least 3", reg.calls.Load())
	}
}

// cuttableProxy forwards TCP connections to a backend until cut: then
// every connection it forwards goes silent for good, as a connection to
// a host cut off from the network does (nothing is answered, nothing
// breaks), and new ones are refused until it is restored.
type cuttableProxy struct {
	l       net.Listener
	backend string
	mu      sync.Mutex
	cut     bool
	conns   []*proxied
}

type proxied struct{ dead atomic.Bool }

func startProxy(t *testing.T, backend string) *cuttableProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cuttableProxy{l: l, backend: backend}
	t.Cleanup(func() { _ = l.Close() })
	go p.serve()
	return p
}

func (p *cuttableProxy) addr() string { return p.l.Addr().String() }

func (p *cuttableProxy) serve() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		cut := p.cut
		pc := &proxied{}
		if !cut {
			p.conns = append(p.conns, pc)
		}
		p.mu.Unlock()
		if cut {
			_ = c.Close()
			continue
		}
		b, err := net.Dial("tcp", p.backend)
		if err != nil {
			_ = c.Close()
			continue
		}
		pipe := func(dst, src net.Conn) {
			buf := make([]byte, 32<<10)
			for {
				n, err := src.Read(buf)
				if n > 0 && !pc.dead.Load() {
					if _, werr := dst.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					if !pc.dead.Load() {
						_ = dst.Close()
					}
					return
				}
			}
		}
		go pipe(b, c)
		go pipe(c, b)
	}
}

// setCut cuts the network (every connection so far goes silent for good)
// or restores it (new connections go through).
func (p *cuttableProxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for _, c := range p.conns {
			c.dead.Store(true)
		}
		p.conns = nil
	}
}

// An actor whose connection to its metad went silent (the metad's host
// cut off and back, its TCP connection dead) finds out by keepalive,
// dials again, and heartbeats through a new connection within seconds of
// the host's return: without keepalive its heartbeat waited on the dead
// connection for as long as TCP took to give up.
func TestActorRedialsAfterCut(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for gRPC's keepalive (at least 10 s)")
	}
	reg := &fakeRegistry{}
	p := startProxy(t, serveRegistry(t, reg))
	d := startBlockdCfg(t, nil, nil, func(c *Config) {
		c.MetadAddr, c.Heartbeat = p.addr(), 100*time.Millisecond
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.runActor(ctx, d.actors[0], func() {}) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("actor: %v", err)
		}
	}()
	waitBeats := func(what string, limit time.Duration) {
		t.Helper()
		from := reg.heartbeats.Load()
		deadline := time.Now().Add(limit)
		for reg.heartbeats.Load() < from+3 {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d heartbeats in %v, want 3", what, reg.heartbeats.Load()-from, limit)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitBeats("before the cut", 10*time.Second)
	p.setCut(true)
	time.Sleep(500 * time.Millisecond)
	beats := reg.heartbeats.Load()
	time.Sleep(time.Second)
	if n := reg.heartbeats.Load(); n != beats {
		t.Fatalf("%d heartbeats through the cut network", n-beats)
	}
	p.setCut(false)
	start := time.Now()
	// The silent connection is pinged after keepaliveTime idle and closed
	// keepaliveTimeout later; the redial follows within a backoff.
	waitBeats("after the network came back", keepaliveTime+keepaliveTimeout+10*time.Second)
	t.Logf("heartbeats again %v after the network came back", time.Since(start).Round(time.Millisecond))
}
