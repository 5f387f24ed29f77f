package mount

import (
	"context"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"go.uber.org/zap"

	"cairn"
)

const (
	// attrTimeout and entryTimeout are how long the kernel may trust what
	// it was told. A file being written gets no attribute caching at all,
	// so stat(2) follows its growth.
	attrTimeout  = time.Second
	entryTimeout = time.Second

	ioBlockSize = 128 << 10 // st_blksize: the I/O size programs choose by
	statfsBlock = 4096      // the unit statfs(2) counts capacity in
	// freeInodes is what statfs reports as free inodes: the namespace
	// lives in Pebble, so it has no fixed number of them.
	freeInodes = 1 << 32

	renameNoReplace = 0x1 // RENAME_NOREPLACE of renameat2(2)
)

// The rules a refused call names in its log line.
const (
	ruleOverwrite    = "write-once: no write below the end of a file (overwrite)"
	ruleHole         = "write-once: no write beyond the end of a file (hole)"
	ruleAppendClosed = "append to a closed file: the backend cannot reopen files"
	ruleBusy         = "another descriptor of this mount is writing the file"
	ruleTruncate     = "write-once: a truncate is to 0 (a new version of the file) or to its current size"
	ruleReplace      = "this backend cannot replace a file whole (O_TRUNC, truncate to 0)"
	ruleXattrNS      = "only user.* extended attributes are kept"
	ruleExchange     = "rename with RENAME_EXCHANGE is not supported"
	ruleRenameFlags  = "rename flag not supported"
	ruleFsync        = "fsync needs a writer that can sync; this one cannot yet"
	ruleLink         = "this backend keeps no hard links"
)

// fsys is what every node of one mount shares.
type fsys struct {
	b        callerBackend
	root     string // the cairn directory shown at the mountpoint
	readOnly bool
	ids      *idMap
	log      *zap.Logger

	mu      sync.Mutex
	writers map[*handle]bool // handles whose FileWriter is still open
}

// refuse logs a call refused by the rules and returns its errno.
func (f *fsys) refuse(path, rule string, e syscall.Errno) syscall.Errno {
	f.log.Info("refused", zap.String("path", path), zap.String("rule", rule), zap.String("errno", e.Error()))
	return e
}

func (f *fsys) track(h *handle) {
	f.mu.Lock()
	f.writers[h] = true
	f.mu.Unlock()
}

func (f *fsys) untrack(h *handle) {
	f.mu.Lock()
	delete(f.writers, h)
	f.mu.Unlock()
}

// closeWriters closes the writers of handles the kernel never released,
// as after a lazy unmount, logging what fails.
func (f *fsys) closeWriters() {
	f.mu.Lock()
	hs := make([]*handle, 0, len(f.writers))
	for h := range f.writers {
		hs = append(hs, h)
	}
	f.mu.Unlock()
	for _, h := range hs {
		h.mu.Lock()
		if h.w != nil && !h.closed {
			if err := h.closeWriter(); err != nil {
				f.log.Error("close at unmount failed", zap.String("path", h.n.logPath()), zap.Error(err))
			}
		}
		h.mu.Unlock()
	}
}

// fillAttr turns fi into the attributes stat(2) shows.
func (f *fsys) fillAttr(fi cairn.FileInfo, out *fuse.Attr) {
	out.Ino = fi.Inode
	out.Mode = unixMode(fi.Mode)
	size := fi.Size
	if fi.Mode&os.ModeSymlink != 0 {
		size = int64(len(fi.Symlink))
	}
	out.Size = uint64(max(size, 0))
	if fi.Mode.IsRegular() {
		// The file's bytes once, in the 512-byte units of st_blocks, so
		// du agrees with the sizes; the replicas show in df's used.
		out.Blocks = (out.Size + 511) / 512
	}
	out.Blksize = ioBlockSize
	out.Nlink = nlink(fi)
	out.Rdev = rdev(fi)
	out.Owner = fuse.Owner{Uid: f.ids.userID(fi.Owner), Gid: f.ids.groupID(fi.Group)}
	mtime := unixTime(fi.ModTime)
	atime, ctime := mtime, mtime
	if !fi.AccessTime.IsZero() {
		atime = unixTime(fi.AccessTime)
	}
	if !fi.ChangeTime.IsZero() {
		ctime = unixTime(fi.ChangeTime)
	}
	out.SetTimes(&atime, &mtime, &ctime)
}

