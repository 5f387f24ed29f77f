package mount

import (
	"context"
	"errors"
	"os"

	"cairn"
	"cairn/client"
)

// Backend is what the mount needs from a cairn cluster. The namespace
// calls mean what their namesakes in cairn.Namespace mean; file bytes go
// through a FileWriter or a FileReader.
type Backend interface {
	// Stat describes path (a symlink itself, not its target).
	Stat(ctx context.Context, path string) (cairn.FileInfo, error)
	// List returns up to limit entries of directory path whose names sort
	// after `after`, in name order, and whether more follow.
	List(ctx context.Context, path, after string, limit int) ([]cairn.FileInfo, bool, error)
	// Mkdir creates one directory: ErrExist if path exists, ErrNotExist if
	// the parent does not.
	Mkdir(ctx context.Context, path string, perm os.FileMode) error
	// Delete removes path; a non-empty directory needs recursive.
	Delete(ctx context.Context, path string, recursive bool) error
	// Rename moves src to dst atomically, replacing a file at dst.
	Rename(ctx context.Context, src, dst string) error
	// Statfs returns the cluster's capacity.
	Statfs(ctx context.Context) (cairn.FsStats, error)
	// Create makes a new empty file and returns its writer: ErrExist if
	// path exists, ErrNotExist if the parent does not.
	Create(ctx context.Context, path string, perm os.FileMode) (FileWriter, error)
	// Open opens an existing file for reading.
	Open(ctx context.Context, path string) (FileReader, error)

	// SetAttr changes the attributes a sets (mode, owner, group, times)
	// and returns the result.
	SetAttr(ctx context.Context, path string, a cairn.Attr) (cairn.FileInfo, error)
	// Symlink creates path as a symbolic link to target, kept as text.
	Symlink(ctx context.Context, target, path string) error
	// Mknod creates a fifo, socket or device node (type and permission
	// bits of mode; rdev, a device's number as Linux's dev_t), kept as
	// metadata only.
	Mknod(ctx context.Context, path string, mode os.FileMode, rdev uint64) error
	// SetXattr sets attribute name of path to value: with XattrCreate
	// ErrExist if it exists, with XattrReplace ErrNotExist if it does not.
	SetXattr(ctx context.Context, path, name string, value []byte, flags cairn.XattrFlags) error
	// GetXattr returns attribute name of path; ErrNotExist if it has none.
	GetXattr(ctx context.Context, path, name string) ([]byte, error)
	// ListXattrs returns the names of path's attributes.
	ListXattrs(ctx context.Context, path string) ([]string, error)
	// RemoveXattr removes attribute name; ErrNotExist if it has none.
	RemoveXattr(ctx context.Context, path, name string) error
}

// FileWriter writes a new file sequentially.
type FileWriter interface {
	// Write appends p to the file.
	Write(p []byte) (int, error)
	// Size is the number of bytes accepted so far.
	Size() int64
	// Close finishes the file; its error is what close(2) reports.
	Close() error
}

// FileReader reads a file at any offset.
type FileReader interface {
	// ReadAt reads len(p) bytes at off, as io.ReaderAt: fewer only with
	// io.EOF, when the read reached the end of the file, or with another
	// error, when it failed (the bytes before it are good, but the read
	// is not).
	ReadAt(p []byte, off int64) (int, error)
	// Size is the file's length when it was opened.
	Size() int64
	Close() error
}

// appender is a Backend that can reopen a complete file to write at its
// end; without it every write to an existing file is refused.
type appender interface {
	Append(ctx context.Context, path string) (FileWriter, error)
}

// replacer is a Backend that can replace a file whole: a new, empty
// version at the same inode, returned open for writing (O_TRUNC,
// truncate to 0); without it those are refused on a non-empty file.
type replacer interface {
	Replace(ctx context.Context, path string, perm os.FileMode) (FileWriter, error)
}

// linker is a Backend that can give a file another name (a hard link);
// without it link(2) is refused.
type linker interface {
	Link(ctx context.Context, src, dst string) error
}

// versioned is a FileReader that can tell whether another reader reads
// the same version of its file (not one replaced since, see replacer).
type versioned interface {
	SameVersion(other FileReader) bool
}

