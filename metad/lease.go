package metad

import (
	"context"
	"fmt"
	"io/fs"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.uber.org/zap"

	"cairn"
	"cairn/metad/metapb"
)

// Leases. A file being written names its writer (metapb.Inode.LeaseHolder,
// indexed under the "w" keys); when each writer last showed it is alive is
// kept only in memory, per client name, as in HDFS's lease manager. A
// client renews by RenewLease and by every call it makes as a writer
// (writable). After the soft limit another client may take the file over;
// after the hard limit metad recovers and closes the file itself. A
// restarted metad counts every writer as renewed at its start, and so
// does a member of a metad group that becomes the leader (renewals went
// to the old leader; HDFS's new active NameNode renews every lease too),
// so a writer keeps its file across a failover and its lease's expiry
// counts afresh from the new leader's start.

// leaseTable is when each client last renewed.
type leaseTable struct {
	soft, hard time.Duration
	clock      Clock
	since      time.Time // metad's start, or when it last became a group's leader: the renewal of a client not heard of since

	mu      sync.Mutex
	renewed map[string]time.Time
}

func newLeaseTable(soft, hard time.Duration, clock Clock) *leaseTable {
	return &leaseTable{soft: soft, hard: hard, clock: clock, since: clock.Now(), renewed: map[string]time.Time{}}
}

func (l *leaseTable) renew(client string) {
	now := l.clock.Now()
	l.mu.Lock()
	l.renewed[client] = now
	l.mu.Unlock()
}

// renewAll counts every writer as renewed now: the renewals of this
// member's past, if any, are forgotten.
func (l *leaseTable) renewAll() {
	now := l.clock.Now()
	l.mu.Lock()
	l.since = now
	clear(l.renewed)
	l.mu.Unlock()
}

// last returns when client last renewed.
func (l *leaseTable) last(client string) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t, ok := l.renewed[client]; ok {
		return t
	}
	return l.since
}

func (l *leaseTable) hardExpired(client string) bool {
	return l.clock.Now().Sub(l.last(client)) >= l.hard
}

// expired reports whether the writer of in has been silent for limit: its
// last renewal, or the file's own lease time (set when the lease was
// granted or the file last written), whichever is later.
func (l *leaseTable) expired(in *metapb.Inode, limit time.Duration) bool {
	last := l.last(in.LeaseHolder)
	if t := time.Unix(0, in.LeaseNs); t.After(last) {
		last = t
	}
	return l.clock.Now().Sub(last) >= limit
}

// prune forgets clients silent past the hard limit: their files are
// recovered, and an unknown client counts as silent since metad started.
func (l *leaseTable) prune() {
	now := l.clock.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for c, t := range l.renewed {
		if now.Sub(t) >= l.hard {
			delete(l.renewed, c)
		}
	}
}

// RenewLease records that client is alive, keeping every file it writes.
func (m *Metad) RenewLease(ctx context.Context, client string) error {
	if err := validClient("metad.RenewLease", "", client); err != nil {
		return err
	}
	m.leases.renew(client)
	return nil
}

// recovered describes a lease recovery, for the log and the block map:
// the file was closed, or a block recovery begun (rec), or it waits for a
// blockd that may hold its last block.
type recovered struct {
	path, holder, why string
	size              int64
	lengthFrom        string        // where the last block's length came from
	last              cairn.BlockID // the last block, if any
	freed             []cairn.Block // an empty last block dropped, or an orphan's blocks
	closed            bool
	rec               *recovery
	waiting           bool
}

// afterRecovery frees a dropped block and logs the recovery, once its
// batch is durable.
func (m *Metad) afterRecovery(r *recovered) {
	m.blocks.free(r.freed)
	switch {
	case r.rec != nil:
		m.recoveries.start(r.rec)
		m.log.Info("block recovery begun", zap.String("path", r.path), zap.String("holder", r.holder),
			zap.String("why", r.why), zap.Stringer("block", r.rec.block), zap.Uint64("recovery_id", uint64(r.rec.id)),
			zap.String("primary", r.rec.primary), zap.Int("targets", len(r.rec.targets)))
	case r.waiting:
		m.log.Warn("lease recovery waits for a blockd holding the last block", zap.String("path", r.path),
			zap.String("holder", r.holder), zap.String("why", r.why))
	default:
		if r.last != 0 {
			m.pipelines.forget(r.last)
		}
		m.log.Info("lease recovered", zap.String("path", r.path), zap.String("holder", r.holder),
			zap.String("why", r.why), zap.Int64("size", r.size), zap.String("length_from", r.lengthFrom))
	}
}

// takeOver readies in, a regular file at path, to be written by client
// (Append): a file nobody writes, or client writes already, needs nothing;
// one whose writer has passed the soft limit is recovered and closed in b;
// any other is ErrBusy. Caller holds the lock and, when r is not nil, calls
// afterRecovery(r) once b is durable.
func (m *Metad) takeOver(op, path string, b *pebble.Batch, in *metapb.Inode, client string) (*recovered, error) {
	if in.LeaseHolder == "" || in.LeaseHolder == client {
		return nil, nil
	}
	if in.LeaseHolder == recoveryHolder {
		if !m.recoveryDue(in) {
			return nil, cairn.E(op, cairn.KindRetry, path, "the file is being recovered")
		}
		return m.recoverLease(op, path, b, in, "block recovery timed out; taken over by "+client)
	}
	if !m.leases.expired(in, m.leases.soft) {
		return nil, cairn.E(op, cairn.KindBusy, path, fmt.Sprintf("lease held by %s", in.LeaseHolder))
	}
	return m.recoverLease(op, path, b, in, "soft limit passed; taken over by "+client)
}

