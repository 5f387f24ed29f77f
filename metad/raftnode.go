package metad

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"cairn"
	"cairn/client"
	"cairn/rpc"
	"cairn/rpc/pb"
	"cairn/trust"
)

// A metad group: three (or five) metads replicate the namespace through
// Raft (github.com/hashicorp/raft; docs/ARCHITECTURE.md, "Metad group").
// Each member is known by its RPC address, which is its Raft server ID;
// its Raft transport listens on the same host, RPC port + RaftPortOffset,
// over mutual TLS with metad certificates on a secure cluster. Only the
// leader serves: a follower answers every call but MetadMembers with
// KindNotLeader, naming the leader (in the detail, and in the
// LeaderTrailer for clients, which follow it).

// raftDir holds a member's Raft log (log/) and snapshots (snapshots/).
const raftDir = "raft"

// RaftPortOffset is how far above its RPC port a member's Raft transport
// listens (9000 → 9001).
const RaftPortOffset = 1

// DefaultElectionTimeout is --election-timeout's default: a follower that
// hears no leader this long stands for election.
const DefaultElectionTimeout = time.Second

// LeaderTrailer is the gRPC trailer in which a follower names the leader.
const LeaderTrailer = "cairn-leader"

// RaftConfig configures the member of a metad group (nil: a single metad).
type RaftConfig struct {
	// Self is this member's RPC address as the others know it.
	Self string
	// Peers are the members' RPC addresses, Self among them. With
	// Bootstrap (--format --peers) they are the group's first
	// configuration; otherwise they are only where to look for the leader.
	Peers     []string
	Bootstrap bool
	// Join, on a new member, lists the group's members to ask to add
	// this one (--join).
	Join string
	// Convert makes the single metad whose store this is the first
	// member of a new group, alone, keeping its store (--convert): the
	// others join it. It implies Bootstrap; Peers are then only where
	// clients and joiners look.
	Convert bool
	// Listen is the RPC listen address (--listen); the Raft transport
	// listens on its host at RaftPortOffset above its port.
	Listen          string
	ElectionTimeout time.Duration
	// SnapshotThreshold is how many entries the log gains between
	// snapshots, checked every SnapshotInterval; TrailingLogs, how many
	// stay behind a snapshot for members that lag (zero: Raft's
	// defaults, 8192, 2 min and 10240).
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64
	// Server and Client are the Raft transport's TLS configurations
	// (nil: plain TCP, an --insecure cluster).
	Server, Client *tls.Config
}

// RaftAddr is the Raft transport address of the member whose RPC address
// is rpcAddr.
func RaftAddr(rpcAddr string) (string, error) {
	host, port, err := net.SplitHostPort(rpcAddr)
	if err != nil {
		return "", fmt.Errorf("member address %q: %w", rpcAddr, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p <= 0 || p+RaftPortOffset > 65535 {
		return "", fmt.Errorf("member address %q: the port must be a number from 1 to %d", rpcAddr, 65535-RaftPortOffset)
	}
	return net.JoinHostPort(host, strconv.Itoa(p+RaftPortOffset)), nil
}

// ParsePeers splits a comma-separated list of member RPC addresses.
func ParsePeers(s string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if _, err := RaftAddr(p); err != nil {
			return nil, err
		}
		if seen[p] {
			return nil, fmt.Errorf("member %s is listed twice", p)
		}
		seen[p] = true
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil, errors.New("no member address")
	}
	return out, nil
}

// SelfOf picks this member's address among peers: the one equal to
// listen; else the only one with listen's port; else the only one with
// listen's port whose host is an address of this machine (local lists
// them; nil: the machine's interfaces).
func SelfOf(peers []string, listen string, local func() []net.IP) (string, error) {
	_, lport, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("--listen %q: %w", listen, err)
	}
	var same []string
	for _, p := range peers {
		if p == listen {
			return p, nil
		}
		if _, port, _ := net.SplitHostPort(p); port == lport {
			same = append(same, p)
		}
	}
	if len(same) == 1 {
		return same[0], nil
	}
	if local == nil {
		local = localIPs
	}
	mine := map[string]bool{}
	for _, ip := range local() {
		mine[ip.String()] = true
	}
	var here []string
	for _, p := range same {
		host, _, _ := net.SplitHostPort(p)
		ips, _ := net.LookupIP(host)
		for _, ip := range ips {
			if mine[ip.String()] {
				here = append(here, p)
				break
			}
		}
	}
	if len(here) != 1 {
		return "", fmt.Errorf("cannot tell which of the members %s this metad (--listen %s) is: give --self", strings.Join(peers, ","), listen)
	}
	return here[0], nil
}

