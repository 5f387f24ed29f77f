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
// kernel's times that come with it are dropped. Times set while this mount writes the file
// are shown at once and stored when it is closed.
func (n *node) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	fi, local, e := n.refresh(ctx)
	if e != 0 {
		return e
	}
	size, sizeSet := in.GetSize()
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
	if t, ok := in.GetMTime(); ok && !sizeSet {
		a.ModTime = &t
	}
	if t, ok := in.GetATime(); ok && !sizeSet {
		a.AccessTime = &t
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
func (n *node) applyTimes(t *pendingTimes) {
	p, ok := n.path()
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), applyTimeout)
	defer cancel()
	if t.hasID {
		ctx = cairn.WithIdentity(ctx, t.id)
	}
	fi, err := n.fsys.b.SetAttr(ctx, p, cairn.Attr{ModTime: t.mtime, AccessTime: t.atime})
	if err != nil {
		n.fsys.log.Warn("times set while writing not stored", zap.String("path", p), zap.Error(err))
		return
	}
	n.setInfo(fi)
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
// only, or an empty regular file. A device number is not kept (the
// namespace has no place for it): a device node shows 0:0 and cannot be
// opened. A fifo is opened by the kernel itself, as a pipe between
// processes of this machine: its bytes never reach cairn.
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
	if err := n.fsys.b.Mknod(ctx, p, m); err != nil {
		return nil, errno(err)
	}
	if dev != 0 {
		n.fsys.log.Info("device number not kept", zap.String("path", p), zap.Uint32("major", unix.Major(uint64(dev))), zap.Uint32("minor", unix.Minor(uint64(dev))))
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