// unixTime keeps a zero time at the epoch instead of year 1.
func unixTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Unix(0, 0)
	}
	return t
}

// unixMode converts a Go file mode to st_mode bits.
func unixMode(m os.FileMode) uint32 {
	bits := uint32(m.Perm())
	if m&os.ModeSetuid != 0 {
		bits |= syscall.S_ISUID
	}
	if m&os.ModeSetgid != 0 {
		bits |= syscall.S_ISGID
	}
	if m&os.ModeSticky != 0 {
		bits |= syscall.S_ISVTX
	}
	switch {
	case m&os.ModeDir != 0:
		return bits | syscall.S_IFDIR
	case m&os.ModeSymlink != 0:
		return bits | syscall.S_IFLNK
	case m&os.ModeNamedPipe != 0:
		return bits | syscall.S_IFIFO
	case m&os.ModeSocket != 0:
		return bits | syscall.S_IFSOCK
	case m&os.ModeCharDevice != 0:
		return bits | syscall.S_IFCHR
	case m&os.ModeDevice != 0:
		return bits | syscall.S_IFBLK
	}
	return bits | syscall.S_IFREG
}

func stableAttr(fi cairn.FileInfo) fs.StableAttr {
	return fs.StableAttr{Mode: unixMode(fi.Mode) & syscall.S_IFMT, Ino: fi.Inode}
}

// node is one directory, file or symlink. Its cairn path comes from its
// place in go-fuse's Inode tree, so a rename moves it with no work here.
type node struct {
	fs.Inode
	fsys *fsys

	mu     sync.Mutex
	fi     cairn.FileInfo // as last seen
	writer *handle        // the handle writing this file through this mount
	times  *pendingTimes  // set while writer writes, stored after it closes
	// opens counts the file's open handles in this mount; held says the
	// file was unlinked while open and its data is held for them
	// (openUnlinker) until the last is released.
	opens int
	held  bool
	// cached is the version of the file whose bytes the kernel may hold
	// in its page cache (file.go, readFlags).
	cached fileVersion
}

// releaseTimeout bounds the call that releases an unlinked file.
const releaseTimeout = 30 * time.Second

// opened counts a new handle of n.
func (n *node) opened() {
	n.mu.Lock()
	n.opens++
	n.mu.Unlock()
}

