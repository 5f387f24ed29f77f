package tests

// The kill matrix's checks: what the writers' manifests say was
// acknowledged, and whether the cluster still has it after the kill, the
// restarts and the recoveries.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"cairn"
	"cairn/client"
	"cairn/tests/cluster"
)

// ackedFile is what a manifest says of one file of a writer's column.
type ackedFile struct {
	kind, col, file string
	path            string
	// alt is where the file may be instead of path: a rename of it (or
	// of a directory above it) was begun and not acknowledged.
	alt       string
	segs      []record // acknowledged bytes
	unlinking bool     // an unlink was begun
	unlinked  bool     // and acknowledged
	ino       uint64
}

// ackedEnd is the end of the last acknowledged byte.
func (f *ackedFile) ackedEnd() int64 {
	var end int64
	for _, s := range f.segs {
		end = max(end, s.Off+s.Len)
	}
	return end
}

// columnLog is what one writer's manifest says of one column.
type columnLog struct {
	kind, col    string
	files        map[string]*ackedFile
	order        []string
	pending      *record // a rename begun, not acknowledged
	paused, done bool
	ended        bool     // done or error
	errs         []record // the writer's errors
	verified     int64    // bytes the writer read back through the open handle of its unlinked file
	verifyFailed []string
	readErrors   []string // reads through the open handle that failed with an error
}

func (l *columnLog) file(name string) *ackedFile {
	f, ok := l.files[name]
	if !ok {
		f = &ackedFile{kind: l.kind, col: l.col, file: name}
		l.files[name] = f
		l.order = append(l.order, name)
	}
	return f
}

// renamed returns p after the rename of from to to.
func renamed(p, from, to string) (string, bool) {
	if p == from {
		return to, true
	}
	if rest, ok := strings.CutPrefix(p, from+"/"); ok {
		return path.Join(to, rest), true
	}
	return p, false
}

// readManifest reads a writer's manifest into one columnLog per column.
// A torn last line (the writer killed while appending it) is ignored: the
// step it would record was not acknowledged before the record was
// fsynced.
func readManifest(p string) (map[string]*columnLog, error) {
	out := map[string]*columnLog{}
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 1<<20), 1<<20)
	for s.Scan() {
		var r record
		if err := json.Unmarshal(s.Bytes(), &r); err != nil {
			continue
		}
		if r.Col == "" {
			continue
		}
		l, ok := out[r.Col]
		if !ok {
			l = &columnLog{kind: r.Kind, col: r.Col, files: map[string]*ackedFile{}}
			out[r.Col] = l
		}
		switch r.Ev {
		case "ack":
			f := l.file(r.File)
			if f.path == "" {
				f.path = r.Path
			}
			if r.Len > 0 {
				f.segs = append(f.segs, r)
			}
		case "inode":
			f := l.file(r.File)
			f.ino = r.Ino
			if f.path == "" {
				f.path = r.Path
			}
		case "renaming":
			rr := r
			l.pending = &rr
		case "renamed":
			l.pending = nil
			for _, f := range l.files {
				f.path, _ = renamed(f.path, r.From, r.To)
			}
		case "unlinking":
			l.file(r.File).unlinking = true
		case "unlinked":
			l.file(r.File).unlinked = true
		case "verified":
			l.verified += r.Len
		case "verify-failed":
			l.verifyFailed = append(l.verifyFailed, fmt.Sprintf("[%d,%d): %s", r.Off, r.Off+r.Len, r.Err))
		case "read-error":
			l.readErrors = append(l.readErrors, fmt.Sprintf("[%d,%d): %s", r.Off, r.Off+r.Len, r.Err))
		case "paused":
			l.paused = true
		case "error":
			l.errs = append(l.errs, r)
			l.ended = true
		case "done":
			l.done, l.ended = true, true
		}
	}
	for _, cl := range out {
		if cl.pending == nil {
			continue
		}
		for _, f := range cl.files {
			if p, ok := renamed(f.path, cl.pending.From, cl.pending.To); ok {
				f.alt = p
			}
		}
	}
	return out, s.Err()
}

// cell is one cell of the matrix: what was killed × what the writers did.
type cell struct {
	row, col string
	kinds    []string // the writers that ran in it
	logs     []*columnLog
	reasons  []string // why it failed; none: it passed
	notes    []string // what happened, not a failure
	acked    int64    // bytes acknowledged
	readBack int64    // acknowledged bytes read back equal through the client
	mounted  int64    // and through a fresh mount
	verify   bool     // fsck ran with -verify
}

