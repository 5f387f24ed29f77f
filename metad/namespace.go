package metad

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"cairn"
	"cairn/blocktoken"
	"cairn/checksum"
	"cairn/metad/metapb"
)

var _ cairn.Namespace = (*Metad)(nil)

func nowNanos() int64 { return time.Now().UnixNano() }

// mutate runs fn under the store's lock with a fresh batch, applies the
// batch without syncing, releases the lock and then syncs the WAL, so the
// caller is answered only once the change is durable and concurrent
// mutations share one sync (group commit). If fn fails, nothing changes.
// ctx is the call's: on a group's leader, the first change of a mutating
// call carries the call's IDs into the log (raftcalls.go).
func (m *Metad) mutate(ctx context.Context, fn func(b *pebble.Batch) error) error {
	return m.apply(ctx, true, fn)
}

// mutateUnsynced is mutate without the WAL sync, for a change whose every
// acknowledgement that depends on it is a later synced batch (AddBlock:
// docs/ARCHITECTURE.md, "Namespace in Pebble"). Pebble's WAL is written in
// order, so that later sync makes this batch durable too. A batch that
// extends the reserved block IDs or stamps is synced all the same.
func (m *Metad) mutateUnsynced(ctx context.Context, fn func(b *pebble.Batch) error) error {
	return m.apply(ctx, false, fn)
}

func (m *Metad) apply(ctx context.Context, sync bool, fn func(b *pebble.Batch) error) error {
	if m.rep != nil {
		return m.applyInGroup(ctx, fn)
	}
	s := m.st
	s.mu.Lock()
	saved := s.saveCounters()
	stored := s.counters()
	b := s.db.NewBatch()
	err := fn(b)
	extended := false
	if err == nil {
		extended = s.reserve()
		s.putCounters(b, stored)
		err = b.Commit(pebble.NoSync)
	}
	look := err == nil && s.logged(b.Len())
	_ = b.Close()
	if err != nil {
		s.restoreCounters(saved)
		s.mu.Unlock()
		return err
	}
	// An ID handed out here may lie in a range whose reservation, made by
	// an earlier batch, is not synced yet: then this batch syncs too, which
	// makes that one durable with it.
	if extended {
		s.limitsUnsynced++
	}
	sync = sync || s.limitsUnsynced > 0
	s.mu.Unlock()
	m.stats.mutations.Add(1)
	if look {
		s.maintain() // storegc.go
	}
	if !sync {
		return nil
	}
	m.stats.walSyncs.Add(1)
	err = s.db.LogData(nil, pebble.Sync)
	if extended && err == nil {
		s.mu.Lock()
		s.limitsUnsynced--
		s.mu.Unlock()
	}
	if err != nil {
		return fmt.Errorf("metad: sync WAL: %w", err)
	}
	return nil
}

// applyInGroup is apply on a group's leader (docs/ARCHITECTURE.md,
// "Metad group"): fn builds its batch under the store's lock reading
// through the entries still in flight (overlay.go), the batch is proposed
// under the lock, so the log's order is the order the batches were built
// in, and the caller waits for the commit and this member's apply outside
// it, so mutations that arrive meanwhile are built and proposed too and
// Raft appends them together (group commit).
func (m *Metad) applyInGroup(ctx context.Context, fn func(b *pebble.Batch) error) error {
	const op = "metad.mutate"
	rep := m.rep
	s := m.st
	s.mu.Lock()
	if s.pipelineBroken || rep.r.CurrentTerm() != s.pipelineTerm || rep.r.State() != raft.Leader {
		// Leadership was lost, or won again and the pipeline not yet
		// reset: the entries in flight may never commit, and nothing may
		// be built on them (becomeLeader resets the pipeline, before it
		// sets ready, so its own changes go through; repipe when it
		// still leads).
		broken := s.pipelineBroken
		s.mu.Unlock()
		if broken {
			rep.repipe()
		}
		return rep.notLeader(op)
	}
	saved := s.saveCounters()
	stored := s.counters()
	b := s.db.NewBatch()
	done := s.readThroughOverlay()
	err := fn(b)
	done()
	if err != nil {
		s.restoreCounters(saved)
		_ = b.Close()
		s.mu.Unlock()
		return err
	}
	s.reserve()
	s.putCounters(b, stored)
	var data []byte
	c := pendingCallOf(ctx)
	if c != nil && !c.marked.Load() {
		// The call's first change carries its IDs (raftcalls.go).
		data = encodeCallEntry(entryCall, encodeCallRecord(c.key, c.method, c.sum), b.Repr())
	} else {
		data = encodeEntry(entryBatch, b)
	}
	e, err := s.pushInflight(b)
	if err != nil {
		s.restoreCounters(saved)
		_ = b.Close()
		s.mu.Unlock()
		return fmt.Errorf("%s: overlay: %w", op, err)
	}
	f := rep.r.Apply(s.nextPiped(data), 0)
	s.mu.Unlock()

	err = rep.await(op, f)
	s.mu.Lock()
	s.popInflight(e, err != nil)
	s.mu.Unlock()
	if err != nil {
		// The counters in memory may be ahead of the store now: the
		// pipeline's reset reloads them (repipe, becomeLeader).
		rep.repipe()
		return err
	}
	if c != nil {
		c.marked.Store(true)
	}
	m.stats.mutations.Add(1)
	return nil
}

