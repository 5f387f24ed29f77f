package metad

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"cairn"
	"cairn/rpc"
	"cairn/rpc/pb"
	"cairn/trust"
)

// Safe mode, as HDFS's NameNode has it: metad is read-only. At start it
// stays so until the blockds have reported a good replica of a share
// (SafeModeThreshold) of the blocks it knows, and then for
// SafeModeExtension more; an administrator may also enter and leave it.
// While it is on, no namespace mutation or writer call is served
// (KindSafeMode, EROFS through the mount), and metad schedules no copy, no
// deletion and no lease recovery: with the blockds not yet heard from, a
// block that looks lost is only unreported.

// DefaultSafeModeThreshold and DefaultSafeModeExtension are the command's
// defaults, HDFS's (dfs.namenode.safemode.threshold-pct and .extension).
const (
	DefaultSafeModeThreshold = 0.999
	DefaultSafeModeExtension = 30 * time.Second
)

// safeMode is metad's read-only state.
type safeMode struct {
	log       *zap.Logger
	threshold float64
	extension time.Duration

	mu        sync.Mutex
	on        bool
	manual    bool // entered by an administrator: left only by one
	startup   bool // counting reports since the start
	total     int  // blocks counted at the start
	pending   map[cairn.BlockID]struct{}
	reachedAt time.Time // when the threshold was reached; zero while it is not
}

func newSafeMode(threshold float64, extension time.Duration, log *zap.Logger) *safeMode {
	return &safeMode{log: log, threshold: threshold, extension: extension}
}

// begin turns startup safe mode on, waiting for a report of each of
// blocks. A threshold of 0 or less starts out of safe mode.
func (s *safeMode) begin(blocks []cairn.BlockID, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.threshold <= 0 {
		return
	}
	s.on, s.startup = true, true
	s.total = len(blocks)
	s.pending = make(map[cairn.BlockID]struct{}, len(blocks))
	for _, id := range blocks {
		s.pending[id] = struct{}{}
	}
	if s.needed() == 0 {
		s.on, s.startup, s.pending = false, false, nil
		return // no block to wait for: writable at once, as HDFS
	}
	s.log.Info("safe mode is on until the blockds report", zap.Int("blocks", s.total),
		zap.Float64("threshold", s.threshold), zap.Int("needed", s.needed()), zap.Duration("extension", s.extension))
	s.checkLocked(now)
}

// needed is how many blocks must be reported. Caller holds s.mu.
func (s *safeMode) needed() int {
	return int(math.Ceil(float64(s.total) * s.threshold))
}

// reported notes a good replica of each of ids.
func (s *safeMode) reported(ids []cairn.BlockID, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.startup {
		return
	}
	for _, id := range ids {
		delete(s.pending, id)
	}
	s.checkLocked(now)
}

// retain stops waiting for the blocks pending at the start that are no
// longer among counted (countedBlocks now), and stops counting them: they
// left the namespace after begin, their replicas are deleted, and no
// report of them will come. It returns how many it dropped.
func (s *safeMode) retain(counted []cairn.BlockID, now time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.startup || len(s.pending) == 0 {
		return 0
	}
	keep := make(map[cairn.BlockID]struct{}, len(s.pending))
	for _, id := range counted {
		if _, ok := s.pending[id]; ok {
			keep[id] = struct{}{}
		}
	}
	dropped := len(s.pending) - len(keep)
	s.pending = keep
	s.total -= dropped
	s.checkLocked(now)
	return dropped
}

// recountSafeMode has startup safe mode wait only for blocks the store
// still holds. A member of a group opens its store, counts its blocks
// (begin) and only then applies the entries of the log it has not
// applied, or installs a snapshot: files deleted or replaced in those
// left blocks behind in safe mode's count that no blockd will ever
// report, which kept a new leader read-only for good after the whole
// group restarted. A new leader calls it once its store has every
// committed entry.
func (m *Metad) recountSafeMode() error {
	if !m.safe.counting() {
		return nil
	}
	blocks, err := m.st.countedBlocks()
	if err != nil {
		return fmt.Errorf("count the blocks for safe mode: %w", err)
	}
	if n := m.safe.retain(blocks, m.clock.Now()); n > 0 {
		m.log.Info("safe mode no longer waits for blocks that left the namespace", zap.Int("blocks", n))
	}
	// A block of which the block map holds a good replica (judged, not
	// corrupt) now counts, however that replica came to be recorded (a
	// report judged while this member followed, then again as it leads;
	// a writer's acks; a block recovery's outcome), as HDFS counts the
	// safe blocks from its block map.
	var good []cairn.BlockID
	for _, id := range m.safe.waitingFor(0) {
		for _, r := range m.blocks.replicasOf(id) {
			if r.Corrupt == "" && !m.doubt.has(r.StorageID, id) {
				good = append(good, id)
				break
			}
		}
	}
	m.safe.reported(good, m.clock.Now())
	if waiting := m.safe.waitingFor(10); len(waiting) > 0 {
		ids := make([]uint64, len(waiting))
		for i, id := range waiting {
			ids[i] = uint64(id)
		}
		m.log.Info("safe mode waits for a good replica of blocks", zap.Int("reported", len(good)),
			zap.Uint64s("some_of_them", ids))
	}
	return nil
}

