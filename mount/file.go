package mount

import (
	"context"
	"errors"
	"io"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"go.uber.org/zap"

	"cairn"
)

// handle is one open file. A handle that created its file holds the
// file's FileWriter from the start; one that opened an existing file for
// writing gets one at its first write, by reopening the file to append if
// the Backend can (appender), and refuses the write otherwise. Readers
// are opened on demand.
//
// close(2) is FLUSH: the first flush from the opening process after bytes
// were written closes the FileWriter and returns its error, so a failed
// write is reported by close. Flushes from other processes (a child that
// inherited the descriptor and exits) and flushes before any byte (a
// shell closing the descriptor it dup2'ed onto stdout) leave the writer
// open; RELEASE, when the last descriptor is gone, closes it then and logs
// what fails, since no process is left to tell. A write after the writer
// was closed appends again.
type handle struct {
	n        *node
	writable bool
	append   bool   // O_APPEND: every write goes to the end of the file
	opener   uint32 // process that opened the handle; 0 if not known

	mu     sync.Mutex
	w      FileWriter
	closed bool  // w is closed
	werr   error // w.Close's result
	start  int64 // the file's size when w was opened
	// size mirrors w.Size() for stat(2), which must not wait behind a
	// write in progress.
	size atomic.Int64

	// readers are the file's readers, the newest last. Reads use the
	// newest; an older one is closed once no read uses it, the rest on
	// release.
	readers []*fileReader
}

// fileReader is a reader of a handle and the reads using it.
type fileReader struct {
	FileReader
	reads int // h.mu is held
}

// openFlags are the FOPEN_* flags of the handle's OPEN or CREATE reply.
// A handle open for writing bypasses the page cache (FOPEN_DIRECT_IO):
// every write(2) reaches Write, where the write-once rules are checked,
// and the kernel refuses a shared mapping of it (mmap(MAP_SHARED) fails
// with ENODEV), so no dirty page can ever be written back below the end
// of the file. FUSE has no mmap request the mount could answer with
// EPERM; this is the refusal it can make.
func (h *handle) openFlags() uint32 {
	if h.writable {
		return fuse.FOPEN_DIRECT_IO
	}
	return 0
}

var _ = (fs.FileWriter)((*handle)(nil))

// Write accepts bytes at the end of the file only. With O_APPEND the end
// is the file's, whatever offset the kernel computed from a size it may
// have cached before another client appended.
func (h *handle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case !h.writable:
		return 0, syscall.EBADF
	case h.closed && h.werr != nil:
		return 0, errno(h.werr)
	case h.w == nil || h.closed:
		if e := h.reopen(ctx, off); e != 0 {
			return 0, e
		}
	}
	size := h.w.Size()
	if h.append {
		off = size
	}
	if off != size {
		return 0, h.refuseWrite(off, size)
	}
	n, err := h.w.Write(data)
	h.size.Store(h.w.Size())
	if err != nil {
		if k := cairn.KindOf(err); k == cairn.KindNoSpace || k == cairn.KindPermission || k == cairn.KindAccess {
			h.n.fsys.failed("write failed", h.n.logPath(), err)
		} else {
			h.n.fsys.log.Warn("write failed", zap.String("path", h.n.logPath()), zap.Int64("offset", off), zap.Error(err))
		}
		if n == 0 {
			return 0, errno(err)
		}
	}
	return uint32(n), 0
}

// reopen gives h a writer at the end of its existing file for a write at
// off; h.mu is held.
func (h *handle) reopen(ctx context.Context, off int64) syscall.Errno {
	p, ok := h.n.path()
	if !ok {
		return syscall.ENOENT
	}
	if e := h.takeOver(p); e != 0 {
		return e
	}
	fi, _, e := h.n.refresh(ctx)
	if e != 0 {
		return e
	}
	if !h.append && off != fi.Size {
		return h.refuseWrite(off, fi.Size)
	}
	if !h.n.fsys.b.canAppend() {
		return h.n.fsys.refuse(p, ruleAppendClosed, syscall.EPERM)
	}
	actx, cancel := mutating(ctx)
	defer cancel()
	w, err := h.n.fsys.b.Append(actx, p)
	if err != nil {
		return errno(err)
	}
	h.w, h.closed, h.werr = w, false, nil
	h.start = w.Size()
	h.size.Store(h.start)
	h.n.mu.Lock()
	h.n.writer = h
	h.n.mu.Unlock()
	h.n.fsys.track(h)
	return 0
}

