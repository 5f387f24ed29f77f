package mount

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"sync"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"cairn"
)

// Who calls, and who owns what. metad keeps users and groups by name and
// checks permissions itself (HDFS's model: it believes the identity a
// client asserts); the kernel deals in numbers. The mount turns the
// calling process's uid, gid and supplementary groups into names for
// every request (callerBackend), and the owner and group names metad
// keeps back into numbers for stat(2) (idMap).
//
// A uid or gid with no name on this machine travels as its decimal
// string, and such a string maps back to the number, so ids survive the
// round trip. A name this machine does not know at all is shown as
// nobody (uid 65534) or nogroup (gid 65534): showing it as the mounting
// user would tell that user it owns a file metad will not let it change.
// An empty name (a backend that keeps no owners) shows as the mounting
// user.

// nobodyID is the uid and gid of names this machine does not know.
const nobodyID = 65534

// idTTL is how long a lookup in the user and group databases is trusted.
const idTTL = time.Minute

// idMap translates between uids and gids and names, caching lookups
// (the databases may be NSS, LDAP, a network away).
type idMap struct {
	uid, gid uint32 // the mounting user's
	now      func() time.Time

	mu     sync.Mutex
	users  map[uint32]idEntry[string] // uid → name
	groups map[uint32]idEntry[string] // gid → name
	uids   map[string]idEntry[uint32] // name → uid
	gids   map[string]idEntry[uint32] // name → gid
}

type idEntry[V any] struct {
	v  V
	at time.Time
}

func newIDMap(uid, gid uint32) *idMap {
	return &idMap{
		uid: uid, gid: gid, now: time.Now,
		users: map[uint32]idEntry[string]{}, groups: map[uint32]idEntry[string]{},
		uids: map[string]idEntry[uint32]{}, gids: map[string]idEntry[uint32]{},
	}
}

// cached returns m[k], looking it up (without the lock held) when absent
// or older than idTTL.
func cached[K comparable, V any](x *idMap, m map[K]idEntry[V], k K, lookup func(K) V) V {
	now := x.now()
	x.mu.Lock()
	e, ok := m[k]
	x.mu.Unlock()
	if ok && now.Sub(e.at) < idTTL {
		return e.v
	}
	v := lookup(k)
	x.mu.Lock()
	m[k] = idEntry[V]{v, now}
	x.mu.Unlock()
	return v
}

// userName is the name of uid, or its decimal string.
func (x *idMap) userName(uid uint32) string {
	return cached(x, x.users, uid, func(uid uint32) string {
		s := strconv.FormatUint(uint64(uid), 10)
		if u, err := user.LookupId(s); err == nil {
			return u.Username
		}
		return s
	})
}

// groupName is the name of gid, or its decimal string.
func (x *idMap) groupName(gid uint32) string {
	return cached(x, x.groups, gid, func(gid uint32) string {
		s := strconv.FormatUint(uint64(gid), 10)
		if g, err := user.LookupGroupId(s); err == nil {
			return g.Name
		}
		return s
	})
}

// userID is the uid of name: the mounting user's for no name, the number
// for a decimal string no user is called, nobody for an unknown name.
func (x *idMap) userID(name string) uint32 {
	if name == "" {
		return x.uid
	}
	return cached(x, x.uids, name, func(name string) uint32 {
		if u, err := user.Lookup(name); err == nil {
			if id, err := strconv.ParseUint(u.Uid, 10, 32); err == nil {
				return uint32(id)
			}
		}
		if id, err := strconv.ParseUint(name, 10, 32); err == nil {
			return uint32(id)
		}
		return nobodyID
	})
}

// groupID is the gid of name, as userID.
func (x *idMap) groupID(name string) uint32 {
	if name == "" {
		return x.gid
	}
	return cached(x, x.gids, name, func(name string) uint32 {
		if g, err := user.LookupGroup(name); err == nil {
			if id, err := strconv.ParseUint(g.Gid, 10, 32); err == nil {
				return uint32(id)
			}
		}
		if id, err := strconv.ParseUint(name, 10, 32); err == nil {
			return uint32(id)
		}
		return nobodyID
	})
}

// identity names the caller of a request: its user, its primary group
// first (what metad makes new entries' group), then its supplementary
// groups from /proc/PID/status, or the primary group alone if that
// cannot be read or is no longer the caller's (another process, or a pid
// of another pid namespace).
func (x *idMap) identity(c *fuse.Caller) cairn.Identity {
	id := cairn.Identity{User: x.userName(c.Uid), Groups: []string{x.groupName(c.Gid)}}
	st, ok := readProcStatus(c.Pid)
	if !ok || st.fsuid != c.Uid || st.fsgid != c.Gid {
		return id
	}
	seen := map[uint32]bool{c.Gid: true}
	for _, g := range st.groups {
		if !seen[g] {
			seen[g] = true
			id.Groups = append(id.Groups, x.groupName(g))
		}
	}
	return id
}

// as returns ctx carrying the identity of the process making the FUSE
// request ctx belongs to. A context that already names someone keeps
// it; a request from the kernel itself (no credentials: uid, gid and pid
// 0, as RELEASE) or from no request at all runs as the mount's own user,
// the client's default.
func (x *idMap) as(ctx context.Context) context.Context {
	if _, ok := cairn.IdentityFrom(ctx); ok {
		return ctx
	}
	c, ok := fuse.FromContext(ctx)
	if !ok || c.Pid == 0 && c.Uid == 0 && c.Gid == 0 {
		return ctx
	}
	return cairn.WithIdentity(ctx, x.identity(c))
}

// procStatus is what the mount reads from /proc/PID/status.
type procStatus struct {
	tgid         uint32   // the process (thread group) of the thread PID
	fsuid, fsgid uint32   // the ids it accesses files as (FUSE's caller ids)
	groups       []uint32 // supplementary groups
}

// readProcStatus reads /proc/PID/status of the calling thread.
func readProcStatus(pid uint32) (procStatus, bool) {
	var st procStatus
	if pid == 0 {
		return st, false
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return st, false
	}
	// Lines as "Tgid:\t12", "Uid:\treal effective saved fs", "Groups:\t4 24".
	var ok [4]bool
	for line := range bytes.SplitSeq(data, []byte("\n")) {
		key, v, found := bytes.Cut(line, []byte(":"))
		if !found {
			continue
		}
		f := bytes.Fields(v)
		switch string(key) {
		case "Tgid":
			ok[0] = len(f) == 1 && parseID(f[0], &st.tgid)
		case "Uid":
			ok[1] = len(f) == 4 && parseID(f[3], &st.fsuid)
		case "Gid":
			ok[2] = len(f) == 4 && parseID(f[3], &st.fsgid)
		case "Groups":
			st.groups = make([]uint32, len(f))
			ok[3] = true
			for i := range f {
				ok[3] = ok[3] && parseID(f[i], &st.groups[i])
			}
		}
	}
	return st, ok == [4]bool{true, true, true, true} && st.tgid != 0
}

// parseID parses a decimal id into *id.
func parseID(b []byte, id *uint32) bool {
	v, err := strconv.ParseUint(string(b), 10, 32)
	*id = uint32(v)
	return err == nil
}

// callerProcess is the process (thread group) making the request, or 0
// if it is not known. The kernel names the calling thread.
func callerProcess(ctx context.Context) uint32 {
	c, ok := fuse.FromContext(ctx)
	if !ok {
		return 0
	}
	st, _ := readProcStatus(c.Pid)
	return st.tgid
}
