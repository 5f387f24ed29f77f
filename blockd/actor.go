package blockd

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/keepalive"

	"cairn"
	"cairn/rpc"
	"cairn/trust"
)

// A blockd given several metads (--metad HOST1:9000,HOST2:9000,..., the
// members of a metad group) reports to every one of them, as an HDFS
// DataNode does to both NameNodes (BPOfferService, one BPServiceActor per
// NameNode): each member has an actor of its own that registers, sends
// heartbeats, full reports and incremental reports on its own loop, so a
// member that is down or slow holds no other back, and every member keeps
// its own block map and liveness; a new leader has them at once. Commands
// are taken only from the leader: a member that does not lead says so in
// its heartbeat replies and sends none but its block token keys (kept
// apart per member: blocktoken.KeySet.UpdateFrom) and CmdReregister, and
// of two members that both say they lead (a deposed one not yet aware),
// only the newer term's commands are acted on.
//
// A member's host cut off from the network breaks no connection: a call
// sent there waits on a TCP connection nobody answers, and after the host
// is back the kernel may not retransmit for a minute or more. So each
// call an actor makes carries a deadline (callTimeout; a full report, or
// a large incremental one, reportTimeout), so a silent member holds its
// actor's loop no longer than that; and every connection to a metad pings
// it when idle (gRPC keepalive, metadDialOptions), so a dead connection is
// closed within seconds and dialled again, with a backoff capped near the
// heartbeat interval, as soon as the member answers. A member that was cut
// off and then leads hears from the blockds within a few heartbeats of
// the host's return, rather than whenever TCP gives up; until it has had
// --dead-after to hear from them, it answers a writer that it must try
// again, not that there is no room (metad/pipeline.go, noBlockdErr).

// Bounds of an actor's calls to its metad (Config.MetadTimeout): a call
// gets three heartbeats, at least minMetadTimeout; a full report, or an
// incremental one of more than bigReport replicas, reportScale times
// that.
const (
	minMetadTimeout = 10 * time.Second
	reportScale     = 12
	bigReport       = 4096
)

// callTimeout bounds one call of an actor to its metad.
func (d *Blockd) callTimeout() time.Duration {
	if d.cfg.MetadTimeout > 0 {
		return d.cfg.MetadTimeout
	}
	return max(3*d.cfg.Heartbeat, minMetadTimeout)
}

// reportTimeout bounds a full block report, or a large incremental one.
func (d *Blockd) reportTimeout() time.Duration { return reportScale * d.callTimeout() }

// The keepalive of a connection to metad: idle this long (gRPC takes no
// less than 10 s), it is pinged, and closed when the ping has no answer
// within keepaliveTimeout; while it cannot connect, it tries again after
// a backoff of at most the heartbeat interval (and no less than
// minRedial), each try given connectTimeout. metad's server permits pings
// this often (metad/main.go, keepalive.EnforcementPolicy).
const (
	keepaliveTime    = 10 * time.Second
	keepaliveTimeout = 5 * time.Second
	connectTimeout   = 5 * time.Second
	minRedial        = time.Second
)

// metadDialOptions are the options of a blockd's connections to metad:
// its transport (TLS with creds, or plain text when nil), keepalive, and
// a reconnect backoff capped near heartbeat.
func metadDialOptions(creds *trust.Holder, heartbeat time.Duration) []grpc.DialOption {
	bo := backoff.DefaultConfig
	bo.BaseDelay = 100 * time.Millisecond
	bo.MaxDelay = max(heartbeat, minRedial)
	return []grpc.DialOption{
		rpc.Transport(creds),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: max(heartbeat, keepaliveTime), Timeout: keepaliveTimeout, PermitWithoutStream: true}),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bo, MinConnectTimeout: connectTimeout}),
	}
}

// actor is the blockd's link to one metad.
type actor struct {
	addr string
	conn *grpc.ClientConn
	reg  *rpc.RegistryClient

	mu       sync.Mutex
	incoming []cairn.Replica // created or finalized, not yet reported to this metad
	deleted  []cairn.Block   // deleted, not yet reported
	lost     []cairn.Block   // on failed volumes, not yet reported
	kick     chan struct{}

	// leads: this metad's last heartbeat reply said it leads.
	leads atomic.Bool
}

func newActor(addr string, conn *grpc.ClientConn) *actor {
	return &actor{addr: addr, conn: conn, reg: rpc.NewRegistryClient(conn), kick: make(chan struct{}, 1)}
}

// wake has the actor's loop send its queues now.
func (a *actor) wake() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// queue appends items to one of a's queues (under a.mu) and wakes it.
func queue[T any](a *actor, q *[]T, items ...T) {
	a.mu.Lock()
	*q = append(*q, items...)
	a.mu.Unlock()
	a.wake()
}

// toEvery queues items on every actor's queue that pick names.
func toEvery[T any](d *Blockd, pick func(*actor) *[]T, items ...T) {
	for _, a := range d.actors {
		queue(a, pick(a), items...)
	}
}

