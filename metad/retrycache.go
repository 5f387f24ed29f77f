package metad

import (
	"container/list"
	"context"
	"crypto/sha256"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"cairn"
	"cairn/rpc"
)

// The retry cache, HDFS's RetryCache: the first answer to each mutating
// call (rpc.Mutations) that names itself by client ID and call ID, kept so
// that the same call made again — after its answer was lost in transport
// — gets that answer instead of being applied a second time. A retry that
// comes while the first attempt still runs waits for it. Answers are kept
// for an expiry (HDFS: 10 minutes) and at most a bounded number of them,
// the oldest dropped first; the cache lives in memory only, so a restarted
// single metad applies a call made again as a new one. The members of a
// metad group fill theirs from the Raft log as well (raftcalls.go), so a
// call made again at a new leader is answered there.
//
// A mutating call runs to its end once it reached metad, whether or not
// its caller is still waiting: the caller's cancellation does not reach
// it, so the answer kept is the call's true outcome.

// Defaults of the retry cache.
const (
	DefaultRetryCacheSize   = 100_000
	DefaultRetryCacheExpiry = 10 * time.Minute
)

type retryCache struct {
	max    int
	expiry time.Duration
	now    func() time.Time
	log    *zap.Logger

	// replicate, on a member of a metad group, replicates the answer of
	// a call that changed the store (raftcalls.go); set before calls are
	// served.
	replicate func(c *pendingCall, resp any, err error)

	mu      sync.Mutex
	entries map[rpc.CallKey]*retryEntry
	done    list.List // of *retryEntry with an answer, oldest answer first
}

// retryEntry is one call: under way until done is closed, then its answer.
type retryEntry struct {
	key    rpc.CallKey
	method string
	sum    [sha256.Size]byte // of the request, to catch a call ID used for two calls
	done   chan struct{}

	// Set before done is closed.
	resp    any
	err     error
	expires time.Time
	elem    *list.Element // in retryCache.done
	// unanswered: the call's change came in the Raft log, its answer did
	// not (its leader died first); made again, it runs again, told so
	// (raftcalls.go). replay: this attempt is such a run.
	unanswered, replay bool
	// applied: a committed Raft entry carried the call's IDs
	// (raftcalls.go), before this attempt (a replay) or while it ran: its
	// change is in the store.
	applied bool
}

// newRetryCache keeps up to size answers for expiry each; zero values take
// the defaults.
func newRetryCache(size int, expiry time.Duration, now func() time.Time, log *zap.Logger) *retryCache {
	if size <= 0 {
		size = DefaultRetryCacheSize
	}
	if expiry <= 0 {
		expiry = DefaultRetryCacheExpiry
	}
	if log == nil {
		log = zap.NewNop()
	}
	return &retryCache{max: size, expiry: expiry, now: now, log: log, entries: map[rpc.CallKey]*retryEntry{}}
}

// intercept is a gRPC server interceptor: it runs mutating calls apart
// from their callers' cancellation and answers a repeated one from the
// cache.
func (rc *retryCache) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if !rpc.Mutations[info.FullMethod] {
		return handler(ctx, req)
	}
	key, ok, err := rpc.CallKeyFrom(ctx)
	if err != nil {
		return nil, rpc.ToStatus(err)
	}
	run := context.WithoutCancel(ctx)
	if !ok {
		return handler(run, req)
	}
	sum, err := requestSum(info.FullMethod, req)
	if err != nil {
		return nil, rpc.ToStatus(cairn.E("metad.retryCache", cairn.KindInvalid, "", err.Error()))
	}
	e, first := rc.begin(key, info.FullMethod, sum)
	if !first {
		return rc.repeat(ctx, e, info.FullMethod, sum)
	}
	finished := false
	defer func() {
		// A handler that panics leaves no answer: the call may be made
		// again.
		if !finished {
			rc.drop(e)
		}
	}()
	var pc *pendingCall
	if rc.replicate != nil || e.replay {
		pc = &pendingCall{key: key, method: info.FullMethod, sum: sum, replay: e.replay}
		run = withPendingCall(run, pc)
	}
	var resp any
	if e.replay && replayedDone[info.FullMethod] {
		// Its one batch is in: it succeeded (raftcalls.go).
		resp, err = replyMessage(info.FullMethod)
		rc.log.Info("a call made again after its answer was lost with the leader: its change is in; answered success",
			zap.String("call", key.String()), zap.String("method", info.FullMethod))
	} else {
		resp, err = handler(run, req)
	}
	finished = true
	crashBeforeAnswer(rc.log, info.FullMethod, err)
	uncertain := false
	switch kind, _ := rpc.DetailKind(err); kind {
	case cairn.KindNotLeader, cairn.KindUnavailable:
		// Refused (the pipeline closed, Raft refused the entry), or its
		// entry's replication failed (leadership lost, a handover,
		// dropped by the state machine): the call's change may or may
		// not be in the log. Kept, the answer would refuse the same call
		// made again here, once this member leads again, for as long as
		// the cache keeps answers, even after its entry committed under
		// the next leader; so the attempt is forgotten, or, an entry of
		// the call applied (a replay's, or one meanwhile), the call stays
		// applied and unanswered, to be replayed (finishUncertain).
		rc.finishUncertain(e)
		uncertain = true
	default:
		rc.finish(e, resp, err)
	}
	if pc != nil && (pc.marked.Load() || pc.replay) && !uncertain && rc.replicate != nil {
		// A replayed call's answer is replicated even when this run
		// changed nothing: the members still count it unanswered.
		rc.replicate(pc, resp, err)
	}
	return resp, err
}

