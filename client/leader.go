package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"cairn"
	"cairn/rpc"
	"cairn/rpc/pb"
)

// A client of a metad group (metad/raftnode.go) is given the members'
// addresses, HOST1:9000,HOST2:9000,...: it keeps a connection to each
// and sends every call to the one it takes for the leader. A follower
// refuses a call with KindNotLeader, naming the leader in a trailer
// (metad.LeaderTrailer): the call goes there. A member that cannot be
// reached, or a leader that lost its leadership during a change, has the
// call sent to the next member, after a pause, until FailoverTimeout has
// passed since the call began or the call's context ends.
//
// A host cut off from the network breaks no connection: a call sent there
// would wait for as long as its caller lets it. So while a call waits at
// a member, the member is asked every probeEvery, on the same connection,
// a call every member answers at once (MetadMembers); one that gives no
// answer within probeTimeout counts as a member that cannot be reached,
// and the call is taken back and sent to the next member. A member that
// is only slow answers the probe, and its call is left to finish.

// FailoverTimeout bounds how long a call looks for a leader.
const FailoverTimeout = 30 * time.Second

// leaderTrailer is metad.LeaderTrailer (not imported: the client does
// not depend on metad).
const leaderTrailer = "cairn-leader"

// SplitMetads splits a list of metad addresses, HOST:PORT,HOST:PORT. One
// name with several addresses in the DNS (or /etc/hosts) stands for a
// group, a member at each: the list is the name's addresses, looked up
// once, now (a name that does not resolve, or to one address, stays as
// it is, for gRPC to resolve when it dials).
func SplitMetads(list string) []string {
	var out []string
	for _, a := range strings.Split(list, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	if len(out) == 1 {
		if many := membersByName(out[0]); len(many) > 1 {
			return many
		}
	}
	return out
}

// lookupHost resolves a name to its addresses (tests replace it).
var lookupHost = func(ctx context.Context, host string) ([]string, error) {
	return net.DefaultResolver.LookupHost(ctx, host)
}

// membersByName returns HOST:PORT's addresses of one family (IPv4 if it
// has several, else IPv6) as members, each with the port, sorted; nil
// when HOST is an IP address or does not resolve.
func membersByName(hostPort string) []string {
	host, port, err := net.SplitHostPort(hostPort)
	if err != nil || net.ParseIP(host) != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ips, err := lookupHost(ctx, host)
	if err != nil {
		return nil
	}
	// One family: a host's own IPv4 and IPv6 addresses (localhost) are
	// one member, not two.
	var v4, v6 []string
	for _, ip := range ips {
		switch p := net.ParseIP(ip); {
		case p == nil:
		case p.To4() != nil:
			v4 = append(v4, net.JoinHostPort(ip, port))
		default:
			v6 = append(v6, net.JoinHostPort(ip, port))
		}
	}
	out := v4
	if len(out) < 2 {
		out = v6
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// metadConn is the client's connection to metad: one gRPC connection, or
// a leaderConn over a group's members.
type metadConn interface {
	grpc.ClientConnInterface
	Close() error
}

// leaderConn sends calls to the leader of a metad group.
type leaderConn struct {
	addrs []string
	conns []*grpc.ClientConn
	cur   atomic.Int32 // index of the member taken for the leader
	log   *zap.Logger
	// probeEvery and probeTimeout: how often a member a call waits at
	// is asked whether it is there, and how long its answer may take.
	probeEvery, probeTimeout time.Duration
	// names names each mutating call once, before it is sent to any
	// member: made again at the new leader, it is the same call there,
	// which answers it from its retry cache (metad/raftcalls.go).
	names *rpc.CallNamer
	// hint, when set, learns the member that answered last (Options.Leader).
	hint *LeaderHint
}

// LeaderHint remembers the member of a metad group that last answered a
// call, for the clients a daemon dials one after another with the same
// list (a WebHDFS gateway or a blockd dials one per request): each starts
// at the member found leading, rather than at the first of the list, which
// may be dead or a follower, so a failover costs the first call after it
// the search for the leader, not every call.
type LeaderHint struct{ addr atomic.Pointer[string] }

// NewLeaderHint returns a hint that knows no leader yet.
func NewLeaderHint() *LeaderHint { return &LeaderHint{} }

// learn records addr as the member that answered.
func (h *LeaderHint) learn(addr string) {
	if p := h.addr.Load(); p == nil || *p != addr {
		h.addr.Store(&addr)
	}
}

// index is the place in addrs of the member that answered last, 0 when
// it knows none there.
func (h *LeaderHint) index(addrs []string) int32 {
	if p := h.addr.Load(); p != nil {
		for i, a := range addrs {
			if a == *p {
				return int32(i)
			}
		}
	}
	return 0
}

var _ metadConn = (*leaderConn)(nil)

func (l *leaderConn) Close() error {
	var errs []error
	for _, c := range l.conns {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// NewStream uses the member taken for the leader (metad serves no
// streams today).
func (l *leaderConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return l.conns[l.cur.Load()].NewStream(ctx, desc, method, opts...)
}

func (l *leaderConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	start := time.Now()
	pause := 50 * time.Millisecond
	ctx, _ = l.names.Name(ctx, method)
	for tries := 1; ; tries++ {
		i := l.cur.Load()
		var tr metadata.MD
		actx, cancel := context.WithCancel(ctx)
		var silent atomic.Bool
		done := make(chan struct{})
		go l.watch(actx, i, cancel, &silent, done)
		err := l.conns[i].Invoke(actx, method, args, reply, append(opts, grpc.Trailer(&tr))...)
		close(done)
		cancel()
		if err == nil {
			if l.hint != nil {
				l.hint.learn(l.addrs[i])
			}
			return nil
		}
		next, wait, ok := l.redirect(i, err, tr)
		if !ok && silent.Load() && ctx.Err() == nil {
			// The member gave no answer to a probe: it may be cut
			// off. The next one, at once (the probe waited already).
			next, wait, ok = (i+1)%int32(len(l.conns)), false, true
		}
		if !ok {
			return err
		}
		if ctx.Err() != nil || time.Since(start) > FailoverTimeout {
			return err
		}
		if l.cur.CompareAndSwap(i, next) && next != i {
			// A member long unreachable may be the leader now: do not
			// wait out gRPC's reconnection backoff (up to 2 minutes).
			l.conns[next].ResetConnectBackoff()
		}
		if next != i && !wait {
			l.log.Debug("metad call redirected to the leader", zap.String("method", method), zap.String("to", l.addrs[next]))
			continue
		}
		if tries%len(l.addrs) == 0 {
			l.log.Info("looking for the metad group's leader", zap.String("method", method), zap.Error(err), zap.Duration("since", time.Since(start)))
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		pause = min(2*pause, time.Second)
	}
}

// watch probes member i every probeEvery until done is closed; when a
// probe gets no answer within probeTimeout it sets silent and cancels the
// call's attempt (cancel).
func (l *leaderConn) watch(ctx context.Context, i int32, cancel context.CancelFunc, silent *atomic.Bool, done <-chan struct{}) {
	t := time.NewTicker(l.probeEvery)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, pcancel := context.WithTimeout(ctx, l.probeTimeout)
		err := l.conns[i].Invoke(pctx, pb.Namespace_MetadMembers_FullMethodName, &pb.Empty{}, &pb.MetadMembersReply{})
		unanswered := pctx.Err() == context.DeadlineExceeded && ctx.Err() == nil
		pcancel()
		if err != nil && unanswered {
			l.log.Info("a metad member gives no answer; the call goes to the next",
				zap.String("member", l.addrs[i]), zap.Duration("probe_timeout", l.probeTimeout), zap.Error(err))
			silent.Store(true)
			cancel()
			return
		}
	}
}

// redirect says where a call that failed with err on member i goes next,
// whether to pause first, and whether it goes anywhere (ok false: err is
// the call's answer).
func (l *leaderConn) redirect(i int32, err error, tr metadata.MD) (next int32, wait, ok bool) {
	rotate := (i + 1) % int32(len(l.conns))
	st, isStatus := status.FromError(err)
	if !isStatus {
		return 0, false, false
	}
	kind, detailed := rpc.DetailKind(err)
	switch {
	case detailed && kind == cairn.KindNotLeader:
		if hint := tr.Get(leaderTrailer); len(hint) == 1 {
			for j, a := range l.addrs {
				if a == hint[0] && int32(j) != i {
					return int32(j), false, true
				}
			}
		}
		return rotate, true, true // no leader known yet, or one not in the list
	case detailed && kind == cairn.KindUnavailable:
		return rotate, true, true // leadership lost during the call
	case !detailed && st.Code() == codes.Unavailable:
		return rotate, true, true // the member cannot be reached
	}
	return 0, false, false
}

// Probes of a member a call waits at (leaderConn.watch).
const (
	probeEvery   = time.Second
	probeTimeout = 3 * time.Second
)

// dialGroup connects to each of addrs with dial.
func dialGroup(addrs []string, log *zap.Logger, dial func(string) (*grpc.ClientConn, error)) (*leaderConn, error) {
	l := &leaderConn{addrs: addrs, log: log, probeEvery: probeEvery, probeTimeout: probeTimeout, names: rpc.NewCallNamer(rpc.NewClientID())}
	for _, a := range addrs {
		c, err := dial(a)
		if err != nil {
			_ = l.Close()
			return nil, fmt.Errorf("client: dial metad %s: %w", a, err)
		}
		l.conns = append(l.conns, c)
	}
	return l, nil
}

// LeaderConn is a connection to a metad group that sends every call to
// its leader, as the client's own (DialLeader).
type LeaderConn interface {
	grpc.ClientConnInterface
	Close() error
}

// DialLeader connects to the members of a metad group at addrs, each
// with dial, and sends every call to the leader, following it as Dial's
// client does: for daemons that talk to the group beside their own
// connections to each member (blockd's calls that only the leader
// serves).
func DialLeader(addrs []string, log *zap.Logger, dial func(string) (*grpc.ClientConn, error)) (LeaderConn, error) {
	if len(addrs) == 0 {
		return nil, errors.New("client: no metad address")
	}
	if log == nil {
		log = zap.NewNop()
	}
	return dialGroup(addrs, log, dial)
}