// sendQueued sends the items queued in *q to a's metad with send, within
// callTimeout (reportTimeout for more than bigReport items), and returns
// how many went; on failure they go back to the front of the queue for
// the next try.
func sendQueued[T any](ctx context.Context, d *Blockd, a *actor, q *[]T, what string, send func(context.Context, string, []T) error) int {
	a.mu.Lock()
	batch := *q
	*q = nil
	a.mu.Unlock()
	if len(batch) == 0 {
		return 0
	}
	timeout := d.callTimeout()
	if len(batch) > bigReport {
		timeout = d.reportTimeout()
	}
	sctx, cancel := context.WithTimeout(ctx, timeout)
	err := send(sctx, d.node.StorageID, batch)
	cancel()
	if err != nil {
		d.log.Warn(what+" failed; will retry", zap.String("metad", a.addr), zap.Int("replicas", len(batch)), zap.Error(err))
		a.mu.Lock()
		*q = append(batch, *q...)
		a.mu.Unlock()
		return 0
	}
	return len(batch)
}

// reportIncoming sends a's metad the replicas received, deleted and lost
// since the last report.
func (d *Blockd) reportIncoming(ctx context.Context, a *actor) {
	if n := sendQueued(ctx, d, a, &a.lost, "report of replicas lost with a failed volume", a.reg.BlocksDeleted); n > 0 {
		d.log.Info("replicas lost with a failed volume reported", zap.String("metad", a.addr), zap.Int("replicas", n))
	}
	sendQueued(ctx, d, a, &a.deleted, "report of deleted replicas", a.reg.BlocksDeleted)
	sendQueued(ctx, d, a, &a.incoming, "incremental block report", a.reg.BlocksReceived)
}

// fromLeader reports whether the commands of a heartbeat reply from a are
// to be acted on: a single metad's always; a group member's only when it
// says it leads, at the newest term this blockd has seen a leader at.
func (d *Blockd) fromLeader(a *actor, rep cairn.HeartbeatReply) bool {
	a.leads.Store(!rep.Follower)
	if rep.Follower {
		return false
	}
	d.leadMu.Lock()
	defer d.leadMu.Unlock()
	if rep.Term < d.leadTerm {
		return false // a deposed leader that does not know it yet
	}
	if rep.Term > d.leadTerm || d.leadAddr != a.addr {
		if len(d.actors) > 1 {
			d.log.Info("metad leader", zap.String("metad", a.addr), zap.Uint64("term", rep.Term))
		}
		d.leadTerm, d.leadAddr = rep.Term, a.addr
	}
	return true
}

// leaderAddr is the metad last taken for the leader ("" before any).
func (d *Blockd) leaderAddr() string {
	d.leadMu.Lock()
	defer d.leadMu.Unlock()
	return d.leadAddr
}

// registerLoop registers with a's metad, retrying while it is
// unreachable; a namespace mismatch is final.
func (d *Blockd) registerLoop(ctx context.Context, a *actor) error {
	delay := 200 * time.Millisecond
	for {
		err := d.register(ctx, a)
		if err == nil {
			return nil
		}
		if cairn.KindOf(err) == cairn.KindNamespace {
			return err
		}
		d.log.Warn("register with metad failed; retrying", zap.String("metad", a.addr), zap.Error(err))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, d.cfg.Heartbeat)
	}
}

// runActor registers with a's metad, calls registered once it has, and
// then heartbeats and reports to it until ctx ends.
func (d *Blockd) runActor(ctx context.Context, a *actor, registered func()) error {
	if err := d.registerLoop(ctx, a); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("metad %s: %w", a.addr, err)
	}
	registered()
	return d.run(ctx, a)
}

// run heartbeats and sends incremental reports to a's metad until ctx
// ends. The first heartbeat goes at once, so metad knows the capacity
// before it places anything here.
func (d *Blockd) run(ctx context.Context, a *actor) error {
	if err := d.heartbeat(ctx, a); err != nil && cairn.KindOf(err) == cairn.KindNamespace {
		return err
	}
	t := time.NewTicker(d.cfg.Heartbeat)
	defer t.Stop()
	report := time.NewTicker(d.cfg.BlockReport)
	defer report.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-a.kick:
			d.reportIncoming(ctx, a)
		case <-report.C:
			report := d.store.Report()
			rctx, cancel := context.WithTimeout(ctx, d.reportTimeout())
			err := a.reg.BlockReport(rctx, d.node.StorageID, report)
			cancel()
			if err != nil {
				d.log.Warn("full block report failed", zap.String("metad", a.addr), zap.Error(err))
			} else {
				d.log.Info("full block report", zap.String("metad", a.addr), zap.Int("replicas", len(report)), zap.Any("by_state", byState(report)))
			}
		case <-t.C:
			d.reportIncoming(ctx, a)
			if err := d.heartbeat(ctx, a); err != nil {
				if cairn.KindOf(err) == cairn.KindNamespace {
					return err
				}
				d.log.Warn("heartbeat failed", zap.String("metad", a.addr), zap.Error(err))
			}
		}
	}
}