// resolve walks path from the root.
func (m *Metad) resolve(op, path string) (*metapb.Inode, error) { return m.walk(op, path, nil) }

// walk resolves path from the root as c, which must have search (execute)
// permission on every directory it passes through; a nil c is not checked.
func (m *Metad) walk(op, path string, c *caller) (*metapb.Inode, error) {
	if err := cairn.ValidatePath(path); err != nil {
		return nil, err
	}
	r, err := m.st.newReader()
	if err != nil {
		return nil, err
	}
	defer r.close()
	in, err := r.inode(RootIno)
	if err != nil {
		return nil, err
	}
	if path == "/" {
		return in, nil
	}
	walked := ""
	for _, name := range strings.Split(path[1:], "/") {
		if !fs.FileMode(in.Mode).IsDir() {
			return nil, cairn.E(op, cairn.KindNotDir, path, fmt.Sprintf("%s is not a directory", orRoot(walked)))
		}
		if err := c.check(op, orRoot(walked), in, accessExec); err != nil {
			return nil, err
		}
		ino, err := r.lookup(in.Id, name)
		if err != nil {
			return nil, err
		}
		walked += "/" + name
		if ino == 0 {
			return nil, cairn.E(op, cairn.KindNotExist, path, "")
		}
		if in, err = r.inode(ino); err != nil {
			return nil, err
		}
	}
	return in, nil
}

func orRoot(p string) string {
	if p == "" {
		return "/"
	}
	return p
}

// resolveParent returns the directory that holds path's last name.
func (m *Metad) resolveParent(op, path string) (*metapb.Inode, string, error) {
	return m.walkParent(op, path, nil)
}

// walkParent is resolveParent as c (see walk).
func (m *Metad) walkParent(op, path string, c *caller) (*metapb.Inode, string, error) {
	if err := cairn.ValidatePath(path); err != nil {
		return nil, "", err
	}
	if path == "/" {
		return nil, "", cairn.E(op, cairn.KindInvalid, path, "not allowed on the root")
	}
	dir, name := cairn.Split(path)
	parent, err := m.walk(op, dir, c)
	if err != nil {
		if cairn.KindOf(err) == cairn.KindNotExist {
			return nil, "", cairn.E(op, cairn.KindNotExist, path, fmt.Sprintf("parent directory %s does not exist", dir))
		}
		return nil, "", err
	}
	if !fs.FileMode(parent.Mode).IsDir() {
		return nil, "", cairn.E(op, cairn.KindNotDir, path, fmt.Sprintf("%s is not a directory", dir))
	}
	return parent, name, nil
}

// child returns the inode named name in dir, or nil.
func (m *Metad) child(dir *metapb.Inode, name string) (*metapb.Inode, error) {
	ino, err := m.st.lookup(dir.Id, name)
	if err != nil || ino == 0 {
		return nil, err
	}
	return m.st.inode(ino)
}

// info describes in under its primary name (see infoAt).
func (m *Metad) info(in *metapb.Inode) cairn.FileInfo {
	name := in.Name
	if in.Id == RootIno {
		name = "/"
	}
	return m.infoAt(in, name)
}