// openUnlinker is a Backend that can unlink a file this mount has open and
// keep its data until the mount releases it, as POSIX keeps an unlinked
// file until its last close; without it such an unlink frees the file at
// once and the open handles fail.
type openUnlinker interface {
	// UnlinkOpen removes path's name and holds its data for this mount.
	UnlinkOpen(ctx context.Context, path string) error
	// ReleaseUnlinked ends the hold on the unlinked file fileID.
	ReleaseUnlinked(ctx context.Context, fileID uint64) error
}

// accessChecker is a Backend that can check the caller's permission on a
// file as it describes it (cairn.Paths.Access), so open(2) for writing
// is refused with EACCES at open; without it the refusal comes at the
// first write.
type accessChecker interface {
	Access(ctx context.Context, path string, want cairn.AccessMode) (cairn.FileInfo, error)
}

// syncer is a FileWriter that can make what it accepted durable without
// closing the file; fsync(2) needs it.
type syncer interface {
	Sync() error
}

// flusher is a FileWriter that can make what it accepted visible to new
// readers without closing the file (hflush); a read through this mount of
// bytes its own writer holds uses it.
type flusher interface {
	Flush() error
}

// infoer is a FileWriter that knows the file it writes as the Backend
// created it; the mount then needs no Stat after a Create.
type infoer interface {
	Info() cairn.FileInfo
}

// createdInfo describes the file w was just created at path: as w knows it,
// or else from a Stat.
func createdInfo(ctx context.Context, b Backend, w FileWriter, path string) (cairn.FileInfo, error) {
	if i, ok := w.(infoer); ok {
		if fi := i.Info(); fi.Inode != 0 {
			return fi, nil
		}
	}
	return b.Stat(ctx, path)
}

// ClientBackend is the Backend of a real cluster, reached through c. It
// can also append to complete files, and its writers can sync.
func ClientBackend(c *client.Client) Backend { return clientBackend{c} }

var (
	_ appender      = clientBackend{}
	_ replacer      = clientBackend{}
	_ linker        = clientBackend{}
	_ versioned     = clientReader{}
	_ openUnlinker  = clientBackend{}
	_ accessChecker = clientBackend{}
	_ syncer        = (*client.Writer)(nil)
	_ flusher       = (*client.Writer)(nil)
	_ infoer        = (*client.Writer)(nil)
)

type clientBackend struct{ c *client.Client }

func (b clientBackend) Stat(ctx context.Context, path string) (cairn.FileInfo, error) {
	return b.c.NS.Stat(ctx, path)
}

func (b clientBackend) List(ctx context.Context, path, after string, limit int) ([]cairn.FileInfo, bool, error) {
	return b.c.NS.List(ctx, path, after, limit)
}

func (b clientBackend) Mkdir(ctx context.Context, path string, perm os.FileMode) error {
	return b.c.NS.Mkdir(ctx, path, perm)
}

func (b clientBackend) Delete(ctx context.Context, path string, recursive bool) error {
	return b.c.NS.Delete(ctx, path, recursive)
}

func (b clientBackend) UnlinkOpen(ctx context.Context, path string) error {
	return b.c.UnlinkOpen(ctx, path)
}

func (b clientBackend) ReleaseUnlinked(ctx context.Context, fileID uint64) error {
	return b.c.ReleaseUnlinked(ctx, fileID)
}

func (b clientBackend) Rename(ctx context.Context, src, dst string) error {
	return b.c.NS.Rename(ctx, src, dst)
}

func (b clientBackend) Statfs(ctx context.Context) (cairn.FsStats, error) {
	return b.c.NS.Statfs(ctx)
}

// Create makes the file closed (client.CreateClosed): a file created and
// closed without a write costs one synced write at metad, and its writer
// takes the lease with its first block.
func (b clientBackend) Create(ctx context.Context, path string, perm os.FileMode) (FileWriter, error) {
	w, err := b.c.CreateClosed(ctx, path, perm)
	if err != nil {
		return nil, err
	}
	return w, nil
}

func (b clientBackend) Append(ctx context.Context, path string) (FileWriter, error) {
	w, err := b.c.Append(ctx, path)
	if err != nil {
		return nil, err
	}
	return w, nil
}

func (b clientBackend) Replace(ctx context.Context, path string, perm os.FileMode) (FileWriter, error) {
	w, err := b.c.Replace(ctx, path, perm)
	if err != nil {
		return nil, err
	}
	return w, nil
}

func (b clientBackend) Link(ctx context.Context, src, dst string) error {
	return b.c.NS.Link(ctx, src, dst)
}