// localIPs are the addresses of this machine's interfaces.
func localIPs() []net.IP {
	addrs, _ := net.InterfaceAddrs()
	var out []net.IP
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			out = append(out, n.IP)
		}
	}
	return out
}

// replica is a metad's membership of its group.
type replica struct {
	m     *Metad
	r     *raft.Raft
	fsm   *raftFSM
	logs  *raftLog
	trans *raft.NetworkTransport
	// stream is trans's connections (closed at stop).
	stream *raftStream
	self   string
	// ready is set while this member leads and has caught up with the
	// log (becomeLeader); only then does it serve.
	ready atomic.Bool
	done  chan struct{}
	// repiping: a repipe is under way.
	repiping atomic.Bool
	// stall notices this process standing still (readconfirm.go).
	stall *stallWatch
}

// startReplica starts this metad's Raft member on its store.
func (m *Metad) startReplica(rc RaftConfig) error {
	dir := filepath.Join(m.cfg.Dir, raftDir)
	if err := m.checkRaftStart(rc, dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("raft: %w", err)
	}
	fsm, err := newRaftFSM(m)
	if err != nil {
		return err
	}
	logs, err := openRaftLog(filepath.Join(dir, "log"))
	if err != nil {
		return err
	}
	hl := hclog.New(&hclog.LoggerOptions{Name: "raft", Output: zapWriter{m.log.Named("raft")}, Level: hclog.Info, DisableTime: true})
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hl)
	if err != nil {
		_ = logs.close()
		return fmt.Errorf("raft snapshots: %w", err)
	}
	if err := catchUpFromSnapshot(fsm, snaps); err != nil {
		_ = logs.close()
		return err
	}
	advertise, err := RaftAddr(rc.Self)
	if err != nil {
		_ = logs.close()
		return err
	}
	listen, err := RaftAddr(rc.Listen)
	if err != nil {
		_ = logs.close()
		return fmt.Errorf("--listen: %w", err)
	}
	stream, err := newRaftStream(listen, advertise, rc.Server, rc.Client)
	if err != nil {
		_ = logs.close()
		return err
	}
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: stream, MaxPool: 3, Timeout: 10 * time.Second, Logger: hl})
	et := rc.ElectionTimeout
	if et <= 0 {
		et = DefaultElectionTimeout
	}
	conf := raft.DefaultConfig()
	conf.LocalID = raft.ServerID(rc.Self)
	conf.HeartbeatTimeout = et
	conf.ElectionTimeout = et
	conf.LeaderLeaseTimeout = et / 2
	conf.CommitTimeout = 5 * time.Millisecond
	conf.NoSnapshotRestoreOnStart = true // the store persists; it is ahead of any snapshot (raftfsm.go)
	// Proposals queue (up to MaxAppendEntries) while the leader loop
	// syncs the log, and the next append takes them all: a proposal made
	// under the store's lock (applyInGroup) does not wait for that sync.
	conf.BatchApplyCh = true
	conf.Logger = hl
	if rc.SnapshotThreshold > 0 {
		conf.SnapshotThreshold = rc.SnapshotThreshold
	}
	if rc.SnapshotInterval > 0 {
		conf.SnapshotInterval = rc.SnapshotInterval
	}
	if rc.TrailingLogs > 0 {
		conf.TrailingLogs = rc.TrailingLogs
	}
	if rc.Bootstrap {
		has, err := raft.HasExistingState(logs, logs, snaps)
		if err != nil {
			_ = trans.Close()
			_ = logs.close()
			return fmt.Errorf("raft: %w", err)
		}
		if has && rc.Convert {
			m.log.Info("--convert: this metad is a member of a group already; nothing to convert", zap.String("self", rc.Self))
		}
		if !has {
			var c raft.Configuration
			first := rc.Peers
			if rc.Convert {
				first = []string{rc.Self} // the others join it
			}
			for _, p := range first {
				a, _ := RaftAddr(p) // ParsePeers checked them
				c.Servers = append(c.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p), Address: raft.ServerAddress(a)})
			}
			if err := raft.BootstrapCluster(conf, logs, logs, snaps, trans, c); err != nil {
				_ = trans.Close()
				_ = logs.close()
				return fmt.Errorf("raft bootstrap: %w", err)
			}
			m.log.Info("metad group bootstrapped", zap.Strings("members", first), zap.Bool("converted", rc.Convert))
		}
	}
	r, err := raft.NewRaft(conf, fsm, logs, logs, snaps, unpipelined{trans})
	if err != nil {
		_ = trans.Close()
		_ = logs.close()
		return fmt.Errorf("raft: %w", err)
	}
	rep := &replica{m: m, r: r, fsm: fsm, logs: logs, trans: trans, stream: stream, self: rc.Self, done: make(chan struct{}), stall: newStallWatch(et)}
	m.rep = rep
	m.retries.replicate = rep.proposeAnswer
	go rep.watchLeadership()
	go rep.stall.run(rep.done)
	m.log.Info("metad group member started", zap.String("self", rc.Self), zap.String("raft", advertise),
		zap.Uint64("applied_index", fsm.appliedIndex()), zap.Duration("election_timeout", et))
	return nil
}

