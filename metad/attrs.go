package metad

import (
	"context"
	"fmt"
	"io/fs"
	"strings"
	"unicode/utf8"

	"github.com/cockroachdb/pebble/v2"

	"cairn"
	"cairn/metad/metapb"
)

// Attributes, symbolic links, special files and extended attributes.

// SetAttr changes what a is not nil for, all or nothing. Permissions are
// Linux's: the owner (or a superuser) changes mode and times; a superuser
// changes the owner; the owner changes the group to one of its own groups;
// changing the replication needs write permission. A refusal for not
// owning is KindPermission (EPERM), one by mode bits KindAccess (EACCES).
func (m *Metad) SetAttr(ctx context.Context, path string, a cairn.Attr) (cairn.FileInfo, error) {
	const op = "metad.SetAttr"
	if err := cairn.ValidatePath(path); err != nil {
		return cairn.FileInfo{}, err
	}
	if a.Perm != nil && *a.Perm&^modeBits != 0 {
		return cairn.FileInfo{}, cairn.E(op, cairn.KindInvalid, path, fmt.Sprintf("mode %v has bits beyond permissions, setuid, setgid and sticky", *a.Perm))
	}
	for _, n := range []*string{a.Owner, a.Group} {
		if n != nil && !validName(*n) {
			return cairn.FileInfo{}, cairn.E(op, cairn.KindInvalid, path, fmt.Sprintf("%q is not a valid user or group name", *n))
		}
	}
	if a.Replication != nil && (*a.Replication < 1 || *a.Replication > maxReplication) {
		return cairn.FileInfo{}, cairn.E(op, cairn.KindInvalid, path, fmt.Sprintf("replication %d is outside 1..%d", *a.Replication, maxReplication))
	}
	c, err := m.callerOf(ctx, op)
	if err != nil {
		return cairn.FileInfo{}, err
	}
	if a == (cairn.Attr{}) {
		return m.Stat(ctx, path)
	}
	var fi cairn.FileInfo
	replChanged := false
	err = m.mutate(ctx, func(b *pebble.Batch) error {
		in, err := m.walk(op, path, c)
		if err != nil {
			return err
		}
		if err := checkSetAttr(op, path, c, in, a); err != nil {
			return err
		}
		mode := fs.FileMode(in.Mode)
		if a.Owner != nil || a.Group != nil {
			changed := false
			if a.Owner != nil && *a.Owner != in.Owner {
				in.Owner, changed = *a.Owner, true
			}
			if a.Group != nil && *a.Group != in.Group {
				in.Group, changed = *a.Group, true
			}
			if changed && !c.super && mode.IsRegular() {
				mode &^= fs.ModeSetuid | fs.ModeSetgid // as Linux's chown does
			}
		}
		if a.Perm != nil {
			mode = mode.Type() | *a.Perm
			if !c.super && mode&fs.ModeSetgid != 0 && !mode.IsDir() && !c.inGroup(in.Group) {
				mode &^= fs.ModeSetgid // as Linux's chmod does
			}
		}
		in.Mode = uint32(mode)
		if a.ModTime != nil {
			in.MtimeNs = a.ModTime.UnixNano()
		}
		if a.AccessTime != nil {
			in.AtimeNs = a.AccessTime.UnixNano()
		}
		now := m.clock.Now().UnixNano()
		if a.TimesNow {
			in.MtimeNs, in.AtimeNs = now, now
		}
		if a.Replication != nil && in.Replication != int32(*a.Replication) {
			in.Replication = int32(*a.Replication)
			replChanged = true
		}
		in.CtimeNs = now
		fi = m.infoAt(in, nameOf(path))
		return setInode(b, in)
	})
	if err == nil && replChanged {
		m.replChanged.Store(true) // once stored: the monitor reads the new factor
	}
	return fi, err
}

// checkSetAttr decides whether c may make the changes a asks of in, by
// Linux's rules (chown_ok, chgrp_ok and setattr_prepare in fs/attr.c,
// notify_change for times set to now).
func checkSetAttr(op, path string, c *caller, in *metapb.Inode, a cairn.Attr) error {
	refuse := func(what string) error {
		return cairn.E(op, cairn.KindPermission, path, fmt.Sprintf("user=%s: %s (owner %s)", c.user, what, in.Owner))
	}
	owner := in.Owner == c.user
	if a.Owner != nil && !c.super && (!owner || *a.Owner != in.Owner) {
		return refuse("only a superuser may change the owner")
	}
	if a.Group != nil && !c.super && (!owner || *a.Group != in.Group && !c.inGroup(*a.Group)) {
		return refuse(fmt.Sprintf("only the owner, to a group it is in, or a superuser may change the group to %s", *a.Group))
	}
	if a.Perm != nil && !c.owns(in) {
		return refuse("only the owner or a superuser may change the mode")
	}
	if (a.ModTime != nil || a.AccessTime != nil) && !a.TimesNow && !c.owns(in) {
		return refuse("only the owner or a superuser may set times other than now")
	}
	if a.TimesNow && !c.owns(in) {
		if err := c.check(op, path, in, accessWrite); err != nil {
			return err
		}
	}
	if a.Replication != nil {
		switch mode := fs.FileMode(in.Mode); {
		case mode.IsDir():
			return cairn.E(op, cairn.KindIsDir, path, "a directory has no replication")
		case !mode.IsRegular():
			return cairn.E(op, cairn.KindInvalid, path, fmt.Sprintf("a %v has no replication", mode.Type()))
		}
		return c.check(op, path, in, accessWrite)
	}
	return nil
}