func (b clientBackend) SetAttr(ctx context.Context, path string, a cairn.Attr) (cairn.FileInfo, error) {
	return b.c.NS.SetAttr(ctx, path, a)
}

func (b clientBackend) Symlink(ctx context.Context, target, path string) error {
	return b.c.NS.Symlink(ctx, target, path)
}

func (b clientBackend) Mknod(ctx context.Context, path string, mode os.FileMode, rdev uint64) error {
	return b.c.NS.Mknod(ctx, path, mode, rdev)
}

func (b clientBackend) Access(ctx context.Context, path string, want cairn.AccessMode) (cairn.FileInfo, error) {
	return b.c.NS.Access(ctx, path, want)
}

func (b clientBackend) SetXattr(ctx context.Context, path, name string, value []byte, flags cairn.XattrFlags) error {
	return b.c.NS.SetXattr(ctx, path, name, value, flags)
}

func (b clientBackend) GetXattr(ctx context.Context, path, name string) ([]byte, error) {
	return b.c.NS.GetXattr(ctx, path, name)
}

func (b clientBackend) ListXattrs(ctx context.Context, path string) ([]string, error) {
	return b.c.NS.ListXattrs(ctx, path)
}

func (b clientBackend) RemoveXattr(ctx context.Context, path, name string) error {
	return b.c.NS.RemoveXattr(ctx, path, name)
}

func (b clientBackend) Open(ctx context.Context, path string) (FileReader, error) {
	r, err := b.c.Open(ctx, path)
	if err != nil {
		return nil, err
	}
	return clientReader{r}, nil
}

// clientReader is a client.Reader that knows its file's version.
type clientReader struct{ *client.Reader }

func (r clientReader) SameVersion(other FileReader) bool {
	o, ok := other.(clientReader)
	return !ok || client.SameVersion(r.Blocks(), o.Blocks())
}

// callerBackend is the Backend as the nodes see it: every call carries
// the identity of the process whose request it serves (idMap.as), and
// every refusal the backend answers — by metad's permission checks or
// its rules — logs one line naming the path and metad's reason.
type callerBackend struct {
	b    Backend
	fsys *fsys
}

var (
	_ Backend  = callerBackend{}
	_ appender = callerBackend{}
)

func (c callerBackend) as(ctx context.Context) context.Context { return c.fsys.ids.as(ctx) }

// check logs err if it is a refusal and returns it.
func (c callerBackend) check(path string, err error) error {
	if k := cairn.KindOf(err); k == cairn.KindPermission || k == cairn.KindAccess {
		reason := err.Error()
		var ce *cairn.Error
		if errors.As(err, &ce) && ce.Detail != "" {
			reason = ce.Detail
		}
		c.fsys.refuse(path, reason, errno(err))
	}
	return err
}

func (c callerBackend) Stat(ctx context.Context, path string) (cairn.FileInfo, error) {
	ctx, cancel := lookingUp(ctx)
	defer cancel()
	fi, err := c.b.Stat(c.as(ctx), path)
	return fi, c.check(path, err)
}

func (c callerBackend) List(ctx context.Context, path, after string, limit int) ([]cairn.FileInfo, bool, error) {
	ctx, cancel := lookingUp(ctx)
	defer cancel()
	es, more, err := c.b.List(c.as(ctx), path, after, limit)
	return es, more, c.check(path, err)
}

func (c callerBackend) Mkdir(ctx context.Context, path string, perm os.FileMode) error {
	return c.check(path, c.b.Mkdir(c.as(ctx), path, perm))
}

func (c callerBackend) Delete(ctx context.Context, path string, recursive bool) error {
	return c.check(path, c.b.Delete(c.as(ctx), path, recursive))
}

func (c callerBackend) Rename(ctx context.Context, src, dst string) error {
	return c.check(src, c.b.Rename(c.as(ctx), src, dst))
}

func (c callerBackend) Statfs(ctx context.Context) (cairn.FsStats, error) {
	ctx, cancel := lookingUp(ctx)
	defer cancel()
	st, err := c.b.Statfs(c.as(ctx))
	return st, c.check(c.fsys.root, err)
}

func (c callerBackend) Create(ctx context.Context, path string, perm os.FileMode) (FileWriter, error) {
	w, err := c.b.Create(c.as(ctx), path, perm)
	return w, c.check(path, err)
}