// appendable resolves path for Append by client, made by the caller of
// ctx: a regular file the caller may search its way to and write, whose
// lease client holds, nobody holds, or client may take over (takeOver).
// Caller holds the lock and, when r is not nil, calls afterRecovery(r)
// once b is durable.
func (m *Metad) appendable(ctx context.Context, op, path, client string, b *pebble.Batch) (in *metapb.Inode, r *recovered, err error) {
	if err := validClient(op, path, client); err != nil {
		return nil, nil, err
	}
	c, err := m.callerOf(ctx, op)
	if err != nil {
		return nil, nil, err
	}
	if in, err = m.walk(op, path, c); err != nil {
		return nil, nil, err
	}
	switch mode := fs.FileMode(in.Mode); {
	case mode.IsDir():
		return nil, nil, cairn.E(op, cairn.KindIsDir, path, "")
	case !mode.IsRegular():
		return nil, nil, cairn.E(op, cairn.KindInvalid, path, fmt.Sprintf("a %v is not appended to", mode.Type()))
	}
	if err := c.check(op, path, in, accessWrite); err != nil {
		return nil, nil, err
	}
	if r, err = m.takeOver(op, path, b, in, client); err != nil {
		return nil, nil, err
	}
	m.leases.renew(client)
	return in, r, nil
}

// recoverAbandoned recovers the file name in parent when another client
// was writing it and has passed the soft limit, and c could have made the
// file (Create). It returns nil, nil when there is nothing to recover.
func (m *Metad) recoverAbandoned(op, path string, b *pebble.Batch, parent *metapb.Inode, name, client string, c *caller) (*recovered, error) {
	in, err := m.child(parent, name)
	if err != nil || in == nil || !fs.FileMode(in.Mode).IsRegular() || in.LeaseHolder == "" || in.LeaseHolder == client {
		return nil, err
	}
	if in.LeaseHolder == recoveryHolder || !m.leases.expired(in, m.leases.soft) {
		return nil, nil
	}
	dir, _ := cairn.Split(path)
	if c.check(op, dir, parent, accessWrite|accessExec) != nil {
		return nil, nil
	}
	return m.recoverLease(op, path, b, in, "soft limit passed; create by "+client)
}

// maxRecoveriesPerSweep bounds the work of one sweep of the lease monitor.
const maxRecoveriesPerSweep = 1000

// recoverExpiredLeases recovers the files whose writers have passed the
// hard limit, and reports how many. It scans only the "w" index of files
// being written, and reads the inode only of a file whose writer has
// not renewed for the hard limit.
func (m *Metad) recoverExpiredLeases() (int, error) {
	const op = "metad.recoverLease"
	p := []byte{prefixWriting}
	it, err := m.st.src().NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return 0, err
	}
	var due []uint64
	for it.First(); it.Valid() && len(due) < maxRecoveriesPerSweep; it.Next() {
		if len(it.Key()) != 9 || string(it.Value()) != recoveryHolder && !m.leases.hardExpired(string(it.Value())) {
			continue
		}
		ino, _ := parseU64(it.Key()[1:])
		due = append(due, ino)
	}
	if err := it.Close(); err != nil {
		return 0, err
	}
	n := 0
	for _, ino := range due {
		var r *recovered
		err := m.mutate(context.Background(), func(b *pebble.Batch) error {
			in, err := m.st.inode(ino)
			if isNotFound(err) {
				return nil // deleted since
			}
			if err != nil {
				return err
			}
			switch {
			case in.LeaseHolder == "":
				return nil
			case in.LeaseHolder == recoveryHolder:
				if !m.recoveryDue(in) {
					return nil
				}
				r, err = m.recoverLease(op, m.pathOf(in), b, in, "block recovery timed out")
				return err
			case !m.leases.expired(in, m.leases.hard):
				return nil
			}
			r, err = m.recoverLease(op, m.pathOf(in), b, in, "hard limit passed")
			return err
		})
		if err != nil {
			return n, fmt.Errorf("recover the lease of inode %d: %w", ino, err)
		}
		if r != nil {
			m.afterRecovery(r)
			n++
		}
	}
	m.leases.prune()
	return n, nil
}

// recoveryDue reports whether the block recovery of in, a file held by
// recoveryHolder, has waited long enough to be begun again: its primary
// did not report back (or metad restarted and forgot it), or no blockd
// that may hold the last block was there to recover it.
func (m *Metad) recoveryDue(in *metapb.Inode) bool {
	return m.clock.Now().Sub(time.Unix(0, in.LeaseNs)) >= m.recoveryTimeout()
}

// pathOf returns in's path, for messages.
func (m *Metad) pathOf(in *metapb.Inode) string {
	p := ""
	for in.Id != RootIno {
		p = "/" + in.Name + p
		parent, err := m.st.inode(in.Parent)
		if err != nil {
			return fmt.Sprintf("(inode %d)%s", in.Parent, p)
		}
		in = parent
	}
	return orRoot(p)
}

// leaseCheckInterval is how often the lease monitor sweeps: often enough
// that a file is recovered soon after its hard limit.
func leaseCheckInterval(hard time.Duration) time.Duration {
	return min(max(hard/8, 50*time.Millisecond), 2*time.Second)
}

// runLeaseMonitor sweeps until ctx ends.
func (m *Metad) runLeaseMonitor(ctx context.Context) {
	t := time.NewTicker(leaseCheckInterval(m.cfg.LeaseHard))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if m.safe.isOn() {
				continue // no lease recovery, no freeing, in safe mode
			}
			m.leaderWork(func() {
				if _, err := m.recoverExpiredLeases(); err != nil {
					m.log.Error("lease monitor", zap.Error(err))
				}
				if _, err := m.releaseExpiredHolders(); err != nil {
					m.log.Error("lease monitor: unlinked files", zap.Error(err))
				}
			})
		}
	}
}