// join asks the group at members (a list, as clients take it) to add this
// member, again until it is added or ctx ends (metad --join). It calls as
// this metad, with its own certificate (nil: an insecure cluster).
func (rep *replica) join(ctx context.Context, members string, creds *trust.Holder) {
	log := rep.m.log.With(zap.String("group", members))
	cl, err := client.Dial(members, client.Options{Creds: creds, Insecure: creds == nil, Logger: log})
	if err != nil {
		log.Error("join the metad group", zap.Error(err))
		return
	}
	defer cl.Close()
	pause := 200 * time.Millisecond
	for {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := cl.Group().AddMetad(cctx, rep.self)
		cancel()
		if err == nil {
			log.Info("joined the metad group", zap.String("self", rep.self))
			return
		}
		log.Warn("join the metad group: not yet", zap.Error(err))
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
		pause = min(2*pause, 5*time.Second)
	}
}

// catchUpFromSnapshot restores the store from the newest snapshot if the
// store is behind it. Raft starts from the newest snapshot's index without
// reading it (the store persists: NoSnapshotRestoreOnStart), which holds
// for a store that applied the entries itself; but a member that crashed
// while installing a snapshot from the leader has the snapshot, and a
// store from before it (finishRestore kept the old one), and the entries
// in between may be in no log any more.
func catchUpFromSnapshot(fsm *raftFSM, snaps raft.SnapshotStore) error {
	list, err := snaps.List()
	if err != nil {
		return fmt.Errorf("raft snapshots: %w", err)
	}
	if len(list) == 0 || list[0].Index <= fsm.appliedIndex() {
		return nil
	}
	meta, rc, err := snaps.Open(list[0].ID)
	if err != nil {
		return fmt.Errorf("raft snapshot %s: %w", list[0].ID, err)
	}
	fsm.m.log.Info("the store is behind the newest snapshot: restoring it", zap.Uint64("applied_index", fsm.appliedIndex()), zap.Uint64("snapshot_index", meta.Index))
	return fsm.Restore(rc)
}

// stopWait is how long stop lets Raft shut down before it closes the
// connections to the other members.
const stopWait = time.Second

// stop leaves the group's work: Raft shuts down (without leaving the
// configuration) and the log closes.
func (rep *replica) stop() {
	f := rep.r.Shutdown()
	errc := make(chan error, 1)
	go func() { errc <- f.Error() }()
	var err error
	select {
	case err = <-errc:
	case <-time.After(stopWait):
		// A request to a member that does not answer holds Raft's
		// replication up until the transport's I/O timeout: its
		// connection is closed, and the request fails at once.
		rep.m.log.Info("raft shutdown waits on a member that does not answer: closing the connections to the members")
		rep.stream.closeConns()
		err = <-errc
	}
	if err != nil {
		rep.m.log.Warn("raft shutdown", zap.Error(err))
	}
	<-rep.done
	_ = rep.trans.Close()
	_ = rep.logs.close()
}