// takeOver closes the writer another handle of this mount holds on the
// file if that handle has written nothing: a file created and closed
// empty keeps its writer until RELEASE, which comes after close(2)
// returns, and `touch f; echo x > f` must work. A handle that has written
// keeps its writer, and h gets EBUSY. h.mu is held.
func (h *handle) takeOver(p string) syscall.Errno {
	h.n.mu.Lock()
	o := h.n.writer
	h.n.mu.Unlock()
	if o == nil || o == h {
		return 0
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case o.w == nil || o.closed:
		return 0
	case o.size.Load() != o.start:
		return h.n.fsys.refuse(p, ruleBusy, syscall.EBUSY)
	}
	if err := o.closeWriter(); err != nil {
		h.n.fsys.failed("close failed", p, err)
		return errno(err)
	}
	return 0
}

// replace makes h's file, at path p, a new empty version that h writes
// (openReplaced, truncateToZero). Another handle of this mount holding a
// writer is handled as by reopen (takeOver); perm is the file's, for a
// file another client removed meanwhile (made anew). h.mu is held.
func (h *handle) replace(ctx context.Context, p string, perm os.FileMode) syscall.Errno {
	if e := h.takeOver(p); e != 0 {
		return e
	}
	mctx, cancel := mutating(ctx)
	defer cancel()
	w, err := h.n.fsys.b.Replace(mctx, p, perm)
	if err != nil {
		return errno(err)
	}
	h.w, h.closed, h.werr = w, false, nil
	h.start = 0
	h.size.Store(0)
	h.n.mu.Lock()
	h.n.writer = h
	h.n.fi.Size, h.n.fi.Writing = 0, true
	h.n.mu.Unlock()
	h.n.fsys.track(h)
	// What h read before was the old version.
	for _, r := range h.readers {
		if r.reads == 0 {
			h.closeReader(r)
		}
	}
	h.readers = slices.DeleteFunc(h.readers, func(r *fileReader) bool { return r.reads == 0 })
	return 0
}

// refuseWrite refuses a write at off, not the end of a file of size
// bytes, by the rule it breaks.
func (h *handle) refuseWrite(off, size int64) syscall.Errno {
	rule := ruleHole
	if off < size {
		rule = ruleOverwrite
	}
	return h.n.fsys.refuse(h.n.logPath(), rule, syscall.EPERM)
}

var _ = (fs.FileFlusher)((*handle)(nil))

// Flush is a close of one descriptor of the handle. The opener's close
// ends the write (close-to-open: the bytes are in and the length is
// metad's when close returns); a close by another process, a child that
// inherited the descriptor closing it at its exec or exit, ends nothing,
// and is answered before taking the handle's lock: a write or fsync of the
// opener may hold it through a long call to metad, and the child's exec
// would wait for it.
func (h *handle) Flush(ctx context.Context) syscall.Errno {
	if !h.writable {
		return 0
	}
	if p := callerProcess(ctx); p != 0 && h.opener != 0 && p != h.opener {
		return 0
	}
	h.mu.Lock()
	if h.w == nil || h.closed || h.size.Load() == h.start {
		h.mu.Unlock()
		return 0
	}
	err := h.closeWriter()
	h.mu.Unlock()
	if err != nil {
		h.n.fsys.failed("close failed", h.n.logPath(), err)
		return errno(err)
	}
	h.n.dropCache()
	return 0
}

var _ = (fs.FileReleaser)((*handle)(nil))

func (h *handle) Release(ctx context.Context) syscall.Errno {
	h.mu.Lock()
	closing := h.w != nil && !h.closed
	var err error
	if closing {
		err = h.closeWriter()
	}
	readers := h.readers
	h.readers = nil
	h.mu.Unlock()
	switch {
	case closing && err != nil:
		h.n.fsys.failed("close at release failed; no process is left to tell", h.n.logPath(), err)
	case closing:
		h.n.dropCache()
	}
	for _, r := range readers {
		h.closeReader(r)
	}
	h.n.released(ctx)
	return 0
}

func (h *handle) closeReader(r *fileReader) {
	if err := r.Close(); err != nil {
		h.n.fsys.log.Warn("closing a reader failed", zap.String("path", h.n.logPath()), zap.Error(err))
	}
}

// dropCache makes the kernel drop the file's cached pages and attributes,
// so what any reader sees next comes from the finished file. Not with a
// handle's mu held: the kernel may wait for a read that waits for it.
func (n *node) dropCache() {
	if e := n.NotifyContent(0, 0); e != 0 && e != syscall.ENOENT {
		n.fsys.log.Debug("dropping cached pages", zap.String("path", n.logPath()), zap.Error(e))
	}
}