// infoAt describes in under name, the one it was found by: a file with
// several names has one primary name in its inode.
func (m *Metad) infoAt(in *metapb.Inode, name string) cairn.FileInfo {
	return cairn.FileInfo{
		Name: name, Inode: in.Id, Mode: fs.FileMode(in.Mode), Size: in.Size,
		Owner: in.Owner, Group: in.Group,
		ModTime: time.Unix(0, in.MtimeNs), AccessTime: time.Unix(0, in.AtimeNs),
		Replication: int(in.Replication), BlockSize: in.BlockSize,
		Writing: in.LeaseHolder != "", Symlink: in.Symlink,
		ChangeTime: time.Unix(0, ctimeOf(in)), Nlink: nlinkOf(in), Rdev: in.Rdev,
	}
}

// newInode allocates an inode for name in parent, made by c, and writes
// it after setup (if any) has filled in its other fields. Caller holds the
// lock.
func (m *Metad) newInode(b *pebble.Batch, parent *metapb.Inode, name string, mode fs.FileMode, c *caller, setup func(*metapb.Inode)) (*metapb.Inode, error) {
	s := m.st
	if mode.IsDir() && fs.FileMode(parent.Mode)&fs.ModeSetgid != 0 {
		mode |= fs.ModeSetgid // as on Linux, setgid directories pass it on
	}
	owner, group := c.ownerFor(parent)
	in := &metapb.Inode{
		Id: s.nextIno, Parent: parent.Id, Name: name, Mode: uint32(mode),
		Owner: owner, Group: group, MtimeNs: m.clock.Now().UnixNano(),
	}
	if !mode.IsDir() {
		in.Nlink = 1
	}
	in.AtimeNs, in.CtimeNs = in.MtimeNs, in.MtimeNs
	s.nextIno++
	s.numFiles++
	if setup != nil {
		setup(in)
	}
	if err := setInode(b, in); err != nil {
		return nil, err
	}
	if err := b.Set(entryKey(parent.Id, name), u64(in.Id), nil); err != nil {
		return nil, err
	}
	dirChanged(parent, in.MtimeNs)
	if mode.IsDir() {
		parent.Subdirs++
	}
	return in, setInode(b, parent)
}

// makeEntry checks what every call that makes an entry needs: path's
// parent exists and c may search it and write in it, and the name is free
// (when it is not, the error is ErrExist and the parent is returned too).
// Caller holds the lock.
func (m *Metad) makeEntry(op, path string, c *caller) (*metapb.Inode, string, error) {
	parent, name, err := m.walkParent(op, path, c)
	if err != nil {
		return nil, "", err
	}
	if ino, err := m.st.lookup(parent.Id, name); err != nil {
		return nil, "", err
	} else if ino != 0 {
		return parent, name, cairn.E(op, cairn.KindExist, path, "")
	}
	dir, _ := cairn.Split(path)
	if err := c.check(op, dir, parent, accessWrite|accessExec); err != nil {
		return nil, "", err
	}
	return parent, name, nil
}

func (m *Metad) Mkdir(ctx context.Context, path string, perm fs.FileMode) error {
	const op = "metad.Mkdir"
	c, err := m.callerOf(ctx, op)
	if err != nil {
		return err
	}
	err = m.mutate(ctx, func(b *pebble.Batch) error {
		parent, name, err := m.makeEntry(op, path, c)
		if err != nil {
			return err
		}
		_, err = m.newInode(b, parent, name, fs.ModeDir|perm&modeBits, c, nil)
		return err
	})
	if cairn.KindOf(err) == cairn.KindExist && callReplayed(ctx) {
		// Made again after a failover lost the answer: the directory
		// there is this call's (raftcalls.go).
		if in, rerr := m.resolve(op, path); rerr == nil && fs.FileMode(in.Mode).IsDir() {
			return nil
		}
	}
	return err
}