// released counts a handle of n gone; the last one of an unlinked file
// releases the file's data.
func (n *node) released(ctx context.Context) {
	n.mu.Lock()
	n.opens--
	release := n.opens == 0 && n.held
	if release {
		n.held = false
	}
	id := n.fi.Inode
	n.mu.Unlock()
	if !release {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	if err := n.fsys.b.ReleaseUnlinked(ctx, id); err != nil {
		n.fsys.log.Warn("releasing an unlinked file at its last close failed; metad frees it when this mount's lease expires",
			zap.Uint64("inode", id), zap.Error(err))
	}
}

var _ = (fs.InodeEmbedder)((*node)(nil))

// path is the node's cairn path; false if the node has left the tree, as
// a file unlinked while open has.
func (n *node) path() (string, bool) {
	if !n.IsRoot() {
		if _, parent := n.Parent(); parent == nil {
			return "", false
		}
	}
	rel := n.Path(n.Root())
	switch {
	case rel == "":
		return n.fsys.root, true
	case n.fsys.root == "/":
		return "/" + rel, true
	}
	return n.fsys.root + "/" + rel, true
}

// logPath names the node in a log line, also after it left the tree.
func (n *node) logPath() string {
	if p, ok := n.path(); ok {
		return p
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return "(unlinked) " + n.fi.Name
}

// childPath is the cairn path of the entry name in directory n.
func (n *node) childPath(name string) (string, syscall.Errno) {
	if len(name) > cairn.MaxNameLen {
		return "", syscall.ENAMETOOLONG
	}
	dir, ok := n.path()
	if !ok {
		return "", syscall.ENOENT
	}
	p := cairn.Join(dir, name)
	if n.fsys.shownLen(p) > cairn.MaxPathLen {
		return "", syscall.ENAMETOOLONG
	}
	if err := cairn.ValidatePath(p); err != nil {
		return "", errno(err)
	}
	return p, 0
}

// snapshot returns what the node knows of itself without asking the
// backend, and whether this mount is writing the file, in which case the
// size is the writer's.
func (n *node) snapshot() (cairn.FileInfo, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	fi := n.fi
	if n.writer != nil {
		fi.Size = n.writer.size.Load()
		if t := n.times; t != nil && t.mtime != nil {
			fi.ModTime = *t.mtime
		}
		if t := n.times; t != nil && t.atime != nil {
			fi.AccessTime = *t.atime
		}
		return fi, true
	}
	return fi, false
}

func (n *node) setInfo(fi cairn.FileInfo) {
	n.mu.Lock()
	n.fi = fi
	n.mu.Unlock()
}

// refresh returns the node's current info: from its writer if this mount
// writes the file, from the backend otherwise, or as last seen if the node
// was unlinked while open.
func (n *node) refresh(ctx context.Context) (cairn.FileInfo, bool, syscall.Errno) {
	if fi, local := n.snapshot(); local {
		return fi, true, 0
	}
	if p, ok := n.path(); ok {
		fi, err := n.fsys.b.Stat(ctx, p)
		if err != nil {
			return cairn.FileInfo{}, false, errno(err)
		}
		n.setInfo(fi)
	}
	fi, local := n.snapshot()
	return fi, local, 0
}

// fillEntry answers a lookup of n. A file being written (here or by
// another client) gets no attribute caching.
func (n *node) fillEntry(out *fuse.EntryOut) {
	fi, local := n.snapshot()
	n.fsys.fillAttr(fi, &out.Attr)
	out.SetEntryTimeout(entryTimeout)
	if !local && !fi.Writing {
		out.SetAttrTimeout(attrTimeout)
	}
}

// child returns the Inode for entry name of n described by fi, reusing the
// one the tree has if it is the same file.
func (n *node) child(ctx context.Context, name string, fi cairn.FileInfo, out *fuse.EntryOut) *fs.Inode {
	sa := stableAttr(fi)
	if in := n.GetChild(name); in != nil && in.StableAttr() == sa {
		if c, ok := in.Operations().(*node); ok {
			c.setInfo(fi)
			c.fillEntry(out)
			return in
		}
	}
	c := &node{fsys: n.fsys, fi: fi}
	c.fillEntry(out)
	return n.NewInode(ctx, c, sa)
}

var _ = (fs.NodeLookuper)((*node)(nil))

func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	p, e := n.childPath(name)
	if e != 0 {
		return nil, e
	}
	fi, err := n.fsys.b.Stat(ctx, p)
	if err != nil {
		return nil, errno(err)
	}
	return n.child(ctx, name, fi, out), 0
}

var _ = (fs.NodeGetattrer)((*node)(nil))

func (n *node) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	fi, local, e := n.refresh(ctx)
	if e != 0 {
		return e
	}
	n.fsys.fillAttr(fi, &out.Attr)
	if !local && !fi.Writing {
		out.SetTimeout(attrTimeout)
	}
	return 0
}

var _ = (fs.NodeReadlinker)((*node)(nil))

