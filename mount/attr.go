package mount

import (
	"context"
	"os"
	"slices"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"cairn"
)

// Attributes, symbolic links and special files: stored at metad, which
// decides who may change what (HDFS's permission model); the mount only
// translates. Setattr's size is the exception, checked here by the
// write-once rules.

// applyTimeout bounds applying times deferred until a file was closed.
const applyTimeout = 30 * time.Second

// permOf converts st_mode permission bits (with setuid, setgid and
// sticky) to a Go file mode.
func permOf(mode uint32) os.FileMode {
	m := os.FileMode(mode & 0o777)
	if mode&syscall.S_ISUID != 0 {
		m |= os.ModeSetuid
	}
	if mode&syscall.S_ISGID != 0 {
		m |= os.ModeSetgid
	}
	if mode&syscall.S_ISVTX != 0 {
		m |= os.ModeSticky
	}
	return m
}

// pendingTimes are times set on a file while this mount writes it. The
// backend's close sets the modification time, so they are applied after
// it, as the caller who set them (cp -p and touch -d set times on the
// descriptor they write through, before closing it).
type pendingTimes struct {
	mtime, atime *time.Time
	id           cairn.Identity
	hasID        bool
}

var _ = (fs.NodeSetattrer)((*node)(nil))

// Setattr changes mode, owner, group and times at the backend. A size
// must be the current one, or 0, which replaces the file whole
// (truncateToZero): any other is refused by the write-once rules, and the
// kernel's times that come with it are dropped; truncate(2) by path needs
// write permission first (EACCES). Times set while this mount writes the
// file are shown at once and stored when it is closed; both set to now
// (touch) are metad's to stamp, as the owner or anyone who may write the
// file.
func (n *node) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	size, sizeSet := in.GetSize()
	get := n.refresh
	if sizeSet && f == nil {
		get = func(ctx context.Context) (cairn.FileInfo, bool, syscall.Errno) {
			return n.checkAccess(ctx, cairn.AccessWrite)
		}
	}
	fi, local, e := get(ctx)
	if e != 0 {
		return e
	}
	if sizeSet {
		if fi.IsDir() {
			return syscall.EISDIR
		}
		switch {
		case int64(size) == fi.Size:
		case size == 0: // a new, empty version
			if e := n.truncateToZero(ctx, f, fi); e != 0 {
				return e
			}
		default:
			return n.fsys.refuse(n.logPath(), ruleTruncate, syscall.EPERM)
		}
	}
	var a cairn.Attr
	if mode, ok := in.GetMode(); ok {
		perm := permOf(mode)
		a.Perm = &perm
	}
	if uid, ok := in.GetUID(); ok {
		owner := n.fsys.ids.userName(uid)
		a.Owner = &owner
	}
	if gid, ok := in.GetGID(); ok {
		group := n.fsys.ids.groupName(gid)
		a.Group = &group
	}
	// The times that come with a size are the kernel's own, for a
	// truncate that changes nothing here.
	const bothNow = fuse.FATTR_ATIME | fuse.FATTR_MTIME | fuse.FATTR_ATIME_NOW | fuse.FATTR_MTIME_NOW
	if in.Valid&bothNow == bothNow && !sizeSet {
		a.TimesNow = true
	} else {
		if t, ok := in.GetMTime(); ok && !sizeSet {
			a.ModTime = &t
		}
		if t, ok := in.GetATime(); ok && !sizeSet {
			a.AccessTime = &t
		}
	}
	if a != (cairn.Attr{}) && n.fsys.readOnly {
		return syscall.EROFS
	}
	if local && (a.ModTime != nil || a.AccessTime != nil) && n.deferTimes(ctx, a.ModTime, a.AccessTime) {
		a.ModTime, a.AccessTime = nil, nil
	}
	if a != (cairn.Attr{}) {
		p, ok := n.path()
		if !ok {
			return syscall.ENOENT
		}
		mctx, cancel := mutating(ctx)
		defer cancel()
		nfi, err := n.fsys.b.SetAttr(mctx, p, a)
		if err != nil {
			return errno(err)
		}
		n.setInfo(nfi)
	}
	fi, local = n.snapshot()
	n.fsys.fillAttr(fi, &out.Attr)
	if !local && !fi.Writing {
		out.SetTimeout(attrTimeout)
	}
	return 0
}