// Mkdirs makes the missing directories of path. Those made on the way get
// perm plus owner write and search (u+wx), as in HDFS, so the caller can
// make the next one; the last gets perm.
func (m *Metad) Mkdirs(ctx context.Context, path string, perm fs.FileMode) error {
	const op = "metad.Mkdirs"
	if err := cairn.ValidatePath(path); err != nil {
		return err
	}
	c, err := m.callerOf(ctx, op)
	if err != nil {
		return err
	}
	return m.mutate(ctx, func(b *pebble.Batch) error {
		dir, err := m.st.inode(RootIno)
		if err != nil {
			return err
		}
		if path == "/" {
			return nil
		}
		names := strings.Split(path[1:], "/")
		walked, making := "", false
		for i, name := range names {
			mode := fs.ModeDir | perm&modeBits
			if i < len(names)-1 {
				mode |= 0o300
			}
			if making { // dir was made in this batch: name is free
				if dir, err = m.newInode(b, dir, name, mode, c, nil); err != nil {
					return err
				}
				walked += "/" + name
				continue
			}
			if err := c.check(op, orRoot(walked), dir, accessExec); err != nil {
				return err
			}
			next, err := m.child(dir, name)
			if err != nil {
				return err
			}
			if next == nil {
				if err := c.check(op, orRoot(walked), dir, accessWrite|accessExec); err != nil {
					return err
				}
				if dir, err = m.newInode(b, dir, name, mode, c, nil); err != nil {
					return err
				}
				making = true
				walked += "/" + name
				continue
			}
			walked += "/" + name
			if !fs.FileMode(next.Mode).IsDir() {
				return cairn.E(op, cairn.KindNotDir, path, fmt.Sprintf("%s exists and is not a directory", walked))
			}
			dir = next
		}
		return nil
	})
}

// Create makes a new file held open by o.Client. When path is a file
// another client was writing and that client's lease has passed the soft
// limit, the file is recovered and closed (and ErrExist returned: Create
// never replaces a file, unless o.Overwrite asks it to: replace.go).
func (m *Metad) Create(ctx context.Context, path string, o cairn.CreateOptions) (cairn.FileInfo, error) {
	const op = "metad.Create"
	if err := validClient(op, path, o.Client); err != nil {
		return cairn.FileInfo{}, err
	}
	if o.Replication < 0 || o.Replication > maxReplication {
		return cairn.FileInfo{}, cairn.E(op, cairn.KindInvalid, path, fmt.Sprintf("replication %d is outside 1..%d", o.Replication, maxReplication))
	}
	if err := validBlockSize(o.BlockSize); o.BlockSize != 0 && err != nil {
		return cairn.FileInfo{}, cairn.E(op, cairn.KindInvalid, path, err.Error())
	}
	if o.Perm&^modeBits != 0 {
		return cairn.FileInfo{}, cairn.E(op, cairn.KindInvalid, path, fmt.Sprintf("mode %v has bits beyond permissions, setuid, setgid and sticky", o.Perm))
	}
	c, err := m.callerOf(ctx, op)
	if err != nil {
		return cairn.FileInfo{}, err
	}
	if o.Overwrite && o.Closed {
		return cairn.FileInfo{}, cairn.E(op, cairn.KindInvalid, path, "a file is created closed or replaced, not both")
	}
	if o.Overwrite {
		return m.createOverwrite(ctx, op, path, o, c)
	}
	var fi cairn.FileInfo
	var taken *recovered
	err = m.mutate(ctx, func(b *pebble.Batch) error {
		parent, name, err := m.makeEntry(op, path, c)
		if cairn.KindOf(err) == cairn.KindExist {
			// A file abandoned by its writer is recovered, then refused.
			if taken, err = m.recoverAbandoned(op, path, b, parent, name, o.Client, c); err != nil || taken != nil {
				return err
			}
			return cairn.E(op, cairn.KindExist, path, "")
		}
		if err != nil {
			return err
		}
		in, err := m.newFile(b, parent, name, o, c)
		if err != nil {
			return err
		}
		fi = m.info(in)
		return nil
	})
	if cairn.KindOf(err) == cairn.KindExist && taken == nil && callReplayed(ctx) {
		// Made again after a failover lost the answer: the file there
		// is this call's (raftcalls.go), when it is still the client's
		// or was created closed.
		if in, rerr := m.resolve(op, path); rerr == nil && fs.FileMode(in.Mode).IsRegular() && (in.LeaseHolder == o.Client || o.Closed && in.LeaseHolder == "") {
			m.leases.renew(o.Client)
			return m.info(in), nil
		}
	}
	if err != nil {
		return cairn.FileInfo{}, err
	}
	if taken != nil {
		m.afterRecovery(taken)
		what := "was recovered and the file closed"
		if !taken.closed {
			what = "is being recovered: the file closes once its last block's replicas agree"
		}
		return cairn.FileInfo{}, cairn.E(op, cairn.KindExist, path, fmt.Sprintf("the abandoned lease of %s %s", taken.holder, what))
	}
	m.leases.renew(o.Client)
	return fi, nil
}

