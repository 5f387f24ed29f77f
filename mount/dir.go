package mount

import (
	"context"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"cairn"
)

// listPage is how many entries one List call asks for: a directory is
// read a page at a time, never loaded whole.
const listPage = 1000

var _ = (fs.NodeReaddirer)((*node)(nil))

func (n *node) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	p, ok := n.path()
	if !ok {
		return nil, syscall.ENOENT
	}
	return &dirStream{n: n, path: p}, 0
}

var _ = (fs.NodeOpendirHandler)((*node)(nil))

// OpendirHandle serves the listing as a directory handle, so READDIRPLUS
// takes each entry's attributes from the page it came in (FileLookuper)
// instead of asking the backend once per entry.
func (n *node) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	ds, e := n.Readdir(ctx)
	if e != 0 {
		return nil, 0, e
	}
	return ds, 0, 0
}

// dirStream lists a directory lazily, one page of List at a time, after
// "." and "..". Offsets count entries from the start.
type dirStream struct {
	n    *node
	path string

	mu    sync.Mutex
	ctx   context.Context // of the request being served, while it is
	pos   uint64          // entries returned so far
	page  []cairn.FileInfo
	i     int    // next entry of page
	after string // name of the last entry fetched
	more  bool   // whether List has entries after page
	begun bool   // whether the first page was fetched
	err   syscall.Errno
	last  *cairn.FileInfo // the entry returned last, for Lookup
}

func (d *dirStream) context() context.Context {
	if d.ctx != nil {
		return d.ctx
	}
	return context.Background()
}

// fill fetches the next page when the current one is used up; d.mu is
// held.
func (d *dirStream) fill() {
	for d.err == 0 && d.i >= len(d.page) && (!d.begun || d.more) {
		page, more, err := d.n.fsys.b.List(d.context(), d.path, d.after, listPage)
		if err != nil {
			d.err = errno(err)
			return
		}
		d.begun = true
		d.page, d.i, d.more = page, 0, more && len(page) > 0
		if len(page) > 0 {
			d.after = page[len(page)-1].Name
		}
	}
}

func (d *dirStream) hasNext() bool {
	if d.pos < 2 {
		return true
	}
	d.fill()
	return d.err != 0 || d.i < len(d.page)
}

func (d *dirStream) next() (fuse.DirEntry, syscall.Errno) {
	switch d.pos {
	case 0:
		d.pos++
		d.last = nil
		return fuse.DirEntry{Name: ".", Mode: syscall.S_IFDIR, Ino: d.n.StableAttr().Ino}, 0
	case 1:
		d.pos++
		d.last = nil
		ino := d.n.StableAttr().Ino
		if _, parent := d.n.Parent(); parent != nil {
			ino = parent.StableAttr().Ino
		}
		return fuse.DirEntry{Name: "..", Mode: syscall.S_IFDIR, Ino: ino}, 0
	}
	d.fill()
	if d.err != 0 {
		return fuse.DirEntry{}, d.err
	}
	if d.i >= len(d.page) {
		return fuse.DirEntry{}, syscall.ENOENT
	}
	fi := d.page[d.i]
	d.i++
	d.pos++
	d.last = &fi
	return fuse.DirEntry{Name: fi.Name, Mode: unixMode(fi.Mode), Ino: fi.Inode}, 0
}

var _ = (fs.DirStream)((*dirStream)(nil))

func (d *dirStream) HasNext() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.hasNext()
}

func (d *dirStream) Next() (fuse.DirEntry, syscall.Errno) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.next()
}

func (d *dirStream) Close() {}

var _ = (fs.FileReaddirenter)((*dirStream)(nil))

func (d *dirStream) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ctx = ctx
	defer func() { d.ctx = nil }()
	if !d.hasNext() {
		return nil, 0
	}
	de, e := d.next()
	if e != 0 {
		return nil, e
	}
	return &de, 0
}

var _ = (fs.FileLookuper)((*dirStream)(nil))

// Lookup answers READDIRPLUS for the entry just returned from the page
// it came in.
func (d *dirStream) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	d.mu.Lock()
	last := d.last
	d.mu.Unlock()
	if last == nil || last.Name != name {
		return d.n.Lookup(ctx, name, out)
	}
	return d.n.child(ctx, name, *last, out), 0
}

var _ = (fs.FileSeekdirer)((*dirStream)(nil))

// Seekdir restarts the listing and skips to entry off.
func (d *dirStream) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	d.mu.Lock()
	defer d.mu.Unlock()
	if off == d.pos {
		return 0
	}
	d.ctx = ctx
	defer func() { d.ctx = nil }()
	d.pos, d.page, d.i, d.after, d.more, d.begun, d.err, d.last = 0, nil, 0, "", false, false, 0, nil
	for d.pos < off && d.hasNext() {
		if _, e := d.next(); e != 0 {
			return e
		}
	}
	return 0
}

var _ = (fs.FileFsyncdirer)((*dirStream)(nil))

// Fsyncdir succeeds: metad answers a change of the namespace only once
// it is durable, so a directory has nothing left to sync.
func (d *dirStream) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno { return 0 }

var _ = (fs.FileReleasedirer)((*dirStream)(nil))

func (d *dirStream) Releasedir(ctx context.Context, releaseFlags uint32) {}