// Symlink makes path a symbolic link to target, kept as text: any
// non-empty UTF-8 text without NUL, up to cairn.MaxPathLen bytes.
func (m *Metad) Symlink(ctx context.Context, target, path string) error {
	const op = "metad.Symlink"
	switch {
	case target == "":
		return cairn.E(op, cairn.KindInvalid, path, "empty symlink target")
	case len(target) > cairn.MaxPathLen:
		return cairn.E(op, cairn.KindInvalid, path, fmt.Sprintf("symlink target longer than %d bytes", cairn.MaxPathLen))
	case !utf8.ValidString(target) || strings.IndexByte(target, 0) >= 0:
		return cairn.E(op, cairn.KindInvalid, path, "symlink target is not UTF-8 text without NUL")
	}
	c, err := m.callerOf(ctx, op)
	if err != nil {
		return err
	}
	return m.mutate(ctx, func(b *pebble.Batch) error {
		parent, name, err := m.makeEntry(op, path, c)
		if err != nil {
			return err
		}
		_, err = m.newInode(b, parent, name, fs.ModeSymlink|0o777, c, func(in *metapb.Inode) {
			in.Symlink = target
			in.Size = int64(len(target))
		})
		return err
	})
}

// Mknod makes a fifo, a socket or a device node (superusers only, as
// mknod(2) needs CAP_MKNOD) of device number rdev, kept as metadata only;
// or, for a mode of no type, an empty closed regular file.
func (m *Metad) Mknod(ctx context.Context, path string, mode fs.FileMode, rdev uint64) error {
	const op = "metad.Mknod"
	if mode&^(modeBits|fs.ModeType|fs.ModeCharDevice) != 0 {
		return cairn.E(op, cairn.KindInvalid, path, fmt.Sprintf("mode %v has unknown bits", mode))
	}
	device := false
	switch mode.Type() {
	case 0, fs.ModeNamedPipe, fs.ModeSocket:
	case fs.ModeDevice, fs.ModeDevice | fs.ModeCharDevice:
		device = true
	default:
		return cairn.E(op, cairn.KindInvalid, path, fmt.Sprintf("mknod makes fifos, sockets, devices and regular files, not %v", mode.Type()))
	}
	c, err := m.callerOf(ctx, op)
	if err != nil {
		return err
	}
	if device && !c.super {
		return cairn.E(op, cairn.KindPermission, path, fmt.Sprintf("user=%s: only a superuser may make a device node", c.user))
	}
	return m.mutate(ctx, func(b *pebble.Batch) error {
		parent, name, err := m.makeEntry(op, path, c)
		if err != nil {
			return err
		}
		_, err = m.newInode(b, parent, name, mode, c, func(in *metapb.Inode) {
			if mode.IsRegular() {
				in.Replication = int32(m.cfg.Replication)
				in.BlockSize = m.cfg.BlockSize
			}
			if device {
				in.Rdev = rdev
			}
		})
		return err
	})
}

// Extended attributes: only the user.* namespace, on regular files and
// directories, as Linux allows it; reading one needs read permission,
// changing one write permission.
const (
	maxXattrValue = 64 << 10 // Linux's XATTR_SIZE_MAX
	maxXattrs     = 32       // per inode, HDFS's default limit
	xattrNS       = "user."
)

func validXattrName(op, path, name string) error {
	switch {
	case !strings.HasPrefix(name, xattrNS):
		return cairn.E(op, cairn.KindPermission, path, fmt.Sprintf("attribute %q: only user.* attributes are kept", name))
	case len(name) == len(xattrNS):
		return cairn.E(op, cairn.KindInvalid, path, "empty attribute name after user.")
	case len(name) > 255:
		return cairn.E(op, cairn.KindInvalid, path, "attribute name longer than 255 bytes")
	case !utf8.ValidString(name) || strings.IndexByte(name, 0) >= 0:
		return cairn.E(op, cairn.KindInvalid, path, "attribute name is not UTF-8 text without NUL")
	}
	return nil
}