// closeWriter closes the FileWriter, then stores the times set on the
// file while it was written; h.mu is held.
func (h *handle) closeWriter() error {
	h.closed = true
	h.werr = h.w.Close()
	h.size.Store(h.w.Size())
	n := h.n
	var times *pendingTimes
	n.mu.Lock()
	if n.writer == h {
		n.writer = nil
		n.fi.Size = h.size.Load()
		n.fi.Writing = false
		times, n.times = n.times, nil
	}
	n.mu.Unlock()
	n.fsys.untrack(h)
	if times != nil && h.werr == nil {
		n.applyTimes(times)
	}
	return h.werr
}

var _ = (fs.FileFsyncer)((*handle)(nil))

// Fsync makes the written bytes durable if the writer can; a closed file
// already is.
func (h *handle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.w == nil:
		return 0
	case h.closed && h.werr != nil:
		return errno(h.werr)
	case h.closed:
		return 0
	}
	s, ok := h.w.(syncer)
	if !ok {
		return h.n.fsys.refuse(h.n.logPath(), ruleFsync, syscall.ENOTSUP)
	}
	return errno(s.Sync())
}

var _ = (fs.FileReader)((*handle)(nil))

// Read reads at off. It returns every byte asked for up to the end of
// the file, or an error: never a short count before the end, which the
// kernel (and the program) would take for the end of the file. Bytes read
// before a failure are dropped with it.
//
// What this mount's own writer of the file has accepted (and stat(2)
// shows) may not be readable from the backend yet: a read that ends short
// of it, or fails, has the writer flush those bytes (or waits for its
// close) and reads again, as the kernel, told the file is that long,
// would fill a short read with zeros. A read that fails is tried once
// more with a reader opened now: one opened before the file was reopened
// to append holds generation stamps the append replaced.
func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	r, e := h.reader(ctx, off, len(dest))
	if e != 0 {
		return nil, e
	}
	defer h.doneReading(r)
	n, err := r.ReadAt(dest, off)
	if bad := failed(err); bad || n < len(dest) {
		flushed := h.n.flushWriter(off + int64(n))
		if bad || flushed {
			if nr, e := h.renewReader(ctx, r); e == 0 {
				var more int
				more, err = nr.ReadAt(dest[n:], off+int64(n))
				n += more
				h.doneReading(nr)
			}
		}
	}
	if failed(err) {
		h.n.fsys.log.Warn("read failed", zap.String("path", h.n.logPath()), zap.Int64("offset", off),
			zap.Int("size", len(dest)), zap.Int("read_before_failure", n), zap.Error(err))
		return nil, errno(err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

// failed reports whether a read failed: a FileReader returns fewer bytes
// than asked with io.EOF at the end of the file, with another error when
// it failed, however many bytes came before.
func failed(err error) bool {
	return err != nil && !errors.Is(err, io.EOF)
}

// renewReader returns a reader newer than old for a read, opening one
// unless there is one already; doneReading releases it.
func (h *handle) renewReader(ctx context.Context, old *fileReader) (*fileReader, syscall.Errno) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.readers) > 0 && h.readers[len(h.readers)-1] != old {
		return h.use(h.readers[len(h.readers)-1]), 0
	}
	return h.openReader(ctx)
}

// use counts a read of r and returns it; h.mu is held.
func (h *handle) use(r *fileReader) *fileReader {
	r.reads++
	return r
}

// doneReading ends a read of r, closing r if it was the last read of a
// reader no longer the newest.
func (h *handle) doneReading(r *fileReader) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r.reads--
	h.dropOldReaders()
}

// dropOldReaders closes the readers older than the newest that no read
// uses; h.mu is held.
func (h *handle) dropOldReaders() {
	if len(h.readers) == 0 {
		return
	}
	kept := h.readers[:0]
	for i, r := range h.readers {
		if i < len(h.readers)-1 && r.reads == 0 {
			h.closeReader(r)
			continue
		}
		kept = append(kept, r)
	}
	clear(h.readers[len(kept):])
	h.readers = kept
}