// watchLeadership follows this member's leadership until Raft shuts down.
func (rep *replica) watchLeadership() {
	defer close(rep.done)
	ch := rep.r.LeaderCh()
	shut := make(chan struct{})
	go func() {
		for rep.r.State() != raft.Shutdown {
			time.Sleep(100 * time.Millisecond)
		}
		close(shut)
	}()
	for {
		select {
		case <-shut:
			rep.ready.Store(false)
			return
		case leading := <-ch:
			rep.ready.Store(false)
			if leading {
				rep.becomeLeader()
			} else {
				rep.m.tokens.SetPassive(true)
				rep.m.log.Info("no longer the leader of the metad group", zap.String("self", rep.self))
			}
		}
	}
}

// becomeLeader readies a new leader to serve: it waits until every entry
// of earlier terms is applied (a barrier), seeds the group's first
// namespace if the log has none yet, and reloads the counters from the
// store (they moved with the entries other leaders applied).
func (rep *replica) becomeLeader() {
	m := rep.m
	start := time.Now()
	term := rep.r.CurrentTerm() // before the barrier: it covers this term's start
	if err := rep.r.Barrier(0).Error(); err != nil {
		m.log.Warn("new leader: barrier failed", zap.Error(err))
		return
	}
	if rep.fsm.appliedIndex() == 0 {
		if err := rep.seed(); err != nil {
			m.log.Error("new leader: cannot seed the group's namespace", zap.Error(err))
			if errors.Is(err, errNoNamespace) {
				_ = rep.r.LeadershipTransfer()
			}
			return
		}
	}
	s := m.st
	s.mu.Lock()
	err := s.loadCounters()
	if err == nil {
		// Every committed entry is applied (the barrier): the pipeline
		// starts again from the store (overlay.go).
		s.resetPipeline(term, rep.fsm.appliedIndex())
	}
	s.mu.Unlock()
	if err != nil {
		m.log.Error("new leader: load the counters", zap.Error(err))
		return
	}
	if rep.r.State() != raft.Leader {
		return
	}
	// Writers renewed their leases with the old leader: their expiry
	// counts from now (lease.go).
	m.leases.renewAll()
	// The leader makes and rotates the block token keys, through the
	// log (raftkept.go); it starts from those it applied.
	m.tokens.SetPassive(false)
	if err := m.tokens.Resave(); err != nil {
		m.log.Error("new leader: block token keys", zap.Error(err))
	} else if _, err := m.tokens.Keys(); err != nil {
		m.log.Error("new leader: block token keys", zap.Error(err))
	}
	// Deletions queued while this member led before were decided on a
	// block map and a namespace that have changed since (a trim of a
	// block then over-replicated may now take a needed replica): they are
	// decided again, as HDFS's NameNode clears its invalidation queues
	// when it leaves the active state.
	if n := m.blocks.dropDeletes(); n > 0 {
		m.log.Info("deletions queued under an earlier leadership dropped", zap.Int("replicas", n))
	}
	// The blockds it has not heard from lately get --dead-after from now
	// to reach it before a writer is told there is none (pipeline.go).
	m.servingSince.Store(m.clock.Now().UnixNano())
	rep.ready.Store(true)
	// Replicas reported while this member followed are judged now that
	// its store has every committed entry (doubtful.go).
	m.serving.RLock()
	m.rejudgeDoubtful()
	// Startup safe mode counted the blocks of the store as it opened,
	// before the entries applied since (safemode.go).
	if err := m.recountSafeMode(); err != nil {
		m.log.Error("new leader: safe mode", zap.Error(err))
	}
	m.serving.RUnlock()
	m.log.Info("leading the metad group", zap.String("self", rep.self), zap.Uint64("applied_index", rep.fsm.appliedIndex()), zap.Duration("took", time.Since(start)))
}