func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	fi, _, e := n.refresh(ctx)
	if e != 0 {
		return nil, e
	}
	if fi.Mode&os.ModeSymlink == 0 {
		return nil, syscall.EINVAL
	}
	return []byte(fi.Symlink), 0
}

var _ = (fs.NodeMkdirer)((*node)(nil))

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if n.fsys.readOnly {
		return nil, syscall.EROFS
	}
	p, e := n.childPath(name)
	if e != 0 {
		return nil, e
	}
	ctx, cancel := mutating(ctx)
	defer cancel()
	if err := n.fsys.b.Mkdir(ctx, p, os.FileMode(mode&0o777)); err != nil {
		return nil, errno(err)
	}
	fi, err := n.fsys.b.Stat(ctx, p)
	if err != nil {
		return nil, errno(err)
	}
	return n.child(ctx, name, fi, out), 0
}

var _ = (fs.NodeCreater)((*node)(nil))

// Create makes a new file and opens it for writing. If another client
// made the name meanwhile and O_EXCL is not set, the existing file is
// opened as open(2) without O_CREAT would.
func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	if n.fsys.readOnly {
		return nil, nil, 0, syscall.EROFS
	}
	p, e := n.childPath(name)
	if e != 0 {
		return nil, nil, 0, e
	}
	ctx, cancel := mutating(ctx)
	defer cancel()
	w, err := n.fsys.b.Create(ctx, p, os.FileMode(mode&0o777))
	if cairn.KindOf(err) == cairn.KindExist && flags&syscall.O_EXCL == 0 {
		in, e := n.Lookup(ctx, name, out)
		if e != 0 {
			return nil, nil, 0, e
		}
		h, fuseFlags, e := in.Operations().(*node).Open(ctx, flags)
		if e != 0 {
			return nil, nil, 0, e
		}
		return in, h, fuseFlags, 0
	}
	if err != nil {
		return nil, nil, 0, errno(err)
	}
	fi, err := createdInfo(ctx, n.fsys.b, w, p)
	if err != nil {
		if cerr := w.Close(); cerr != nil {
			n.fsys.log.Error("close after failed stat", zap.String("path", p), zap.Error(cerr))
		}
		return nil, nil, 0, errno(err)
	}
	c := &node{fsys: n.fsys, fi: fi, opens: 1}
	h := &handle{n: c, w: w, writable: flags&syscall.O_ACCMODE != syscall.O_RDONLY, append: flags&syscall.O_APPEND != 0, opener: callerProcess(ctx)}
	h.size.Store(w.Size())
	c.writer = h
	n.fsys.track(h)
	c.fillEntry(out)
	return n.NewInode(ctx, c, stableAttr(fi)), h, h.openFlags(), 0
}

var _ = (fs.NodeOpener)((*node)(nil))

// Open opens a file for reading, or an existing file for writing (at its
// end only, see handle.Write). O_TRUNC of a non-empty file replaces it
// whole (openReplaced). Opening for writing (or with O_TRUNC) checks the
// caller's write permission first (EACCES), as open(2) does, and reopens
// the file at the first write.
func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	p, ok := n.path()
	if !ok {
		return nil, 0, syscall.ENOENT
	}
	write := flags&syscall.O_ACCMODE != syscall.O_RDONLY
	if write && n.fsys.readOnly {
		return nil, 0, syscall.EROFS
	}
	if write || flags&syscall.O_TRUNC != 0 {
		fi, local, e := n.checkAccess(ctx, cairn.AccessWrite)
		if e != 0 {
			return nil, 0, e
		}
		if fi.IsDir() {
			return nil, 0, syscall.EISDIR
		}
		// An empty file needs no new version, unless another client
		// writes it (which makes it EBUSY).
		if flags&syscall.O_TRUNC != 0 && (fi.Size > 0 || fi.Writing && !local) {
			return n.openReplaced(ctx, p, flags, fi)
		}
	}
	if write {
		h := &handle{n: n, writable: true, append: flags&syscall.O_APPEND != 0, opener: callerProcess(ctx)}
		n.opened()
		return h, h.openFlags(), 0
	}
	r, err := n.fsys.b.Open(ctx, p)
	if err != nil {
		return nil, 0, errno(err)
	}
	n.opened()
	return &handle{n: n, readers: []*fileReader{{FileReader: r}}}, n.readFlags(r), 0
}