func (c *cell) fail(format string, args ...any) {
	c.reasons = append(c.reasons, fmt.Sprintf(format, args...))
}

func (c *cell) note(format string, args ...any) {
	c.notes = append(c.notes, fmt.Sprintf(format, args...))
}

func (c *cell) passed() bool { return len(c.reasons) == 0 }

// liveFiles are the acknowledged files that must still be there: not
// unlinked (nor being unlinked).
func (c *cell) liveFiles() []*ackedFile {
	var out []*ackedFile
	for _, l := range c.logs {
		for _, name := range l.order {
			if f := l.files[name]; !f.unlinking && len(f.segs) > 0 {
				out = append(out, f)
			}
		}
	}
	return out
}

// dirs are the cairn directories of the cell's writers.
func (c *cell) dirs() []string {
	var out []string
	for _, k := range c.kinds {
		out = append(out, cellDir(c.col, k))
	}
	return out
}

// cellDir is where writer kind works in column col.
func cellDir(col, kind string) string { return "/" + col + "/" + kind }

// filesUnder lists every regular file under dir, recursively.
func filesUnder(ctx context.Context, cl *client.Client, dir string) ([]cairn.FileInfo, []string, error) {
	var infos []cairn.FileInfo
	var paths []string
	es, err := cl.ReadDir(ctx, dir)
	if err != nil {
		return nil, nil, err
	}
	for _, e := range es {
		p := path.Join(dir, e.Name)
		if e.IsDir() {
			fi, ps, err := filesUnder(ctx, cl, p)
			if err != nil {
				return nil, nil, err
			}
			infos, paths = append(infos, fi...), append(paths, ps...)
			continue
		}
		if e.Mode.IsRegular() {
			infos, paths = append(infos, e), append(paths, p)
		}
	}
	return infos, paths, nil
}

