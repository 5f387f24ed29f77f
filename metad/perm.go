package metad

import (
	"context"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"unicode/utf8"

	"google.golang.org/grpc"

	"cairn"
	"cairn/metad/metapb"
	"cairn/rpc"
)

// Permissions: metad takes the identity rpc.Auth established from the
// caller's certificate (a mount's or an admin's may speak for a user in
// gRPC metadata; on an --insecure cluster every client is believed, as in
// HDFS's simple mode), and checks it
// against each inode's owner, group and mode as POSIX does. The user
// running metad, members of Config.Supergroup, and an admin certificate
// speaking as itself are superusers: no check
// applies to them. An in-process call without an identity runs as that
// user; a call over RPC without one runs as the unprivileged user nobody.

// anonymous is who an RPC call that asserts no identity runs as.
const anonymous = "nobody"

// Access bits, as in the rwx triplets of a mode.
const (
	accessRead  = 4
	accessWrite = 2
	accessExec  = 1
)

var accessNames = map[uint32]string{
	accessRead: "READ", accessWrite: "WRITE", accessExec: "EXECUTE",
	accessRead | accessExec: "READ_EXECUTE", accessWrite | accessExec: "WRITE_EXECUTE", accessRead | accessWrite: "READ_WRITE",
	accessRead | accessWrite | accessExec: "ALL",
}

// caller is who makes a call.
type caller struct {
	user   string
	groups []string // groups[0] is the primary group, the group of what it creates
	super  bool     // bypasses permission checks: a superuser, or checking is off
}

type remoteKey struct{}

// markRemote is a gRPC server interceptor, installed after
// rpc.ServerIdentity, that tells metad a call came over the wire, so a
// missing identity is anonymous rather than metad's own.
func markRemote(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	return handler(context.WithValue(ctx, remoteKey{}, true), req)
}

// validName checks a user or group name as clients assert it.
func validName(n string) bool {
	if n == "" || len(n) > 255 || !utf8.ValidString(n) {
		return false
	}
	return !strings.ContainsFunc(n, func(r rune) bool { return r < 0x20 || r == 0x7f || r == ',' || r == ':' })
}

// callerOf returns who makes the call ctx belongs to.
func (m *Metad) callerOf(ctx context.Context, op string) (*caller, error) {
	id, ok := cairn.IdentityFrom(ctx)
	switch {
	case ok:
		if !validName(id.User) {
			return nil, cairn.E(op, cairn.KindInvalid, "", fmt.Sprintf("user name %q is not valid", id.User))
		}
		for _, g := range id.Groups {
			if !validName(g) {
				return nil, cairn.E(op, cairn.KindInvalid, "", fmt.Sprintf("group name %q is not valid", g))
			}
		}
	case ctx.Value(remoteKey{}) != nil:
		id = cairn.Identity{User: anonymous}
	default:
		id = cairn.Identity{User: m.superuser, Groups: []string{currentGroup()}}
	}
	c := &caller{user: id.User, groups: id.Groups}
	c.super = m.cfg.NoPermissions || id.User == m.superuser || slices.Contains(id.Groups, m.cfg.Supergroup) || rpc.IsAdminSelf(ctx)
	return c, nil
}

func (c *caller) inGroup(g string) bool { return slices.Contains(c.groups, g) }

// allowed reports whether c may have want (accessRead|...) on in.
func (c *caller) allowed(in *metapb.Inode, want uint32) bool {
	if c == nil || c.super {
		return true
	}
	mode := in.Mode & 0o777
	var bits uint32
	switch {
	case in.Owner == c.user:
		bits = mode >> 6
	case c.inGroup(in.Group):
		bits = mode >> 3 & 7
	default:
		bits = mode & 7
	}
	return bits&want == want
}

// check returns a KindAccess error, in HDFS's words, unless c may have
// want on in, found at path.
func (c *caller) check(op, path string, in *metapb.Inode, want uint32) error {
	if c.allowed(in, want) {
		return nil
	}
	return cairn.E(op, cairn.KindAccess, path, fmt.Sprintf("user=%s, access=%s, inode=%q:%s:%s:%s",
		c.user, accessNames[want], path, in.Owner, in.Group, fs.FileMode(in.Mode)))
}

// owns reports whether c owns in or is a superuser.
func (c *caller) owns(in *metapb.Inode) bool {
	return c == nil || c.super || in.Owner == c.user
}

// checkSticky refuses, as Linux does with EPERM, to remove or replace
// child from a sticky directory unless c owns the child or the directory.
func (c *caller) checkSticky(op, path string, dir, child *metapb.Inode) error {
	if fs.FileMode(dir.Mode)&fs.ModeSticky == 0 || c.owns(child) || c.owns(dir) {
		return nil
	}
	return cairn.E(op, cairn.KindPermission, path, fmt.Sprintf("user=%s owns neither %s nor its sticky directory (owner %s)", c.user, path, dir.Owner))
}

// ownerFor returns the owner and group of a new inode made by c in parent:
// the caller and its primary group, or the parent's group when the parent
// is setgid (or the caller has none), as Linux does.
func (c *caller) ownerFor(parent *metapb.Inode) (string, string) {
	if fs.FileMode(parent.Mode)&fs.ModeSetgid != 0 || len(c.groups) == 0 {
		return c.user, parent.Group
	}
	return c.user, c.groups[0]
}

// modeBits are the bits of a mode a client may set: permissions, setuid,
// setgid and sticky.
const modeBits = fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky
