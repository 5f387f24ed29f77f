package mount

import (
	"context"
	"strings"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"golang.org/x/sys/unix"

	"cairn"
)

// Extended attributes: the user.* namespace is stored at metad. Nothing
// else is kept: setting or removing another namespace's attribute is
// refused with ENOTSUP; reading one finds nothing in security.* (ENODATA,
// as for a file with no label; go-fuse answers security.capability, which
// the kernel asks for before writes, and the POSIX ACL names, without
// calling the mount) and is not supported elsewhere (ENOTSUP).

const xattrUser = "user."

// otherXattr is the answer to reading attribute name outside user.*.
func (n *node) otherXattr(name string) syscall.Errno {
	if strings.HasPrefix(name, "security.") {
		return syscall.ENODATA
	}
	return n.fsys.refuse(n.logPath(), ruleXattrNS, syscall.ENOTSUP)
}

// xattrPath is the node's path for an attribute call.
func (n *node) xattrPath() (string, syscall.Errno) {
	p, ok := n.path()
	if !ok {
		return "", syscall.ENOENT
	}
	return p, 0
}

var _ = (fs.NodeGetxattrer)((*node)(nil))

func (n *node) Getxattr(ctx context.Context, name string, dest []byte) (uint32, syscall.Errno) {
	if !strings.HasPrefix(name, xattrUser) {
		return 0, n.otherXattr(name)
	}
	p, e := n.xattrPath()
	if e != 0 {
		return 0, e
	}
	v, err := n.fsys.b.GetXattr(ctx, p, name)
	if err != nil {
		return 0, xattrErrno(err)
	}
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

var _ = (fs.NodeListxattrer)((*node)(nil))

func (n *node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	p, e := n.xattrPath()
	if e != 0 {
		return 0, e
	}
	names, err := n.fsys.b.ListXattrs(ctx, p)
	if err != nil {
		return 0, xattrErrno(err)
	}
	var list []byte
	for _, name := range names {
		if strings.HasPrefix(name, xattrUser) {
			list = append(append(list, name...), 0)
		}
	}
	if len(dest) < len(list) {
		return uint32(len(list)), syscall.ERANGE
	}
	return uint32(copy(dest, list)), 0
}

var _ = (fs.NodeSetxattrer)((*node)(nil))

// Setxattr stores a user.* attribute, honouring XATTR_CREATE (EEXIST if
// it exists) and XATTR_REPLACE (ENODATA if it does not).
func (n *node) Setxattr(ctx context.Context, name string, value []byte, flags uint32) syscall.Errno {
	if n.fsys.readOnly {
		return syscall.EROFS
	}
	p, e := n.xattrPath()
	if e != 0 {
		return e
	}
	if !strings.HasPrefix(name, xattrUser) {
		return n.fsys.refuse(p, ruleXattrNS, syscall.ENOTSUP)
	}
	if flags&^(unix.XATTR_CREATE|unix.XATTR_REPLACE) != 0 {
		return syscall.EINVAL
	}
	var f cairn.XattrFlags
	if flags&unix.XATTR_CREATE != 0 {
		f |= cairn.XattrCreate
	}
	if flags&unix.XATTR_REPLACE != 0 {
		f |= cairn.XattrReplace
	}
	ctx, cancel := mutating(ctx)
	defer cancel()
	return xattrErrno(n.fsys.b.SetXattr(ctx, p, name, value, f))
}

var _ = (fs.NodeRemovexattrer)((*node)(nil))

func (n *node) Removexattr(ctx context.Context, name string) syscall.Errno {
	if n.fsys.readOnly {
		return syscall.EROFS
	}
	p, e := n.xattrPath()
	if e != 0 {
		return e
	}
	if !strings.HasPrefix(name, xattrUser) {
		return n.fsys.refuse(p, ruleXattrNS, syscall.ENOTSUP)
	}
	ctx, cancel := mutating(ctx)
	defer cancel()
	return xattrErrno(n.fsys.b.RemoveXattr(ctx, p, name))
}