// repipe reopens the pipeline of a member whose entry in flight failed
// while it may still lead (a leadership transfer refused it, say): after
// a barrier every entry proposed before is applied or failed, and the
// pipeline starts again from the store, with the counters reloaded. A
// barrier refused (the transfer still under way) is tried again; a member
// that lost leadership is left to becomeLeader. One at a time; a mutation
// refused for the closed pipeline starts one too.
func (rep *replica) repipe() {
	if !rep.repiping.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer rep.repiping.Store(false)
		for wait := 10 * time.Millisecond; ; wait = min(2*wait, time.Second) {
			term := rep.r.CurrentTerm()
			if rep.r.State() != raft.Leader {
				return
			}
			if err := rep.r.Barrier(0).Error(); err != nil {
				if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrRaftShutdown) {
					return
				}
				time.Sleep(wait)
				continue
			}
			s := rep.m.st
			s.mu.Lock()
			if !s.pipelineBroken || rep.r.State() != raft.Leader || rep.r.CurrentTerm() != term {
				s.mu.Unlock()
				return
			}
			err := s.loadCounters()
			if err == nil {
				s.resetPipeline(term, rep.fsm.appliedIndex())
			}
			s.mu.Unlock()
			if err != nil {
				rep.m.log.Error("reopen the pipeline: load the counters", zap.Error(err))
				return
			}
			rep.m.log.Info("pipeline of proposals reopened after a failed entry", zap.Uint64("term", term))
			return
		}
	}()
}

var errNoNamespace = errors.New("this member holds no namespace yet (it was not the one formatted)")

// seed proposes this member's whole store as the log's first command: the
// namespace of the member formatted or converted (convert.go), which every
// other member starts from.
func (rep *replica) seed() error {
	st := rep.m.st
	if _, err := st.get(layoutKey); err != nil {
		if isNotFound(err) {
			return errNoNamespace
		}
		return err
	}
	b := st.db.NewBatch()
	defer b.Close()
	it, err := st.db.NewIter(nil)
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		if k := it.Key(); len(k) > 0 && seedKey(k) {
			_ = b.Set(k, it.Value(), nil)
		}
	}
	if err := it.Close(); err != nil {
		return err
	}
	if err := rep.r.Apply(encodeEntry(entrySeed, b), 0).Error(); err != nil {
		return fmt.Errorf("propose the seed: %w", err)
	}
	rep.m.log.Info("group namespace seeded from this member's store", zap.Int("keys", int(b.Count())))
	return nil
}

// nameSpaceKey reports whether k is part of the namespace (check's
// digest): everything but the records outside it (block token keys, used
// join tokens, delegation tokens, blockd certificates, admin states:
// replicated through the log too, raftkept.go, and in the seed) and the
// applied index.
func nameSpaceKey(k []byte) bool {
	switch k[0] {
	case prefixCounter, prefixInode, prefixEntry, prefixFile, prefixBlock, prefixXattr, prefixWriting, prefixOrphan, prefixLink:
		return true
	case prefixMeta:
		return string(k) == string(layoutKey) || string(k) == string(subdirsKey)
	}
	return false
}

// await waits until a majority has the entry of f (a mutation's batch,
// proposed by applyInGroup) and this member has applied it, or Raft has
// shut down (which leaves the futures of entries committed and not yet
// applied unanswered).
func (rep *replica) await(op string, f raft.ApplyFuture) error {
	errc := make(chan error, 1)
	go func() { errc <- f.Error() }()
	var err error
	select {
	case err = <-errc:
	case <-rep.done:
		select {
		case err = <-errc:
		default:
			err = raft.ErrRaftShutdown
		}
	}
	if err != nil {
		switch {
		case errors.Is(err, raft.ErrNotLeader):
			return rep.notLeader(op)
		case errors.Is(err, raft.ErrLeadershipTransferInProgress):
			return &cairn.Error{Op: op, Kind: cairn.KindUnavailable, Detail: "the leadership is being handed over: the change was not applied, try again", Err: err}
		case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrRaftShutdown):
			rep.ready.Store(false)
			return &cairn.Error{Op: op, Kind: cairn.KindUnavailable, Detail: "leadership was lost while the change was being replicated: it may or may not have been applied", Err: err}
		}
		return fmt.Errorf("%s: replicate: %w", op, err)
	}
	if err, ok := f.Response().(error); ok && errors.Is(err, errDropped) {
		return &cairn.Error{Op: op, Kind: cairn.KindUnavailable, Detail: "the change was built on one that leadership changes kept out of the log; it was not applied, try again", Err: err}
	}
	if err, ok := f.Response().(error); ok && err != nil {
		// This member's store cannot follow the log: it stops serving and
		// hands the leadership to another member.
		rep.ready.Store(false)
		if terr := rep.r.LeadershipTransfer().Error(); terr != nil {
			rep.m.log.Error("hand over the leadership after a failed apply", zap.Error(terr))
		}
		return fmt.Errorf("%s: apply: %w", op, err)
	}
	return nil
}