// openReplaced opens n, at path p, with O_TRUNC: the file becomes a new,
// empty version at the same inode, held by the handle for writing, as
// HDFS's create(overwrite). Another handle of this mount that has written
// to it, or another client writing it, makes it EBUSY. With O_RDONLY the
// new version is closed at once and opened for reading.
func (n *node) openReplaced(ctx context.Context, p string, flags uint32, fi cairn.FileInfo) (fs.FileHandle, uint32, syscall.Errno) {
	if n.fsys.readOnly {
		return nil, 0, syscall.EROFS
	}
	if !n.fsys.b.canReplace() {
		return nil, 0, n.fsys.refuse(p, ruleReplace, syscall.EPERM)
	}
	write := flags&syscall.O_ACCMODE != syscall.O_RDONLY
	h := &handle{n: n, writable: true, append: flags&syscall.O_APPEND != 0, opener: callerProcess(ctx)}
	h.mu.Lock()
	e := h.replace(ctx, p, fi.Mode.Perm())
	if e == 0 && !write {
		if err := h.closeWriter(); err != nil {
			e = errno(err)
		}
	}
	h.mu.Unlock()
	if e != 0 {
		return nil, 0, e
	}
	if write {
		n.opened()
		return h, h.openFlags(), 0
	}
	r, err := n.fsys.b.Open(ctx, p)
	if err != nil {
		return nil, 0, errno(err)
	}
	n.opened()
	return &handle{n: n, readers: []*fileReader{{FileReader: r}}}, 0, 0
}

// truncateToZero replaces n whole (truncate(2) or ftruncate(2) to 0 of a
// non-empty file). Through f, a handle open for writing, the handle
// holds the new version (closing what it wrote before: its own bytes are
// no obstacle); otherwise the new, empty version is closed at once.
func (n *node) truncateToZero(ctx context.Context, f fs.FileHandle, fi cairn.FileInfo) syscall.Errno {
	if n.fsys.readOnly {
		return syscall.EROFS
	}
	p, ok := n.path()
	if !ok {
		return syscall.ENOENT
	}
	if !n.fsys.b.canReplace() {
		return n.fsys.refuse(p, ruleReplace, syscall.EPERM)
	}
	if h, ok := f.(*handle); ok && h.writable {
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.w != nil && !h.closed {
			if err := h.closeWriter(); err != nil {
				return errno(err)
			}
		}
		return h.replace(ctx, p, fi.Mode.Perm())
	}
	t := &handle{n: n, writable: true}
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.replace(ctx, p, fi.Mode.Perm()); e != 0 {
		return e
	}
	return errno(t.closeWriter())
}

var _ = (fs.NodeUnlinker)((*node)(nil))

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	if n.fsys.readOnly {
		return syscall.EROFS
	}
	ctx, cancel := mutating(ctx)
	defer cancel()
	if ch := n.GetChild(name); ch != nil {
		if c, ok := ch.Operations().(*node); ok {
			c.mu.Lock()
			open := c.opens > 0
			c.mu.Unlock()
			if open {
				return n.unlinkOpen(ctx, name, c)
			}
		}
	}
	return n.remove(ctx, name)
}

// unlinkOpen unlinks c, a file open through this mount, keeping its data
// for the open handles until the last is released.
func (n *node) unlinkOpen(ctx context.Context, name string, c *node) syscall.Errno {
	p, e := n.childPath(name)
	if e != 0 {
		return e
	}
	kept, err := n.fsys.b.UnlinkOpen(ctx, p)
	if err != nil {
		return errno(err)
	}
	c.mu.Lock()
	if c.opens > 0 {
		c.held = kept
		c.mu.Unlock()
		return 0
	}
	c.mu.Unlock()
	// The last handle went meanwhile.
	if kept {
		c.opens++
		c.released(ctx)
	}
	return 0
}