func (c callerBackend) Open(ctx context.Context, path string) (FileReader, error) {
	r, err := c.b.Open(c.as(ctx), path)
	return r, c.check(path, err)
}

// Append reopens a file if the backend can; callers find out with
// canAppend first.
func (c callerBackend) Append(ctx context.Context, path string) (FileWriter, error) {
	a, ok := c.b.(appender)
	if !ok {
		return nil, cairn.E("mount.Append", cairn.KindPermission, path, ruleAppendClosed)
	}
	w, err := a.Append(c.as(ctx), path)
	return w, c.check(path, err)
}

// UnlinkOpen unlinks path, open through this mount, keeping its data if the
// backend can (openUnlinker), else deleting it.
func (c callerBackend) UnlinkOpen(ctx context.Context, path string) (kept bool, err error) {
	u, ok := c.b.(openUnlinker)
	if !ok {
		return false, c.Delete(ctx, path, false)
	}
	return true, c.check(path, u.UnlinkOpen(c.as(ctx), path))
}

// ReleaseUnlinked ends the hold UnlinkOpen took.
func (c callerBackend) ReleaseUnlinked(ctx context.Context, fileID uint64) error {
	if u, ok := c.b.(openUnlinker); ok {
		return u.ReleaseUnlinked(ctx, fileID)
	}
	return nil
}

// Replace replaces path whole if the backend can; callers find out with
// canReplace first.
func (c callerBackend) Replace(ctx context.Context, path string, perm os.FileMode) (FileWriter, error) {
	r, ok := c.b.(replacer)
	if !ok {
		return nil, cairn.E("mount.Replace", cairn.KindPermission, path, ruleTruncate)
	}
	w, err := r.Replace(c.as(ctx), path, perm)
	return w, c.check(path, err)
}

func (c callerBackend) canReplace() bool {
	_, ok := c.b.(replacer)
	return ok
}

// Link gives src another name, dst, if the backend can.
func (c callerBackend) Link(ctx context.Context, src, dst string) error {
	l, ok := c.b.(linker)
	if !ok {
		return cairn.E("mount.Link", cairn.KindPermission, dst, ruleLink)
	}
	return c.check(dst, l.Link(c.as(ctx), src, dst))
}

func (c callerBackend) canLink() bool {
	_, ok := c.b.(linker)
	return ok
}

func (c callerBackend) canAppend() bool {
	_, ok := c.b.(appender)
	return ok
}

func (c callerBackend) SetAttr(ctx context.Context, path string, a cairn.Attr) (cairn.FileInfo, error) {
	fi, err := c.b.SetAttr(c.as(ctx), path, a)
	return fi, c.check(path, err)
}

func (c callerBackend) Symlink(ctx context.Context, target, path string) error {
	return c.check(path, c.b.Symlink(c.as(ctx), target, path))
}

func (c callerBackend) Mknod(ctx context.Context, path string, mode os.FileMode, rdev uint64) error {
	return c.check(path, c.b.Mknod(c.as(ctx), path, mode, rdev))
}

// Access checks the caller's permission if the backend can
// (accessChecker), else only describes path.
func (c callerBackend) Access(ctx context.Context, path string, want cairn.AccessMode) (cairn.FileInfo, error) {
	a, ok := c.b.(accessChecker)
	if !ok {
		return c.Stat(ctx, path)
	}
	ctx, cancel := lookingUp(ctx)
	defer cancel()
	fi, err := a.Access(c.as(ctx), path, want)
	return fi, c.check(path, err)
}

func (c callerBackend) SetXattr(ctx context.Context, path, name string, value []byte, flags cairn.XattrFlags) error {
	return c.check(path, c.b.SetXattr(c.as(ctx), path, name, value, flags))
}

func (c callerBackend) GetXattr(ctx context.Context, path, name string) ([]byte, error) {
	ctx, cancel := lookingUp(ctx)
	defer cancel()
	v, err := c.b.GetXattr(c.as(ctx), path, name)
	return v, c.check(path, err)
}

func (c callerBackend) ListXattrs(ctx context.Context, path string) ([]string, error) {
	ctx, cancel := lookingUp(ctx)
	defer cancel()
	names, err := c.b.ListXattrs(c.as(ctx), path)
	return names, c.check(path, err)
}

func (c callerBackend) RemoveXattr(ctx context.Context, path, name string) error {
	return c.check(path, c.b.RemoveXattr(c.as(ctx), path, name))
}