// leader returns the leader's RPC address, "" when none is known.
func (rep *replica) leader() string {
	_, id := rep.r.LeaderWithID()
	return string(id)
}

func (rep *replica) notLeader(op string) error {
	l := rep.leader()
	detail := fmt.Sprintf("metad %s is a follower; no leader is known yet, try again shortly", rep.self)
	if l == rep.self {
		detail = fmt.Sprintf("metad %s is becoming the leader, try again shortly", rep.self)
	} else if l != "" {
		detail = fmt.Sprintf("metad %s is a follower; the leader is %s", rep.self, l)
	}
	return cairn.E(op, cairn.KindNotLeader, "", detail)
}

// registryPrefix begins the full method names of the Registry service,
// blockds' calls.
var registryPrefix = "/" + pb.Registry_ServiceDesc.ServiceName + "/"

// groupOnly are the calls a follower serves too.
var groupOnly = map[string]bool{pb.Namespace_MetadMembers_FullMethodName: true}

// leaderGate is the first interceptor after authentication on a member
// of a group: a follower refuses the call, naming the leader; the leader
// serves it while it stays leader (Restore waits for calls in flight),
// and confirms its leadership with a majority before a read
// (confirmLead: VerifyLeader, or a barrier after a stall), so a read
// never answers from a deposed leader's store.
func (m *Metad) leaderGate(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	rep := m.rep
	if rep == nil || groupOnly[info.FullMethod] {
		return handler(ctx, req)
	}
	if strings.HasPrefix(info.FullMethod, registryPrefix) && info.FullMethod != pb.Registry_CommitBlockSynchronization_FullMethodName {
		// Blockds register, heartbeat and report to every member, each
		// keeping its own block map and liveness (a recovery's commit
		// changes the namespace: the leader's alone); the store is held
		// against a restore meanwhile.
		m.serving.RLock()
		defer m.serving.RUnlock()
		return handler(ctx, req)
	}
	refuse := func() (any, error) {
		if l := rep.leader(); l != "" && l != rep.self {
			_ = grpc.SetTrailer(ctx, metadata.Pairs(LeaderTrailer, l))
		}
		return nil, rpc.ToStatus(rep.notLeader("metad." + info.FullMethod[strings.LastIndexByte(info.FullMethod, '/')+1:]))
	}
	if !rep.ready.Load() {
		return refuse()
	}
	m.serving.RLock()
	defer m.serving.RUnlock()
	// A read confirms that this member still leads. A change needs no
	// confirmation to be safe (a deposed leader's entries do not
	// commit), but a member that stood still lately confirms it too,
	// through the log (readconfirm.go): until then its store may be
	// behind a successor's, and a change it answers from the store
	// without an entry (one found made already, a call made again) would
	// be answered from a stale namespace.
	if !rpc.Mutations[info.FullMethod] || m.stalledLately() {
		if err := rep.confirmLead(); err != nil {
			if rep.r.State() != raft.Leader {
				// Deposed: stop serving now, not once watchLeadership
				// hears of it. A member that still leads (a barrier
				// refused during a handover) stays ready: only a new
				// leadership would set it again.
				rep.ready.Store(false)
			}
			return refuse()
		}
	}
	return handler(ctx, req)
}

// stalledLately reports whether this member's process stood still lately
// (readconfirm.go): a leader that did may have been deposed meanwhile
// without knowing it yet, its store behind its successor's, until it
// confirms through the log that it still leads.
func (m *Metad) stalledLately() bool {
	rep := m.rep
	return rep != nil && rep.stall != nil && rep.stall.stalled(rep.stall.now())
}

// leads reports whether this metad leads: a single metad always, a
// group's member while it is ready.
func (m *Metad) leads() bool {
	return m.rep == nil || m.rep.ready.Load()
}

// term is this member's Raft term (0: a single metad).
func (m *Metad) term() uint64 {
	if m.rep == nil {
		return 0
	}
	return m.rep.r.CurrentTerm()
}