// waitClosed waits until no file under any cell's directories is being
// written, and every file a writer unlinked while open is freed at metad
// (its writer and its holder are gone), or until timeout; a cell with a
// file left open or held fails.
func waitClosed(ctx context.Context, cl *client.Client, cells []*cell, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for {
		pending := map[*cell][]string{}
		for _, c := range cells {
			for _, dir := range c.dirs() {
				infos, paths, err := filesUnder(ctx, cl, dir)
				if err != nil {
					pending[c] = append(pending[c], fmt.Sprintf("listing %s: %v", dir, err))
					continue
				}
				for i, fi := range infos {
					if fi.Writing {
						pending[c] = append(pending[c], paths[i]+" still open for writing")
					}
				}
			}
			for _, l := range c.logs {
				for _, name := range l.order {
					f := l.files[name]
					if !f.unlinked || f.ino == 0 {
						continue
					}
					_, err := cl.NS.BlockLocations(ctx, cairn.FileRef{ID: f.ino})
					if cairn.KindOf(err) != cairn.KindNotExist {
						pending[c] = append(pending[c], fmt.Sprintf("%s (unlinked, inode %d) still kept at metad (err %v)", f.path, f.ino, err))
					}
				}
			}
		}
		if len(pending) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for c, p := range pending {
				c.fail("not closed %v after the writers were gone (lease/block recovery did not finish): %s", timeout, strings.Join(p, "; "))
			}
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// checkFsck runs `cairn fsck /COL [-verify]` until it is HEALTHY or
// timeout passes (only once for a cell that failed already: it waits for
// nothing).
func checkFsck(c *cluster.Cluster, cl *cell, verify bool, timeout time.Duration) {
	args := []string{"fsck", "/" + cl.col}
	if verify {
		args = append(args, "-verify")
	}
	cl.verify = verify
	deadline := time.Now().Add(timeout)
	for {
		out, err := c.RunOutput(args...)
		if err == nil && out.Code == 0 && cluster.LastLine(out.Stdout) == cluster.HealthyLine("/"+cl.col) {
			return
		}
		if !cl.passed() || time.Now().After(deadline) {
			detail := fmt.Sprintf("exit %d, err %v: %s", out.Code, err, lastLines(out.Stdout+out.Stderr, 6))
			cl.fail("cairn %s not HEALTHY: %s", strings.Join(args, " "), detail)
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	var keep []string
	for _, l := range lines {
		if strings.TrimSpace(l) != "" {
			keep = append(keep, strings.TrimSpace(l))
		}
	}
	if len(keep) > n {
		keep = keep[len(keep)-n:]
	}
	return strings.Join(keep, " | ")
}

// readerAt opens a file to read at any offset, and tells its size.
type readerAt interface {
	io.ReaderAt
	io.Closer
}

// checkRead reads every acknowledged segment of the cell's live files
// through open (the client, or a fresh mount) and compares it with its
// checksum; it returns the bytes read back equal.
func checkRead(cl *cell, via string, open func(p string) (readerAt, int64, error), exists func(p string) bool) int64 {
	var good int64
	for _, f := range cl.liveFiles() {
		p := f.path
		if f.alt != "" && !exists(p) && exists(f.alt) {
			p = f.alt
		}
		r, size, err := open(p)
		if err != nil {
			cl.fail("%s: %s: %s (acknowledged %d bytes): %v", via, f.kind, p, f.ackedEnd(), err)
			continue
		}
		if end := f.ackedEnd(); size < end {
			cl.fail("%s: %s: %s is %d bytes, %d were acknowledged", via, f.kind, p, size, end)
		}
		var bad []string
		for _, s := range f.segs {
			buf := make([]byte, s.Len)
			n, err := r.ReadAt(buf, s.Off)
			if n == len(buf) {
				err = nil
			}
			switch {
			case err != nil:
				bad = append(bad, fmt.Sprintf("[%d,%d) read %d bytes: %v", s.Off, s.Off+s.Len, n, err))
			case sum(buf) != s.Sum:
				bad = append(bad, fmt.Sprintf("[%d,%d) read back different", s.Off, s.Off+s.Len))
			default:
				good += s.Len
			}
		}
		if len(bad) > 0 {
			cl.fail("%s: %s: %s: %d of %d acknowledged ranges lost; first %s", via, f.kind, p, len(bad), len(f.segs), bad[0])
		}
		_ = r.Close()
	}
	return good
}

// clientReader reads through the client library.
func clientReader(ctx context.Context, c *client.Client) (func(string) (readerAt, int64, error), func(string) bool) {
	open := func(p string) (readerAt, int64, error) {
		r, err := c.Open(ctx, p)
		if err != nil {
			return nil, 0, err
		}
		return r, r.Size(), nil
	}
	exists := func(p string) bool {
		_, err := c.NS.Stat(ctx, p)
		return err == nil
	}
	return open, exists
}

// mountReader reads through a mount.
func mountReader(mnt string) (func(string) (readerAt, int64, error), func(string) bool) {
	open := func(p string) (readerAt, int64, error) {
		f, err := os.Open(mnt + p)
		if err != nil {
			return nil, 0, err
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, 0, err
		}
		return f, st.Size(), nil
	}
	exists := func(p string) bool {
		_, err := os.Lstat(mnt + p)
		return err == nil
	}
	return open, exists
}

// replicaWatch collects every finalized replica seen on the blockds'
// disks while the cluster recovers.
type replicaWatch struct {
	c    *cluster.Cluster
	seen map[cluster.Replica]bool
	errs []string
	stop chan struct{}
	done chan struct{}
}

func watchReplicas(c *cluster.Cluster) *replicaWatch {
	w := &replicaWatch{c: c, seen: map[cluster.Replica]bool{}, stop: make(chan struct{}), done: make(chan struct{})}
	w.scan()
	go func() {
		defer close(w.done)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-t.C:
				w.scan()
			}
		}
	}()
	return w
}

func (w *replicaWatch) scan() {
	reps, err := w.c.WholeReplicas()
	if err != nil {
		w.errs = append(w.errs, err.Error())
		return
	}
	for r := range reps {
		w.seen[r] = true
	}
}

// finish stops the watch and returns the replicas on disk now.
func (w *replicaWatch) finish() (map[cluster.Replica]bool, error) {
	close(w.stop)
	<-w.done
	w.scan()
	return w.c.WholeReplicas()
}

// checkLiveReplicas fails a cell when a replica of one of its live files'
// blocks, at the block's current generation stamp, was seen on a blockd's
// disk (finalized, or in rbw/: an append's reopen moves a finalized
// replica there, and a kill can leave it there) and is gone now (with as many blockds as the replication
// factor there is never an excess replica to trim, and nothing here
// corrupts one) — unless the same blockd holds it at a newer stamp that
// metad counts as good — or when metad names a replica that is not on disk
// at the block's stamp or newer.
func checkLiveReplicas(ctx context.Context, c *cluster.Cluster, cl *client.Client, cells []*cell, seen, now map[cluster.Replica]bool) {
	for _, ce := range cells {
		for _, dir := range ce.dirs() {
			infos, paths, err := filesUnder(ctx, cl, dir)
			if err != nil {
				ce.fail("replicas: listing %s: %v", dir, err)
				continue
			}
			for i, p := range paths {
				fb, err := cl.NS.BlockLocations(ctx, cairn.FileRef{Path: p})
				if err != nil {
					ce.fail("replicas: %s: %v", p, err)
					continue
				}
				for j, b := range fb.Blocks {
					if infos[i].Writing && j == len(fb.Blocks)-1 {
						continue // may be unfinished
					}
					listed := map[int]bool{}
					for _, n := range b.Locations {
						idx := c.BlockdOf(n.DataAddr)
						listed[idx] = true
						if _, ok := newestOnDisk(now, idx, uint64(b.ID), uint64(b.GenStamp)); !ok {
							ce.fail("metad lists a replica of %s on blockd%d (%s) that is not on its disk", p, idx, b.Block)
						}
					}
					var gone []string
					for r := range seen {
						if r.ID != uint64(b.ID) || r.GenStamp != uint64(b.GenStamp) || now[r] {
							continue
						}
						// An append that reopened the replica under a new stamp
						// and was cut short before committing it leaves the
						// same bytes at the newer stamp: not a deletion, if
						// metad counts that replica as a good one.
						if gs, ok := newestOnDisk(now, r.Blockd, r.ID, r.GenStamp+1); ok && listed[r.Blockd] {
							ce.note("%s: %s is on its disk at the newer stamp %d", p, r, gs)
							continue
						}
						gone = append(gone, r.String())
					}
					sort.Strings(gone)
					if len(gone) > 0 {
						ce.fail("replicas of live %s (%s) deleted: %s", p, b.Block, strings.Join(gone, ", "))
					}
				}
			}
		}
	}
}

// readNeedsKilled reports whether a read by the writer of kind needs the
// daemons the row kills.
func readNeedsKilled(row, kind string) bool {
	return row == "blockds" || row == "metad" || row == "mount" && kind == kindMount
}

// newestOnDisk returns the newest stamp, at least gs, of a replica of block
// id on disk on blockd node.
func newestOnDisk(now map[cluster.Replica]bool, node int, id, gs uint64) (uint64, bool) {
	var best uint64
	found := false
	for r := range now {
		if r.Blockd == node && r.ID == id && r.GenStamp >= gs && (!found || r.GenStamp > best) {
			best, found = r.GenStamp, true
		}
	}
	return best, found
}

// writerNotes records what the writers did, and fails the cell for a
// writer that failed before anything was killed, or that read its own
// unlinked file back wrong.
func writerNotes(ce *cell, killedAt time.Time) {
	for _, l := range ce.logs {
		for _, r := range l.errs {
			at, _ := time.Parse(time.RFC3339Nano, r.At)
			if !killedAt.IsZero() && at.Before(killedAt) {
				ce.fail("%s writer failed before anything was killed: %s", l.kind, r.Err)
			} else {
				ce.note("%s writer stopped after the kill: %s", l.kind, r.Err)
			}
		}
		if len(l.verifyFailed) > 0 {
			ce.fail("%s writer read its unlinked file back wrong through the open handle: %s", l.kind, strings.Join(l.verifyFailed, "; "))
		}
		if len(l.readErrors) > 0 {
			// An error is the honest answer while what the read needs is
			// down: every blockd, metad (the locations of a block added
			// since the last ask), or the writer's own mount. With one
			// blockd or the other writer killed, the read should have
			// been served.
			if readNeedsKilled(ce.row, l.kind) {
				ce.note("%s writer's read of its unlinked file failed while %s was down: %s", l.kind, ce.row, strings.Join(l.readErrors, "; "))
			} else {
				ce.fail("%s writer could not read its unlinked file through the open handle: %s", l.kind, strings.Join(l.readErrors, "; "))
			}
		}
		if l.verified > 0 {
			ce.note("%s writer read %d bytes of its unlinked file back through the open handle", l.kind, l.verified)
		}
	}
	for _, f := range ce.liveFiles() {
		for _, s := range f.segs {
			ce.acked += s.Len
		}
	}
	slices.Sort(ce.notes)
}