// requestSum fingerprints a call: its method and request.
func requestSum(method string, req any) ([sha256.Size]byte, error) {
	m, ok := req.(proto.Message)
	if !ok {
		return [sha256.Size]byte{}, fmt.Errorf("request of %s is a %T, not a protobuf message", method, req)
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return [sha256.Size]byte{}, fmt.Errorf("request of %s: %w", method, err)
	}
	h := sha256.New()
	h.Write([]byte(method))
	h.Write([]byte{0})
	h.Write(b)
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum, nil
}

// begin returns the entry of key, and whether this call is its first
// attempt (the entry is new, under way).
func (rc *retryCache) begin(key rpc.CallKey, method string, sum [sha256.Size]byte) (*retryEntry, bool) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.evict()
	replay := false
	if e, ok := rc.entries[key]; ok {
		if !e.unanswered || e.method != method || e.sum != sum {
			return e, false
		}
		// Applied, its answer lost: this attempt runs it again.
		rc.done.Remove(e.elem)
		replay = true
	}
	e := &retryEntry{key: key, method: method, sum: sum, done: make(chan struct{}), replay: replay, applied: replay}
	rc.entries[key] = e
	return e, true
}

// applied records a call whose change a committed Raft entry carried
// (raftcalls.go): known already (this member runs it, or has its
// answer), it is left as it is; else it is kept, unanswered.
func (rc *retryCache) applied(key rpc.CallKey, method string, sum [sha256.Size]byte) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.evict()
	if e, ok := rc.entries[key]; ok {
		e.applied = true
		return
	}
	e := &retryEntry{key: key, method: method, sum: sum, done: make(chan struct{}), unanswered: true}
	close(e.done)
	e.expires = rc.now().Add(rc.expiry)
	e.elem = rc.done.PushBack(e)
	rc.entries[key] = e
}

// answered records a call's answer from a committed Raft entry: kept
// unless this member has its own (it ran the call) or runs it now.
func (rc *retryCache) answered(key rpc.CallKey, method string, sum [sha256.Size]byte, resp any, err error) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.evict()
	e, ok := rc.entries[key]
	switch {
	case !ok:
		e = &retryEntry{key: key, method: method, sum: sum, done: make(chan struct{})}
		close(e.done)
		rc.entries[key] = e
	case e.unanswered && e.method == method && e.sum == sum:
		rc.done.Remove(e.elem)
	default:
		return
	}
	e.resp, e.err, e.unanswered = resp, err, false
	e.expires = rc.now().Add(rc.expiry)
	e.elem = rc.done.PushBack(e)
}

// evict drops expired answers, and the oldest while the cache is full;
// rc.mu is held. Calls under way are never dropped: there are at most as
// many as calls being served.
func (rc *retryCache) evict() {
	now := rc.now()
	for f := rc.done.Front(); f != nil; f = rc.done.Front() {
		e := f.Value.(*retryEntry)
		if len(rc.entries) < rc.max && now.Before(e.expires) {
			return
		}
		rc.done.Remove(f)
		delete(rc.entries, e.key)
	}
}

// finish records the answer of e's first attempt. An attempt that ended
// for want of time has no answer to keep: the call may be made again.
func (rc *retryCache) finish(e *retryEntry, resp any, err error) {
	if c := status.Code(err); c == codes.Canceled || c == codes.DeadlineExceeded {
		rc.drop(e)
		return
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	e.resp, e.err = resp, err
	e.expires = rc.now().Add(rc.expiry)
	e.elem = rc.done.PushBack(e)
	close(e.done)
}

// finishUncertain ends e, whose attempt failed without knowing whether
// its change is in the log: if a committed entry carried the call while
// it ran (applied), e is kept as such a call, unanswered, so the call made
// again is replayed (raftcalls.go); otherwise it is forgotten, as an
// attempt with no answer, and an entry of it that commits later is
// recorded then (applied).
func (rc *retryCache) finishUncertain(e *retryEntry) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if !e.applied {
		rc.dropLocked(e)
		return
	}
	e.unanswered = true
	e.expires = rc.now().Add(rc.expiry)
	e.elem = rc.done.PushBack(e)
	close(e.done)
}

// drop forgets e, whose first attempt left no answer, and lets those
// waiting for it make the call themselves.
func (rc *retryCache) drop(e *retryEntry) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.dropLocked(e)
}

// dropLocked is drop with rc.mu held.
func (rc *retryCache) dropLocked(e *retryEntry) {
	if rc.entries[e.key] == e {
		delete(rc.entries, e.key)
	}
	select {
	case <-e.done:
	default:
		close(e.done)
	}
}

// repeat answers a call made again: with the first attempt's answer, once
// it has one.
func (rc *retryCache) repeat(ctx context.Context, e *retryEntry, method string, sum [sha256.Size]byte) (any, error) {
	if e.method != method || e.sum != sum {
		rc.log.Warn("call ID used again for another call; refused", zap.String("call", e.key.String()),
			zap.String("first_method", e.method), zap.String("method", method))
		return nil, rpc.ToStatus(cairn.E("metad.retryCache", cairn.KindInvalid, "",
			fmt.Sprintf("call %s was %s with other arguments; a call ID names one call", e.key, e.method)))
	}
	select {
	case <-e.done:
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	rc.mu.Lock()
	answered := e.elem != nil && !e.unanswered
	resp, err := e.resp, e.err
	rc.mu.Unlock()
	if !answered {
		// The first attempt left no answer: the caller makes it again.
		return nil, status.Error(codes.Unavailable, fmt.Sprintf("call %s: the first attempt ended without an answer; make it again", e.key))
	}
	rc.log.Info("answered a call made again from the retry cache", zap.String("call", e.key.String()),
		zap.String("method", method), zap.Bool("failed", err != nil))
	return resp, err
}

// len is the number of calls kept or under way.
func (rc *retryCache) len() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.entries)
}