// leaderWork runs fn, a round of a leader's background work (lease
// recovery, replication, trash, checkpoints), if this metad leads: a
// single metad always, a group's member while it is ready; the store is
// held against a snapshot's restore meanwhile.
func (m *Metad) leaderWork(fn func()) {
	if m.rep == nil {
		fn()
		return
	}
	if !m.rep.ready.Load() {
		return
	}
	if m.stalledLately() && m.rep.confirmLead() != nil {
		return // deposed while it stood still: its store may be behind
	}
	m.serving.RLock()
	defer m.serving.RUnlock()
	fn()
}

// MetadMembers describes the group (rpc.Members).
func (m *Metad) MetadMembers(ctx context.Context) (rpc.MetadMembers, error) {
	const op = "metad.MetadMembers"
	if _, err := m.callerOf(ctx, op); err != nil {
		return rpc.MetadMembers{}, err
	}
	rep := m.rep
	if rep == nil {
		return rpc.MetadMembers{Replicated: false, State: "Leader", Members: []rpc.MetadMember{{Leader: true, Voter: true}}}, nil
	}
	cf := rep.r.GetConfiguration()
	if err := cf.Error(); err != nil {
		return rpc.MetadMembers{}, &cairn.Error{Op: op, Kind: cairn.KindUnavailable, Err: err}
	}
	leader := rep.leader()
	g := rpc.MetadMembers{Replicated: true, Self: rep.self, State: rep.r.State().String(), AppliedIndex: rep.fsm.appliedIndex(), CommitIndex: rep.r.CommitIndex()}
	for _, s := range cf.Configuration().Servers {
		g.Members = append(g.Members, rpc.MetadMember{ID: string(s.ID), RaftAddr: string(s.Address), Leader: string(s.ID) == leader, Voter: s.Suffrage == raft.Voter})
	}
	return g, nil
}

// AddMetad adds a member to the group (rpc.Members): a voter once it has
// caught up.
func (m *Metad) AddMetad(ctx context.Context, id string) error {
	return m.changeMembers(ctx, "metad.AddMetad", id, true)
}

// RemoveMetad removes a member from the group (rpc.Members).
func (m *Metad) RemoveMetad(ctx context.Context, id string) error {
	return m.changeMembers(ctx, "metad.RemoveMetad", id, false)
}

func (m *Metad) changeMembers(ctx context.Context, op, id string, add bool) error {
	c, err := m.callerOf(ctx, op)
	if err != nil {
		return err
	}
	joining := false
	if p, ok := trust.PeerFrom(ctx); ok && p.Role == trust.RoleMetad && add {
		joining = true // metad --join (rpc.Auth let only AddMetad through)
	}
	if !c.super && !joining {
		return cairn.E(op, cairn.KindPermission, "", fmt.Sprintf("user=%s: only a superuser may change the metad group", c.user))
	}
	if m.rep == nil {
		return cairn.E(op, cairn.KindInvalid, "", "this metad is not a member of a group (started without --peers)")
	}
	addr, err := RaftAddr(id)
	if err != nil {
		return cairn.E(op, cairn.KindInvalid, id, err.Error())
	}
	var f raft.IndexFuture
	if add {
		f = m.rep.r.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, 0)
	} else {
		f = m.rep.r.RemoveServer(raft.ServerID(id), 0, 0)
	}
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) {
			return m.rep.notLeader(op)
		}
		return &cairn.Error{Op: op, Path: id, Kind: cairn.KindUnavailable, Err: err}
	}
	m.log.Info("metad group changed", zap.String("op", op), zap.String("member", id))
	return nil
}

// zapWriter carries Raft's log lines (hclog) into zap.
type zapWriter struct{ log *zap.Logger }

func (w zapWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	switch {
	case strings.HasPrefix(line, "[ERROR]"):
		w.log.Error(strings.TrimSpace(line[7:]))
	case strings.HasPrefix(line, "[WARN]"):
		w.log.Warn(strings.TrimSpace(line[6:]))
	case strings.HasPrefix(line, "[DEBUG]"), strings.HasPrefix(line, "[TRACE]"):
		w.log.Debug(line)
	default:
		w.log.Info(strings.TrimSpace(strings.TrimPrefix(line, "[INFO]")))
	}
	return len(p), nil
}