// newFile makes the file name in parent held open by o.Client, or closed
// with o.Client as its creator (o.Closed). Caller holds the lock.
func (m *Metad) newFile(b *pebble.Batch, parent *metapb.Inode, name string, o cairn.CreateOptions, c *caller) (*metapb.Inode, error) {
	return m.newInode(b, parent, name, o.Perm, c, func(in *metapb.Inode) {
		in.Replication = int32(o.Replication)
		if in.Replication == 0 {
			in.Replication = int32(m.cfg.Replication)
		}
		in.BlockSize = o.BlockSize
		if in.BlockSize == 0 {
			in.BlockSize = m.cfg.BlockSize
		}
		if o.Closed {
			in.Creator = o.Client
			return
		}
		in.LeaseHolder = o.Client
		in.LeaseNs = in.MtimeNs
	})
}

// validBlockSize checks a block size: 64 KiB..1 TiB, and whole checksum
// chunks, as HDFS wants its block size a multiple of
// dfs.bytes-per-checksum. A full block ending inside a chunk would give
// the same bytes a different file checksum under another block size.
func validBlockSize(n int64) error {
	switch chunk := int64(checksum.DefaultChunkSize); {
	case n < 64<<10 || n > 1<<40:
		return fmt.Errorf("block size %d is outside 64 KiB..1 TiB", n)
	case n%chunk != 0:
		return fmt.Errorf("block size %d is not a multiple of the %d-byte checksum chunk", n, chunk)
	}
	return nil
}

// maxReplication bounds a file's replication factor.
const maxReplication = 64

// validClient checks a lease holder's name.
func validClient(op, path, client string) error {
	if client == "" {
		return cairn.E(op, cairn.KindInvalid, path, "no client name for the lease")
	}
	if len(client) > 1024 || !utf8.ValidString(client) {
		return cairn.E(op, cairn.KindInvalid, path, "the client name is longer than 1024 bytes or not UTF-8")
	}
	if !validHolderName(client) {
		return cairn.E(op, cairn.KindInvalid, path, fmt.Sprintf("the client name %q is reserved for metad", client))
	}
	return nil
}

// writable resolves the file w names, which w.Client must hold the lease
// of: by its inode number (a rename or an unlink since does not matter), or
// by path when w has none. With w.Claim, a file w.Client created closed
// and nobody wrote since is claimed for it (claim).
func (m *Metad) writable(op string, w cairn.WriterRef) (*metapb.Inode, error) {
	path, client := w.Path, w.Client
	var in *metapb.Inode
	var err error
	if w.FileID == 0 {
		in, err = m.resolve(op, path)
	} else if in, err = m.st.inode(w.FileID); isNotFound(err) {
		return nil, cairn.E(op, cairn.KindNotExist, path, fmt.Sprintf("file %d is gone", w.FileID))
	}
	if err != nil {
		return nil, err
	}
	if fs.FileMode(in.Mode).IsDir() {
		return nil, cairn.E(op, cairn.KindIsDir, path, "")
	}
	if in.LeaseHolder == "" && w.Claim {
		return m.claim(op, w, in)
	}
	if in.LeaseHolder == "" {
		return nil, cairn.E(op, cairn.KindPermission, path, "file is not open for writing")
	}
	if in.LeaseHolder != client {
		return nil, cairn.E(op, cairn.KindBusy, path, fmt.Sprintf("lease held by %s", in.LeaseHolder))
	}
	m.leases.renew(client) // any call of the holder proves it alive
	return in, nil
}

// claim gives w.Client the lease of in, a closed file it created closed
// (CreateOptions.Closed) and nobody wrote since: the first AddBlock of its
// Writer (WriterRef.Claim). The claim needs no permission: the creator
// opened the file for writing when it created it. Caller holds the lock.
func (m *Metad) claim(op string, w cairn.WriterRef, in *metapb.Inode) (*metapb.Inode, error) {
	if in.Creator != w.Client || in.Blocks > 0 || in.Size > 0 {
		return nil, cairn.E(op, cairn.KindBusy, w.Path, "the file was written by another client since it was created")
	}
	in.LeaseHolder = w.Client
	in.LeaseNs = m.clock.Now().UnixNano()
	m.leases.renew(w.Client)
	return in, nil
}