// deferTimes keeps times set while this mount writes the file, and
// reports whether it still does.
func (n *node) deferTimes(ctx context.Context, mtime, atime *time.Time) bool {
	id, hasID := cairn.IdentityFrom(n.fsys.ids.as(ctx))
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.writer == nil {
		return false
	}
	if n.times == nil {
		n.times = &pendingTimes{}
	}
	if mtime != nil {
		n.times.mtime = mtime
	}
	if atime != nil {
		n.times.atime = atime
	}
	n.times.id, n.times.hasID = id, hasID
	return true
}

// applyTimes stores times deferred while the file was written, once its
// writer is closed; a failure is logged, as close(2) has returned.
//
// The file may be renamed meanwhile (rsync sets the times of its
// temporary file, renames it and closes it, and the kernel sends the
// close after the rename): metad has the new name before this mount's
// tree does, which moves the node only once the rename's call returns.
// So a path metad no longer knows is asked again once the node's path
// changes, for at most renameSettle.
func (n *node) applyTimes(t *pendingTimes) {
	ctx, cancel := context.WithTimeout(context.Background(), applyTimeout)
	defer cancel()
	if t.hasID {
		ctx = cairn.WithIdentity(ctx, t.id)
	}
	settle := time.Now().Add(renameSettle)
	for {
		p, ok := n.path()
		if !ok {
			return
		}
		fi, err := n.fsys.b.SetAttr(ctx, p, cairn.Attr{ModTime: t.mtime, AccessTime: t.atime})
		if err == nil {
			n.setInfo(fi)
			return
		}
		if cairn.KindOf(err) != cairn.KindNotExist || !n.pathChanges(p, settle) {
			n.fsys.log.Warn("times set while writing not stored", zap.String("path", p), zap.Error(err))
			return
		}
	}
}

// renameSettle bounds the wait for a rename that metad made to reach
// this mount's tree.
const renameSettle = time.Second

// pathChanges waits until the node's path is no longer p, or deadline,
// and reports whether it changed.
func (n *node) pathChanges(p string, deadline time.Time) bool {
	for time.Now().Before(deadline) {
		if q, ok := n.path(); !ok || q != p {
			return ok
		}
		time.Sleep(5 * time.Millisecond)
	}
	return false
}

// checkAccess is refresh for a call that needs want on the node, as
// open(2) for writing and truncate(2) check before anything else: metad
// answers both in one call. A node unlinked while open is only
// refreshed.
func (n *node) checkAccess(ctx context.Context, want cairn.AccessMode) (cairn.FileInfo, bool, syscall.Errno) {
	p, ok := n.path()
	if !ok {
		return n.refresh(ctx)
	}
	fi, err := n.fsys.b.Access(ctx, p, want)
	if err != nil {
		return cairn.FileInfo{}, false, errno(err)
	}
	if _, local := n.snapshot(); !local {
		n.setInfo(fi)
	}
	fi, local := n.snapshot()
	return fi, local, 0
}

// nlink is st_nlink: metad's count, or 2 for a directory and 1 for
// anything else from a backend that keeps none.
func nlink(fi cairn.FileInfo) uint32 {
	switch {
	case fi.Nlink > 0:
		return uint32(fi.Nlink)
	case fi.IsDir():
		return 2
	}
	return 1
}

// rdev is st_rdev: a device node's number in the kernel's 32-bit
// encoding (12 bits of major, 20 of minor, as Linux's dev_t has them).
func rdev(fi cairn.FileInfo) uint32 {
	if fi.Mode&os.ModeDevice == 0 {
		return 0
	}
	return uint32(unix.Mkdev(unix.Major(fi.Rdev), unix.Minor(fi.Rdev)))
}