// flushWriter has this mount's writer of the file make the bytes it
// accepted visible to readers (hflush) if it holds bytes past upTo and
// can, and reports whether they are visible now (also when the writer
// was closed meanwhile). Not with a handle's mu held.
func (n *node) flushWriter(upTo int64) bool {
	n.mu.Lock()
	o := n.writer
	n.mu.Unlock()
	if o == nil || o.size.Load() <= upTo {
		return false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed { // closing made them visible, unless it failed
		return o.werr == nil
	}
	f, ok := o.w.(flusher)
	if !ok {
		return false
	}
	if err := f.Flush(); err != nil {
		n.fsys.log.Warn("flush for a reader failed", zap.String("path", n.logPath()), zap.Error(err))
		return false
	}
	return true
}

// reader returns the reader for a read of n bytes at off: the newest
// one, or a new one if the read goes past its end and the file has grown
// since it was opened. A read that ends inside the reader's bytes is its
// own. One that starts inside them but goes on (the kernel reads whole
// pages, again after the cache was dropped for an append) needs a new
// reader if this mount has seen the file longer, which costs no call.
// One at or past the reader's end comes only when the kernel believes the
// file is longer, so looking again at the backend costs nothing
// otherwise. doneReading releases it.
func (h *handle) reader(ctx context.Context, off int64, n int) (*fileReader, syscall.Errno) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.readers) == 0 {
		return h.openReader(ctx)
	}
	r := h.readers[len(h.readers)-1]
	if off+int64(n) <= r.Size() {
		return h.use(r), 0
	}
	if off < r.Size() {
		if seen, _ := h.n.snapshot(); seen.Size <= r.Size() {
			return h.use(r), 0
		}
	} else if fi, _, e := h.n.refresh(ctx); e != 0 || fi.Size <= r.Size() {
		return h.use(r), 0
	}
	if nr, e := h.openReader(ctx); e == 0 {
		return nr, 0
	}
	return h.use(r), 0
}

// openReader opens a reader on the file, makes it the newest, closes the
// older ones no read uses and returns it for a read; h.mu is held.
func (h *handle) openReader(ctx context.Context) (*fileReader, syscall.Errno) {
	p, ok := h.n.path()
	if !ok {
		return nil, syscall.ENOENT
	}
	r, err := h.n.fsys.b.Open(ctx, p)
	if err != nil {
		return nil, errno(err)
	}
	if len(h.readers) > 0 {
		// A handle reads the version it opened, never part of a newer one.
		if old, ok := h.readers[len(h.readers)-1].FileReader.(versioned); ok && !old.SameVersion(r) {
			h.closeReader(&fileReader{FileReader: r})
			h.n.fsys.log.Info("read refused: the file was replaced (O_TRUNC) since this descriptor opened it", zap.String("path", p))
			return nil, syscall.ESTALE
		}
	}
	fr := &fileReader{FileReader: r, reads: 1}
	h.readers = append(h.readers, fr)
	h.dropOldReaders()
	return fr, 0
}

// fileVersion tells apart the versions of a file a reader can open: its
// size and its last block (id, generation stamp, length). Bytes below the
// end of a version never change (write-once), so a reader of the same
// version reads what the kernel cached; an append grows the size or moves
// the last block to a new stamp, and a replaced file has new blocks. A
// backend that does not name blocks is told apart by size alone.
type fileVersion struct {
	valid bool
	size  int64
	last  cairn.Block
}

// blockLister is a FileReader that names the file's blocks
// (client.Reader).
type blockLister interface {
	Blocks() []cairn.LocatedBlock
}

// readFlags are the FOPEN_* flags of a read-only open that opened r:
// FOPEN_KEEP_CACHE when the file is closed (no writer here, none that
// metad knew of when the node was last looked at) and r reads the very
// version the kernel's cached pages came from, so re-reads are served from
// the page cache; otherwise the kernel drops the file's pages at this
// open. A reader that finds the file another size than the kernel was
// told has the kernel's attributes dropped too, so the next read asks for
// the new size. Between opens the kernel drops cached pages itself when an
// attribute reply shows a new size or mtime (FUSE's auto_inval_data),
// which comes within attrTimeout of a change made by another client.
func (n *node) readFlags(r FileReader) uint32 {
	v := fileVersion{valid: true, size: r.Size()}
	fi, local := n.snapshot()
	if bl, ok := r.(blockLister); ok {
		if bs := bl.Blocks(); len(bs) > 0 {
			v.last = bs[len(bs)-1].Block
		}
	}
	n.mu.Lock()
	keep := !local && !fi.Writing && n.cached == v
	n.cached = v
	if local || fi.Writing {
		n.cached = fileVersion{}
	}
	resized := !local && n.fi.Size != v.size
	if resized {
		n.fi.Size = v.size
	}
	n.mu.Unlock()
	if resized {
		if e := n.NotifyContent(-1, 0); e != 0 && e != syscall.ENOENT {
			n.fsys.log.Debug("dropping cached attributes", zap.String("path", n.logPath()), zap.Error(e))
		}
	}
	if keep {
		return fuse.FOPEN_KEEP_CACHE
	}
	return 0
}