// settleLast records the length of the file's last block as the writer
// reports it; the block must be the file's last.
func (m *Metad) settleLast(op, path string, b *pebble.Batch, in *metapb.Inode, last *cairn.Block) error {
	if in.Blocks == 0 {
		if last != nil && last.ID != 0 {
			return cairn.E(op, cairn.KindInvalid, path, fmt.Sprintf("%s: the file has no blocks", last))
		}
		return nil
	}
	key := fileBlockKey(in.Id, in.Blocks-1)
	v, err := m.st.get(key)
	if err != nil {
		return fmt.Errorf("%s: last block of %s: %w", op, path, err)
	}
	cur, err := decodeBlock(v)
	if err != nil {
		return err
	}
	if last == nil && cur.Len == in.BlockSize {
		return nil // a full block, from before an append at a block boundary
	}
	if last == nil || last.ID != cur.ID {
		return cairn.E(op, cairn.KindInvalid, path, fmt.Sprintf("the last block is %s, the writer named %v", cur, last))
	}
	if last.GenStamp != cur.GenStamp {
		// A writer's last block is at metad's stamp: every new stamp is
		// committed (UpdatePipeline) before a byte is written at it. A call
		// naming another is stale — an earlier writer's, run late — and
		// would record a length the replicas at metad's stamp do not have
		// (HDFS's commitBlock refuses it too: "mismatching GS").
		return cairn.E(op, cairn.KindInvalid, path, fmt.Sprintf("the writer names %s, metad has %s: not the block's current generation stamp", last, cur))
	}
	if last.Len < 0 || last.Len > in.BlockSize {
		return cairn.E(op, cairn.KindInvalid, path, fmt.Sprintf("block length %d outside 0..%d", last.Len, in.BlockSize))
	}
	in.Size += last.Len - cur.Len
	cur.Len = last.Len
	return b.Set(key, encodeBlock(cur), nil)
}

func (m *Metad) AddBlock(ctx context.Context, w cairn.WriterRef, prev *cairn.Block, excluded []cairn.Node) (cairn.LocatedBlock, error) {
	const op = "metad.AddBlock"
	path := w.Path
	var lb cairn.LocatedBlock
	writer := m.locate(ctx) // outside the namespace lock: it may run the topology script
	// Not synced by itself: every acknowledgement that depends on this
	// batch is a later synced one of the same writer — Complete, Fsync
	// (hflush, hsync), UpdatePipeline, AbandonBlock — and the block IDs
	// and stamps it hands out are reserved in a synced batch (store). A
	// crash that loses it loses only what no call acknowledged: the
	// writer's next call finds no such block and fails.
	err := m.mutateUnsynced(ctx, func(b *pebble.Batch) error {
		in, err := m.writable(op, w)
		if err != nil {
			return err
		}
		if blk, again, err := m.retriedBlock(op, path, in, prev); err != nil {
			return err
		} else if again {
			// Made again, its answer lost: the same block, placed
			// afresh (nothing was written to it).
			targets := m.chooseTargets(int(in.Replication), in.BlockSize, writer, nil, excluded)
			if len(targets) == 0 {
				return m.noBlockdErr(op, path, in.BlockSize, excluded)
			}
			lb = cairn.LocatedBlock{Block: blk, Offset: in.Size, Locations: targets}
			m.log.Info("AddBlock made again: answered with the block it allocated", zap.String("path", path), zap.Stringer("block", blk))
			return nil
		}
		if err := m.settleLast(op, path, b, in, prev); err != nil {
			return err
		}
		if prev != nil && in.Blocks > 0 && prev.Len != in.BlockSize {
			return cairn.E(op, cairn.KindInvalid, path, fmt.Sprintf("%s holds %d bytes; only a full block (%d) may be followed by another", prev, prev.Len, in.BlockSize))
		}
		targets := m.chooseTargets(int(in.Replication), in.BlockSize, writer, nil, excluded)
		if len(targets) == 0 {
			return m.noBlockdErr(op, path, in.BlockSize, excluded)
		}
		s := m.st
		blk := cairn.Block{ID: cairn.BlockID(s.nextBlk), GenStamp: cairn.GenStamp(s.nextGS)}
		s.nextBlk++
		s.nextGS++
		_ = b.Set(fileBlockKey(in.Id, in.Blocks), encodeBlock(blk), nil)
		_ = b.Set(blockKey(blk.ID), u64(in.Id), nil)
		in.Blocks++
		in.LeaseNs = m.clock.Now().UnixNano()
		lb = cairn.LocatedBlock{Block: blk, Offset: in.Size, Locations: targets}
		return setInode(b, in)
	})
	if err == nil {
		lb.Token = m.token(tokenUser(ctx), lb.ID, lb.GenStamp, lb.GenStamp, blocktoken.Write)
		m.pipelines.set(lb.ID, lb.Locations)
		if prev != nil {
			m.pipelines.forget(prev.ID)
		}
		m.log.Debug("block allocated", zap.String("path", path), zap.Stringer("block", lb.Block), zap.Int("targets", len(lb.Locations)))
	}
	return lb, err
}