// shownLen is the length of cairn path p as a program names it: from the
// mount's root, which may be a directory below cairn's.
func (f *fsys) shownLen(p string) int {
	if f.root == "/" {
		return len(p)
	}
	return len(p) - len(f.root)
}

var _ = (fs.NodeSymlinker)((*node)(nil))

func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if n.fsys.readOnly {
		return nil, syscall.EROFS
	}
	p, e := n.childPath(name)
	if e != 0 {
		return nil, e
	}
	ctx, cancel := mutating(ctx)
	defer cancel()
	if err := n.fsys.b.Symlink(ctx, target, p); err != nil {
		return nil, errno(err)
	}
	return n.lookupNew(ctx, name, p, out)
}

var _ = (fs.NodeMknoder)((*node)(nil))

// Mknod makes a fifo, socket or device node, kept at metad as metadata
// only, or an empty regular file. A device node keeps its number (stat
// shows it) but cannot be opened. A fifo is opened by the kernel itself,
// as a pipe between processes of this machine: its bytes never reach
// cairn.
func (n *node) Mknod(ctx context.Context, name string, mode uint32, dev uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if n.fsys.readOnly {
		return nil, syscall.EROFS
	}
	p, e := n.childPath(name)
	if e != 0 {
		return nil, e
	}
	m := permOf(mode)
	switch mode & syscall.S_IFMT {
	case syscall.S_IFIFO:
		m |= os.ModeNamedPipe
	case syscall.S_IFSOCK:
		m |= os.ModeSocket
	case syscall.S_IFCHR:
		m |= os.ModeDevice | os.ModeCharDevice
	case syscall.S_IFBLK:
		m |= os.ModeDevice
	case syscall.S_IFREG, 0:
	default:
		return nil, syscall.EINVAL
	}
	ctx, cancel := mutating(ctx)
	defer cancel()
	// The kernel's 32-bit encoding of the number, kept as dev_t.
	rdev := unix.Mkdev(unix.Major(uint64(dev)), unix.Minor(uint64(dev)))
	if err := n.fsys.b.Mknod(ctx, p, m, rdev); err != nil {
		return nil, errno(err)
	}
	return n.lookupNew(ctx, name, p, out)
}

// lookupNew answers the creation of entry name, at p, with its inode.
func (n *node) lookupNew(ctx context.Context, name, p string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	fi, err := n.fsys.b.Stat(ctx, p)
	if err != nil {
		return nil, errno(err)
	}
	return n.child(ctx, name, fi, out), 0
}

var _ = (fs.NodeAccesser)((*node)(nil))

// Access answers access(2), and the kernel's question before chdir,
// from the attributes metad keeps, by name as metad checks them: the
// owner's bits, else the group's for a member of it, else the others'.
// The local root may do anything but execute a file without an execute
// bit. It is an answer, not a refusal: metad decides every real call.
func (n *node) Access(ctx context.Context, mask uint32) syscall.Errno {
	fi, _, e := n.refresh(ctx)
	if e != 0 {
		return e
	}
	mask &= 7
	c, ok := fuse.FromContext(ctx)
	if mask == 0 || !ok {
		return 0
	}
	perm := uint32(fi.Mode.Perm())
	if c.Uid == 0 {
		if mask&1 == 0 || perm&0o111 != 0 || fi.IsDir() {
			return 0
		}
		return syscall.EACCES
	}
	id := n.fsys.ids.identity(c)
	var bits uint32
	switch {
	case fi.Owner == id.User, fi.Owner == "" && c.Uid == n.fsys.ids.uid:
		bits = perm >> 6
	case slices.Contains(id.Groups, fi.Group):
		bits = perm >> 3 & 7
	default:
		bits = perm & 7
	}
	if bits&mask != mask {
		return syscall.EACCES
	}
	return 0
}