// waitingFor returns up to n (all: n 0) of the blocks startup safe mode
// still waits for.
func (s *safeMode) waitingFor(n int) []cairn.BlockID {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.startup {
		return nil
	}
	var out []cairn.BlockID
	for id := range s.pending {
		if n > 0 && len(out) == n {
			break
		}
		out = append(out, id)
	}
	return out
}

// counting reports whether startup safe mode counts reports.
func (s *safeMode) counting() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.startup
}

// check leaves startup safe mode when the threshold has held for the
// extension. Called on every report and by the monitors.
func (s *safeMode) check(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checkLocked(now)
}

func (s *safeMode) checkLocked(now time.Time) {
	if !s.on || s.manual || !s.startup {
		return
	}
	if s.total-len(s.pending) < s.needed() {
		s.reachedAt = time.Time{}
		return
	}
	if s.needed() == 0 {
		s.leaveLocked("no block to wait for") // as HDFS: no extension then
		return
	}
	if s.reachedAt.IsZero() {
		s.reachedAt = now
		if s.extension > 0 {
			s.log.Info("safe mode threshold reached", zap.Int("reported", s.total-len(s.pending)),
				zap.Int("blocks", s.total), zap.Duration("leaving_in", s.extension))
		}
	}
	if now.Sub(s.reachedAt) >= s.extension {
		s.leaveLocked("the blockds reported enough blocks")
	}
}

func (s *safeMode) leaveLocked(why string) {
	s.log.Info("safe mode is off", zap.String("why", why), zap.Int("reported", s.total-len(s.pending)), zap.Int("blocks", s.total))
	s.on, s.manual, s.startup = false, false, false
	s.pending, s.reachedAt = nil, time.Time{}
}

// isOn reports whether metad is in safe mode.
func (s *safeMode) isOn() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.on
}

// status describes the state as the admin command and errors show it.
func (s *safeMode) status(now time.Time) cairn.SafeModeStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := cairn.SafeModeStatus{On: s.on, Manual: s.manual}
	if s.startup {
		st.Total, st.Reported, st.Needed = s.total, s.total-len(s.pending), s.needed()
		if !s.reachedAt.IsZero() {
			st.LeavesIn = max(0, s.extension-now.Sub(s.reachedAt))
		}
	}
	st.Message = s.messageLocked(st)
	return st
}

// messageLocked says why metad is in safe mode and how it leaves, in the
// words of HDFS's. Caller holds s.mu.
func (s *safeMode) messageLocked(st cairn.SafeModeStatus) string {
	switch {
	case !st.On:
		return "Safe mode is OFF."
	case st.Manual:
		return "Safe mode is ON. It was turned on manually. Use \"cairn admin -safemode leave\" to turn safe mode off."
	case st.Reported < st.Needed:
		return fmt.Sprintf("Safe mode is ON. The reported blocks %d needs additional %d blocks to reach the threshold %.4f of total blocks %d. "+
			"Safe mode will be turned off automatically once the thresholds have been reached.",
			st.Reported, st.Needed-st.Reported, s.threshold, st.Total)
	default:
		return fmt.Sprintf("Safe mode is ON. The reported blocks %d has reached the threshold %.4f of total blocks %d. "+
			"In safe mode extension. Safe mode will be turned off automatically in %d seconds.",
			st.Reported, s.threshold, st.Total, int(math.Ceil(st.LeavesIn.Seconds())))
	}
}

// enter turns safe mode on by hand: it stays until leave.
func (s *safeMode) enter() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.on || !s.manual {
		s.log.Info("safe mode turned on by an administrator")
	}
	s.on, s.manual, s.startup = true, true, false
	s.pending, s.reachedAt = nil, time.Time{}
}