func (m *Metad) Complete(ctx context.Context, w cairn.WriterRef, last *cairn.Block, acked ...cairn.Node) error {
	const op = "metad.Complete"
	path := w.Path
	var freed []cairn.Block
	err := m.mutate(ctx, func(b *pebble.Batch) error {
		var proven []string
		in, err := m.writable(op, w)
		if err != nil {
			return err
		}
		if err := m.settleLast(op, path, b, in, last); err != nil {
			return err
		}
		blocks, err := m.st.fileBlocks(in.Id)
		if err != nil {
			return err
		}
		if len(blocks) > 0 {
			lastBlk := blocks[len(blocks)-1]
			if last != nil {
				if last.GenStamp == lastBlk.GenStamp {
					proven = m.ackedHolders(last.ID, acked)
				}
				lastBlk = *last
			}
			if len(proven) == 0 && m.blocks.replicaCount(lastBlk) == 0 {
				return cairn.E(op, cairn.KindRetry, path, fmt.Sprintf("%s has no reported replica yet", lastBlk))
			}
		}
		in.LeaseHolder = ""
		in.LeaseNs = 0
		in.MtimeNs = m.clock.Now().UnixNano()
		in.CtimeNs = in.MtimeNs
		if freed, err = m.closed(b, in); err != nil {
			return err
		}
		// Before the commit, so no reader finds the closed file without
		// its replicas; the acks proved them whether or not it commits.
		if len(proven) > 0 {
			m.recordAcked(*last, proven)
		}
		return nil
	})
	var named cairn.Block
	if last != nil {
		named = *last
	}
	m.logWrite(op, w, named, err)
	if err == nil && last != nil {
		m.pipelines.forget(last.ID)
	}
	if err == nil && len(freed) > 0 {
		m.blocks.free(freed)
		m.log.Info("unlinked file freed at its writer's close", zap.String("path", path), zap.Int("blocks", len(freed)))
	}
	return err
}

func (m *Metad) Stat(ctx context.Context, path string) (cairn.FileInfo, error) {
	const op = "metad.Stat"
	c, err := m.callerOf(ctx, op)
	if err != nil {
		return cairn.FileInfo{}, err
	}
	in, err := m.walk(op, path, c)
	if err != nil {
		return cairn.FileInfo{}, err
	}
	return m.infoAt(in, nameOf(path)), nil
}

// nameOf is path's last element, "/" for the root.
func nameOf(path string) string {
	if path == "/" {
		return "/"
	}
	_, name := cairn.Split(path)
	return name
}

// MaxListPage caps one List reply.
const MaxListPage = 10000