var _ = (fs.NodeRmdirer)((*node)(nil))

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	return n.remove(ctx, name)
}

func (n *node) remove(ctx context.Context, name string) syscall.Errno {
	if n.fsys.readOnly {
		return syscall.EROFS
	}
	p, e := n.childPath(name)
	if e != 0 {
		return e
	}
	ctx, cancel := mutating(ctx)
	defer cancel()
	return errno(n.fsys.b.Delete(ctx, p, false))
}

var _ = (fs.NodeLinker)((*node)(nil))

// Link gives the file target another name in n (a hard link): one inode,
// one node, whatever name it is reached by.
func (n *node) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if n.fsys.readOnly {
		return nil, syscall.EROFS
	}
	p, e := n.childPath(name)
	if e != 0 {
		return nil, e
	}
	t, ok := target.(*node)
	if !ok {
		return nil, syscall.EXDEV
	}
	src, ok := t.path()
	if !ok {
		return nil, syscall.ENOENT
	}
	if !n.fsys.b.canLink() {
		return nil, n.fsys.refuse(p, ruleLink, syscall.EPERM)
	}
	ctx, cancel := mutating(ctx)
	defer cancel()
	if err := n.fsys.b.Link(ctx, src, p); err != nil {
		return nil, errno(err)
	}
	fi, err := n.fsys.b.Stat(ctx, p)
	if err != nil {
		return nil, errno(err)
	}
	if local, writing := t.snapshot(); writing {
		fi.Size = local.Size
	} else {
		t.setInfo(fi)
	}
	t.fillEntry(out)
	out.Attr.Nlink = uint32(max(fi.Nlink, 1))
	return t.EmbeddedInode(), 0
}

var _ = (fs.NodeRenamer)((*node)(nil))

// Rename moves a file or directory, also over an existing file.
// RENAME_NOREPLACE is honored by a check just before the rename;
// RENAME_EXCHANGE and other flags get EINVAL.
func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if n.fsys.readOnly {
		return syscall.EROFS
	}
	np, ok := newParent.(*node)
	if !ok {
		return syscall.EXDEV
	}
	src, e := n.childPath(name)
	if e != 0 {
		return e
	}
	dst, e := np.childPath(newName)
	if e != 0 {
		return e
	}
	switch {
	case flags&fs.RENAME_EXCHANGE != 0:
		return n.fsys.refuse(src, ruleExchange, syscall.EINVAL)
	case flags&^renameNoReplace != 0:
		return n.fsys.refuse(src, ruleRenameFlags, syscall.EINVAL)
	case flags&renameNoReplace != 0:
		_, err := n.fsys.b.Stat(ctx, dst)
		if err == nil {
			return syscall.EEXIST
		}
		if cairn.KindOf(err) != cairn.KindNotExist {
			return errno(err)
		}
	}
	ctx, cancel := mutating(ctx)
	defer cancel()
	return errno(n.fsys.b.Rename(ctx, src, dst))
}

var _ = (fs.NodeStatfser)((*node)(nil))

// Statfs reports the cluster's capacity in blocks of 4096 bytes.
func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	st, err := n.fsys.b.Statfs(ctx)
	if err != nil {
		return errno(err)
	}
	out.Bsize = statfsBlock
	out.Frsize = statfsBlock
	out.Blocks = uint64(max(st.Capacity, 0)) / statfsBlock
	out.Bfree = uint64(max(st.Remaining, 0)) / statfsBlock
	out.Bavail = out.Bfree
	out.Ffree = freeInodes
	out.Files = uint64(max(st.Files, 0)) + freeInodes
	out.NameLen = cairn.MaxNameLen
	return 0
}