// leave turns safe mode off, whatever turned it on.
func (s *safeMode) leave() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.on {
		s.leaveLocked("turned off by an administrator")
	}
}

// refusal is the error for a call refused in safe mode, or nil when metad
// is not in safe mode.
func (m *Metad) refusal(op, path string) error {
	if !m.safe.isOn() {
		return nil // the common case: no status to build on every mutation
	}
	st := m.safe.status(m.clock.Now())
	if !st.On {
		return nil
	}
	return cairn.E(op, cairn.KindSafeMode, path, st.Message)
}

// safeModeGate is the gRPC server interceptor that refuses every call of
// rpc.Mutations while metad is in safe mode, before the retry cache sees
// it (a refused call may be made again later and then applied). Trust's
// Join is let through: it changes no namespace, and the blockd joining may
// hold blocks safe mode waits for (HDFS registers datanodes in safe mode).
func (m *Metad) safeModeGate(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if rpc.Mutations[info.FullMethod] && info.FullMethod != pb.Trust_Join_FullMethodName {
		op := "metad." + info.FullMethod[strings.LastIndexByte(info.FullMethod, '/')+1:]
		var path string
		if p, ok := req.(interface{ GetPath() string }); ok {
			path = p.GetPath()
		} else if p, ok := req.(interface{ GetSrc() string }); ok {
			path = p.GetSrc()
		}
		if err := m.refusal(op, path); err != nil {
			return nil, rpc.ToStatus(err)
		}
	}
	return handler(ctx, req)
}

// SafeMode reports, enters or leaves safe mode (cairn admin -safemode).
// Entering and leaving take a superuser.
func (m *Metad) SafeMode(ctx context.Context, action cairn.SafeModeAction) (cairn.SafeModeStatus, error) {
	const op = "metad.SafeMode"
	switch action {
	case cairn.SafeModeGet:
	case cairn.SafeModeEnter, cairn.SafeModeLeave:
		if p, ok := trust.PeerFrom(ctx); ok && p.Role != trust.RoleAdmin {
			// As the other admin operations: a mount may speak for its
			// host's users, even metad's superuser, but not administer.
			return cairn.SafeModeStatus{}, cairn.E(op, cairn.KindAccess, "", fmt.Sprintf("certificate %s: turning safe mode on or off needs an admin certificate", p))
		}
		c, err := m.callerOf(ctx, op)
		if err != nil {
			return cairn.SafeModeStatus{}, err
		}
		if !c.super {
			return cairn.SafeModeStatus{}, cairn.E(op, cairn.KindAccess, "", fmt.Sprintf("user %s is not a superuser: only a superuser may turn safe mode on or off", c.user))
		}
		if action == cairn.SafeModeEnter {
			m.safe.enter()
		} else {
			m.safe.leave()
		}
	default:
		return cairn.SafeModeStatus{}, cairn.E(op, cairn.KindInvalid, "", fmt.Sprintf("unknown safe mode action %d", action))
	}
	return m.safe.status(m.clock.Now()), nil
}

// countedBlocks lists the blocks startup safe mode waits for: every block
// with bytes of a closed file, and every block but the last of a file
// being written (its last may have no finalized replica anywhere), as
// HDFS counts complete blocks.
func (st *store) countedBlocks() ([]cairn.BlockID, error) {
	writing := map[uint64]bool{}
	wi, err := st.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixWriting}, UpperBound: []byte{prefixWriting + 1}})
	if err != nil {
		return nil, err
	}
	for wi.First(); wi.Valid(); wi.Next() {
		if ino, err := parseU64(wi.Key()[1:]); err == nil {
			writing[ino] = true
		}
	}
	if err := wi.Close(); err != nil {
		return nil, err
	}
	it, err := st.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixFile}, UpperBound: []byte{prefixFile + 1}})
	if err != nil {
		return nil, err
	}
	var out []cairn.BlockID
	var ino uint64
	var last *cairn.Block // of a file being written: counted only once another follows
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		b, err := decodeBlock(it.Value())
		if err != nil || len(k) != 13 {
			_ = it.Close()
			return nil, fmt.Errorf("metad: block record %x: %v", k, err)
		}
		if i, _ := parseU64(k[1:9]); i != ino {
			ino, last = i, nil
		}
		if last != nil && last.Len > 0 {
			out = append(out, last.ID)
		}
		last = nil
		if writing[ino] {
			last = &b
		} else if b.Len > 0 {
			out = append(out, b.ID)
		}
	}
	return out, it.Close()
}