// xattrTarget resolves path for a change of its attributes by c.
func (m *Metad) xattrTarget(op, path string, c *caller) (*metapb.Inode, error) {
	in, err := m.walk(op, path, c)
	if err != nil {
		return nil, err
	}
	if mode := fs.FileMode(in.Mode); !mode.IsRegular() && !mode.IsDir() {
		return nil, cairn.E(op, cairn.KindPermission, path, fmt.Sprintf("user.* attributes are kept on files and directories, not on a %v", mode.Type()))
	}
	return in, c.check(op, path, in, accessWrite)
}

func (m *Metad) SetXattr(ctx context.Context, path, name string, value []byte, flags cairn.XattrFlags) error {
	const op = "metad.SetXattr"
	if err := validXattrName(op, path, name); err != nil {
		return err
	}
	if flags&^(cairn.XattrCreate|cairn.XattrReplace) != 0 || flags == cairn.XattrCreate|cairn.XattrReplace {
		return cairn.E(op, cairn.KindInvalid, path, fmt.Sprintf("xattr flags %d", flags))
	}
	if len(value) > maxXattrValue {
		return cairn.E(op, cairn.KindInvalid, path, fmt.Sprintf("attribute value of %d bytes, more than %d", len(value), maxXattrValue))
	}
	c, err := m.callerOf(ctx, op)
	if err != nil {
		return err
	}
	return m.mutate(ctx, func(b *pebble.Batch) error {
		in, err := m.xattrTarget(op, path, c)
		if err != nil {
			return err
		}
		_, err = m.st.get(xattrKey(in.Id, name))
		exists := err == nil
		switch {
		case err != nil && !isNotFound(err):
			return err
		case exists && flags == cairn.XattrCreate:
			return cairn.E(op, cairn.KindExist, path, fmt.Sprintf("attribute %s exists", name))
		case !exists && flags == cairn.XattrReplace:
			return cairn.E(op, cairn.KindNotExist, path, fmt.Sprintf("no attribute %s", name))
		case !exists && in.Xattrs >= maxXattrs:
			return cairn.E(op, cairn.KindNoSpace, path, fmt.Sprintf("already %d attributes, the most an inode keeps", maxXattrs))
		}
		if err := b.Set(xattrKey(in.Id, name), value, nil); err != nil {
			return err
		}
		if !exists {
			in.Xattrs++
		}
		in.CtimeNs = m.clock.Now().UnixNano()
		return setInode(b, in)
	})
}

func (m *Metad) GetXattr(ctx context.Context, path, name string) ([]byte, error) {
	const op = "metad.GetXattr"
	if err := validXattrName(op, path, name); err != nil {
		return nil, err
	}
	c, err := m.callerOf(ctx, op)
	if err != nil {
		return nil, err
	}
	in, err := m.walk(op, path, c)
	if err != nil {
		return nil, err
	}
	if err := c.check(op, path, in, accessRead); err != nil {
		return nil, err
	}
	v, err := m.st.get(xattrKey(in.Id, name))
	if isNotFound(err) {
		return nil, cairn.E(op, cairn.KindNotExist, path, fmt.Sprintf("no attribute %s", name))
	}
	return v, err
}

func (m *Metad) ListXattrs(ctx context.Context, path string) ([]string, error) {
	const op = "metad.ListXattrs"
	c, err := m.callerOf(ctx, op)
	if err != nil {
		return nil, err
	}
	in, err := m.walk(op, path, c)
	if err != nil {
		return nil, err
	}
	if in.Xattrs == 0 {
		return nil, nil
	}
	p := xattrPrefix(in.Id)
	it, err := m.st.src().NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return nil, err
	}
	var names []string
	for it.First(); it.Valid(); it.Next() {
		names = append(names, string(it.Key()[len(p):]))
	}
	return names, it.Close()
}

func (m *Metad) RemoveXattr(ctx context.Context, path, name string) error {
	const op = "metad.RemoveXattr"
	if err := validXattrName(op, path, name); err != nil {
		return err
	}
	c, err := m.callerOf(ctx, op)
	if err != nil {
		return err
	}
	return m.mutate(ctx, func(b *pebble.Batch) error {
		in, err := m.xattrTarget(op, path, c)
		if err != nil {
			return err
		}
		if _, err := m.st.get(xattrKey(in.Id, name)); isNotFound(err) {
			return cairn.E(op, cairn.KindNotExist, path, fmt.Sprintf("no attribute %s", name))
		} else if err != nil {
			return err
		}
		if err := b.Delete(xattrKey(in.Id, name), nil); err != nil {
			return err
		}
		in.Xattrs--
		in.CtimeNs = m.clock.Now().UnixNano()
		return setInode(b, in)
	})
}