// List reads one page of a directory with a bounded iterator: however big
// the directory, a call holds at most limit entries.
func (m *Metad) List(ctx context.Context, path, after string, limit int) ([]cairn.FileInfo, bool, error) {
	const op = "metad.List"
	if after != "" {
		if err := cairn.ValidateName(after); err != nil {
			return nil, false, cairn.E(op, cairn.KindInvalid, path, "the resume name is not a valid name: "+err.Error())
		}
	}
	c, err := m.callerOf(ctx, op)
	if err != nil {
		return nil, false, err
	}
	dir, err := m.walk(op, path, c)
	if err != nil {
		return nil, false, err
	}
	if !fs.FileMode(dir.Mode).IsDir() {
		return nil, false, cairn.E(op, cairn.KindNotDir, path, "")
	}
	if err := c.check(op, path, dir, accessRead); err != nil {
		return nil, false, err
	}
	if limit <= 0 || limit > MaxListPage {
		limit = MaxListPage
	}
	// One snapshot for the entries and their inodes, so an entry removed
	// meanwhile is not half seen; the inodes are read with one iterator
	// whose seeks move forward through nearby keys.
	snap := m.st.db.NewSnapshot()
	defer snap.Close()
	p := entryPrefix(dir.Id)
	lower := p
	if after != "" {
		lower = append(entryKey(dir.Id, after), 0)
	}
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: prefixEnd(p)})
	if err != nil {
		return nil, false, err
	}
	defer it.Close()
	inodes, err := snap.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixInode}, UpperBound: []byte{prefixInode + 1}})
	if err != nil {
		return nil, false, err
	}
	defer inodes.Close()
	var out []cairn.FileInfo
	for it.First(); it.Valid(); it.Next() {
		if len(out) == limit {
			return out, true, nil
		}
		ino, err := parseU64(it.Value())
		if err != nil {
			return nil, false, err
		}
		key := inodeKey(ino)
		if !inodes.SeekGE(key) || !bytes.Equal(inodes.Key(), key) {
			return nil, false, fmt.Errorf("%s: %s: entry %q names inode %d, which is missing", op, path, it.Key()[len(p):], ino)
		}
		in := &metapb.Inode{}
		if err := proto.Unmarshal(inodes.Value(), in); err != nil {
			return nil, false, fmt.Errorf("%s: inode %d: %w", op, ino, err)
		}
		out = append(out, m.infoAt(in, string(it.Key()[len(p):])))
	}
	if err := inodes.Error(); err != nil {
		return nil, false, err
	}
	return out, false, it.Error()
}

func (m *Metad) BlockLocations(ctx context.Context, f cairn.FileRef) (cairn.FileBlocks, error) {
	const op = "metad.BlockLocations"
	path := f.Path
	c, err := m.callerOf(ctx, op)
	if err != nil {
		return cairn.FileBlocks{}, err
	}
	var in *metapb.Inode
	if f.ID == 0 {
		in, err = m.walk(op, path, c)
	} else if in, err = m.st.inode(f.ID); isNotFound(err) {
		err = cairn.E(op, cairn.KindNotExist, path, fmt.Sprintf("file %d is gone", f.ID))
	}
	if err != nil {
		return cairn.FileBlocks{}, err
	}
	if fs.FileMode(in.Mode).IsDir() {
		return cairn.FileBlocks{}, cairn.E(op, cairn.KindIsDir, path, "")
	}
	if err := c.check(op, path, in, accessRead); err != nil {
		return cairn.FileBlocks{}, err
	}
	blocks, err := m.st.fileBlocks(in.Id)
	if err != nil {
		return cairn.FileBlocks{}, err
	}
	fb := cairn.FileBlocks{FileID: in.Id, Size: in.Size, Writing: in.LeaseHolder != ""}
	var off int64
	now := m.clock.Now()
	reader := m.locate(ctx)
	for i, blk := range blocks {
		locs := m.readReplicas(blk, now)
		if fb.Writing && i == len(blocks)-1 {
			locs = m.pipelineReplicas(blk, locs, now)
		}
		m.nodes.sortForReader(locs, reader, now)
		fb.Blocks = append(fb.Blocks, cairn.LocatedBlock{Block: blk, Offset: off, Locations: locs, Corrupt: m.blocks.corruptCount(blk.ID),
			Token: m.token(c.user, blk.ID, blk.GenStamp, blk.GenStamp, blocktoken.Read)})
		off += blk.Len
	}
	return fb, nil
}

func (m *Metad) Statfs(ctx context.Context) (cairn.FsStats, error) {
	st := m.nodes.totals(m.clock.Now())
	m.st.mu.Lock()
	st.Files = m.st.numFiles
	m.st.mu.Unlock()
	st.Blocks = int64(m.blocks.count())
	return st, nil
}

func (m *Metad) Report(ctx context.Context) (cairn.ClusterReport, error) {
	return cairn.ClusterReport{
		NamespaceID:        m.namespaceID,
		DefaultReplication: m.cfg.Replication,
		Nodes:              m.nodes.report(m.clock.Now(), m.blocks),
	}, nil
}
