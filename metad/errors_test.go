package metad

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cairn"
)

// The users of the fixture: alice and carol are in staff, bob is not.
var (
	alice = as("alice", "staff")
	bob   = as("bob", "users")
	carol = as("carol", "staff")
)

// fixture builds, as the superuser:
//
//	/home/alice        alice:staff drwxr-x---
//	/home/alice/d/x    directories of alice
//	/home/alice/f      alice:staff -rw-r-----  (closed)
//	/home/alice/secret alice:staff -rw-------
//	/pub               drwxrwxrwx
//	/pub/af            alice:staff -rw-r--r--  with attribute user.k
//	/pub/full          with 32 attributes
//	/pub/ad            alice:staff drwxr-xr-x
//	/pub/bt            bob's drwxrwxrwx, holding alice's sub/f
//	/pub/ln -> af, /pub/fifo
//	/tmp               drwxrwxrwt (sticky)
//	/tmp/af            alice:staff -rw-r--r--
//	/a/b, /a/w         /a/w open for writing by client c1
func fixture(t *testing.T, cfg Config) *Metad {
	t.Helper()
	m := openCfg(t, cfg)
	su := context.Background()
	str := func(s string) *string { return &s }
	mode := func(p fs.FileMode) *fs.FileMode { return &p }
	chown := func(path string, perm fs.FileMode) {
		t.Helper()
		if _, err := m.SetAttr(su, path, cairn.Attr{Owner: str("alice"), Group: str("staff"), Perm: mode(perm)}); err != nil {
			t.Fatal(err)
		}
	}
	file := func(path string, perm fs.FileMode) {
		t.Helper()
		if _, err := m.Create(su, path, cairn.CreateOptions{Client: "c0"}); err != nil {
			t.Fatal(err)
		}
		must(t, m.Complete(su, cairn.WriterRef{Path: path, Client: "c0"}, nil))
		chown(path, perm)
	}
	must(t, m.Mkdirs(su, "/home/alice/d/x", 0o755))
	chown("/home/alice", 0o750)
	chown("/home/alice/d", 0o755)
	chown("/home/alice/d/x", 0o755)
	file("/home/alice/f", 0o640)
	file("/home/alice/secret", 0o600)
	must(t, m.Mkdir(su, "/pub", 0o777))
	file("/pub/af", 0o644)
	must(t, m.SetXattr(su, "/pub/af", "user.k", []byte("v"), 0))
	file("/pub/full", 0o666)
	for i := range maxXattrs {
		must(t, m.SetXattr(su, "/pub/full", fmt.Sprintf("user.a%d", i), []byte("v"), 0))
	}
	must(t, m.Mkdir(su, "/pub/ad", 0o755))
	chown("/pub/ad", 0o755)
	must(t, m.Mkdirs(su, "/pub/bt/sub", 0o755))
	if _, err := m.SetAttr(su, "/pub/bt", cairn.Attr{Owner: str("bob"), Perm: mode(0o777)}); err != nil {
		t.Fatal(err)
	}
	chown("/pub/bt/sub", 0o755)
	file("/pub/bt/sub/f", 0o644)
	must(t, m.Symlink(su, "af", "/pub/ln"))
	must(t, m.Mknod(su, "/pub/fifo", fs.ModeNamedPipe|0o666, 0))
	must(t, m.Mkdir(su, "/tmp", 0o777|fs.ModeSticky))
	file("/tmp/af", 0o644)
	must(t, m.Mkdirs(su, "/a/b", 0o755))
	if _, err := m.Create(su, "/a/w", cairn.CreateOptions{Client: "c1"}); err != nil {
		t.Fatal(err)
	}
	return m
}

type errCase struct {
	name string
	call func() error
	want *cairn.Error
}

// TestEveryOperationErrors calls every operation in ways it must refuse and
// checks each refusal's kind, then that the store holds exactly what it
// held before: a refused call changes nothing.
func TestEveryOperationErrors(t *testing.T) {
	m := fixture(t, Config{})
	su := context.Background()
	ckptParent := t.TempDir()
	perm := func(p fs.FileMode) *fs.FileMode { return &p }
	str := func(s string) *string { return &s }
	num := func(n int) *int { return &n }
	now := time.Now()
	create := func(ctx context.Context, p string, o cairn.CreateOptions) func() error {
		return func() error { _, err := m.Create(ctx, p, o); return err }
	}
	setattr := func(ctx context.Context, p string, a cairn.Attr) func() error {
		return func() error { _, err := m.SetAttr(ctx, p, a); return err }
	}
	list := func(ctx context.Context, p, after string) func() error {
		return func() error { _, _, err := m.List(ctx, p, after, 10); return err }
	}
	stat := func(ctx context.Context, p string) func() error {
		return func() error { _, err := m.Stat(ctx, p); return err }
	}
	c1 := cairn.CreateOptions{Client: "c9"}
	cases := []errCase{
		{"mkdir exists", func() error { return m.Mkdir(su, "/a", 0o755) }, cairn.ErrExist},
		{"mkdir no parent", func() error { return m.Mkdir(su, "/x/y", 0o755) }, cairn.ErrNotExist},
		{"mkdir under file", func() error { return m.Mkdir(su, "/pub/af/z", 0o755) }, cairn.ErrNotDir},
		{"mkdir no search", func() error { return m.Mkdir(bob, "/home/alice/z", 0o755) }, cairn.ErrAccess},
		{"mkdir no write", func() error { return m.Mkdir(carol, "/home/alice/z", 0o755) }, cairn.ErrAccess},
		{"mkdir exists beats access", func() error { return m.Mkdir(carol, "/home/alice/d", 0o755) }, cairn.ErrExist},
		{"mkdir anonymous", func() error { return m.Mkdir(remote(), "/z", 0o755) }, cairn.ErrAccess},
		{"mkdirs through file", func() error { return m.Mkdirs(su, "/pub/af/z", 0o755) }, cairn.ErrNotDir},
		{"mkdirs no search", func() error { return m.Mkdirs(bob, "/home/alice/z/y", 0o755) }, cairn.ErrAccess},
		{"mkdirs no write", func() error { return m.Mkdirs(bob, "/a/b/c/d", 0o755) }, cairn.ErrAccess},
		{"create exists", create(su, "/pub/af", c1), cairn.ErrExist},
		{"create being written", create(su, "/a/w", c1), cairn.ErrExist},
		{"create no parent", create(su, "/nope/f", c1), cairn.ErrNotExist},
		{"create no client", create(su, "/pub/n", cairn.CreateOptions{}), cairn.ErrInvalid},
		{"create replication", create(su, "/pub/n", cairn.CreateOptions{Client: "c", Replication: 65}), cairn.ErrInvalid},
		{"create block size", create(su, "/pub/n", cairn.CreateOptions{Client: "c", BlockSize: 1000}), cairn.ErrInvalid},
		// Full blocks end on a checksum chunk, or equal bytes would get
		// different file checksums under different block sizes.
		{"create block size off the chunk", create(su, "/pub/n", cairn.CreateOptions{Client: "c", BlockSize: 100000}), cairn.ErrInvalid},
		{"create mode bits", create(su, "/pub/n", cairn.CreateOptions{Client: "c", Perm: fs.ModeDir | 0o644}), cairn.ErrInvalid},
		{"create no write", create(carol, "/home/alice/n", c1), cairn.ErrAccess},
		{"create no search", create(bob, "/home/alice/d/n", c1), cairn.ErrAccess},
		{"delete non-empty", func() error { return m.Delete(su, "/a", false) }, cairn.ErrNotEmpty},
		{"delete missing", func() error { return m.Delete(su, "/nope", true) }, cairn.ErrNotExist},
		{"delete root", func() error { return m.Delete(su, "/", true) }, cairn.ErrInvalid},
		{"delete no write", func() error { return m.Delete(carol, "/home/alice/f", false) }, cairn.ErrAccess},
		{"delete sticky", func() error { return m.Delete(bob, "/tmp/af", false) }, cairn.ErrPermission},
		{"delete subtree without rwx", func() error { return m.Delete(bob, "/pub/bt", true) }, cairn.ErrAccess},
		{"rename own subtree", func() error { return m.Rename(su, "/a", "/a/b/c") }, cairn.ErrInvalid},
		{"rename missing", func() error { return m.Rename(su, "/nope", "/x") }, cairn.ErrNotExist},
		{"rename no dst parent", func() error { return m.Rename(su, "/pub/af", "/nope/x") }, cairn.ErrNotExist},
		{"rename dir over file", func() error { return m.Rename(su, "/a/b", "/pub/af") }, cairn.ErrNotDir},
		{"rename file over dir", func() error { return m.Rename(su, "/pub/af", "/a/b") }, cairn.ErrIsDir},
		{"rename over non-empty", func() error { return m.Rename(su, "/a/b", "/home/alice/d") }, cairn.ErrNotEmpty},
		{"rename root", func() error { return m.Rename(su, "/", "/r") }, cairn.ErrInvalid},
		{"rename sticky", func() error { return m.Rename(bob, "/tmp/af", "/tmp/bf") }, cairn.ErrPermission},
		{"rename no write src", func() error { return m.Rename(carol, "/home/alice/f", "/pub/f") }, cairn.ErrAccess},
		{"rename no write dst", func() error { return m.Rename(bob, "/pub/af", "/a/af") }, cairn.ErrAccess},
		{"rename dir across without write on it", func() error { return m.Rename(bob, "/pub/ad", "/tmp/ad") }, cairn.ErrAccess},
		{"stat missing", stat(su, "/nope"), cairn.ErrNotExist},
		{"stat through file", stat(su, "/pub/af/x"), cairn.ErrNotDir},
		{"stat no search", stat(bob, "/home/alice/f"), cairn.ErrAccess},
		{"list file", list(su, "/pub/af", ""), cairn.ErrNotDir},
		{"list no read", list(bob, "/home/alice", ""), cairn.ErrAccess},
		{"list bad resume name", list(su, "/", "a/b"), cairn.ErrInvalid},
		{"locations of dir", func() error { _, err := m.BlockLocations(su, cairn.FileRef{Path: "/a"}); return err }, cairn.ErrIsDir},
		{"locations no read", func() error { _, err := m.BlockLocations(carol, cairn.FileRef{Path: "/home/alice/secret"}); return err }, cairn.ErrAccess},
		{"chmod not owner", setattr(bob, "/pub/af", cairn.Attr{Perm: perm(0o777)}), cairn.ErrPermission},
		{"chown not super", setattr(alice, "/pub/af", cairn.Attr{Owner: str("bob")}), cairn.ErrPermission},
		{"chgrp not member", setattr(alice, "/pub/af", cairn.Attr{Group: str("users")}), cairn.ErrPermission},
		{"chgrp not owner", setattr(carol, "/pub/af", cairn.Attr{Group: str("staff2")}), cairn.ErrPermission},
		{"utimes not owner", setattr(bob, "/pub/af", cairn.Attr{ModTime: &now}), cairn.ErrPermission},
		{"setrep no write", setattr(bob, "/pub/af", cairn.Attr{Replication: num(2)}), cairn.ErrAccess},
		{"setrep dir", setattr(su, "/a", cairn.Attr{Replication: num(2)}), cairn.ErrIsDir},
		{"setrep symlink", setattr(su, "/pub/ln", cairn.Attr{Replication: num(2)}), cairn.ErrInvalid},
		{"setrep range", setattr(su, "/pub/af", cairn.Attr{Replication: num(0)}), cairn.ErrInvalid},
		{"chmod type bits", setattr(su, "/pub/af", cairn.Attr{Perm: perm(fs.ModeDir | 0o755)}), cairn.ErrInvalid},
		{"chown bad name", setattr(su, "/pub/af", cairn.Attr{Owner: str("a:b")}), cairn.ErrInvalid},
		{"chmod one of two refused", setattr(alice, "/pub/af", cairn.Attr{Perm: perm(0o600), Owner: str("bob")}), cairn.ErrPermission},
		{"setattr missing", setattr(su, "/nope", cairn.Attr{Perm: perm(0o600)}), cairn.ErrNotExist},
		{"symlink exists", func() error { return m.Symlink(su, "t", "/pub/af") }, cairn.ErrExist},
		{"symlink empty target", func() error { return m.Symlink(su, "", "/pub/l2") }, cairn.ErrInvalid},
		{"symlink NUL target", func() error { return m.Symlink(su, "a\x00b", "/pub/l2") }, cairn.ErrInvalid},
		{"symlink long target", func() error { return m.Symlink(su, strings.Repeat("t", cairn.MaxPathLen+1), "/pub/l2") }, cairn.ErrInvalid},
		{"symlink no write", func() error { return m.Symlink(carol, "t", "/home/alice/l") }, cairn.ErrAccess},
		{"mknod dir", func() error { return m.Mknod(su, "/pub/n", fs.ModeDir|0o755, 0) }, cairn.ErrInvalid},
		{"mknod symlink", func() error { return m.Mknod(su, "/pub/n", fs.ModeSymlink|0o777, 0) }, cairn.ErrInvalid},
		{"mknod device not super", func() error { return m.Mknod(bob, "/pub/n", fs.ModeDevice|fs.ModeCharDevice|0o666, 0) }, cairn.ErrPermission},
		{"mknod exists", func() error { return m.Mknod(su, "/pub/fifo", fs.ModeNamedPipe|0o666, 0) }, cairn.ErrExist},
		{"mknod no write", func() error { return m.Mknod(carol, "/home/alice/p", fs.ModeNamedPipe|0o666, 0) }, cairn.ErrAccess},
		{"xattr other namespace", func() error { return m.SetXattr(su, "/pub/af", "trusted.x", nil, 0) }, cairn.ErrPermission},
		{"xattr empty name", func() error { return m.SetXattr(su, "/pub/af", "user.", nil, 0) }, cairn.ErrInvalid},
		{"xattr create existing", func() error { return m.SetXattr(su, "/pub/af", "user.k", nil, cairn.XattrCreate) }, cairn.ErrExist},
		{"xattr replace missing", func() error { return m.SetXattr(su, "/pub/af", "user.n", nil, cairn.XattrReplace) }, cairn.ErrNotExist},
		{"xattr bad flags", func() error { return m.SetXattr(su, "/pub/af", "user.n", nil, 3) }, cairn.ErrInvalid},
		{"xattr too big", func() error { return m.SetXattr(su, "/pub/af", "user.n", make([]byte, maxXattrValue+1), 0) }, cairn.ErrInvalid},
		{"xattr too many", func() error { return m.SetXattr(su, "/pub/full", "user.n", nil, 0) }, cairn.ErrNoSpace},
		{"xattr no write", func() error { return m.SetXattr(bob, "/pub/af", "user.n", nil, 0) }, cairn.ErrAccess},
		{"xattr on symlink", func() error { return m.SetXattr(su, "/pub/ln", "user.n", nil, 0) }, cairn.ErrPermission},
		{"xattr on fifo", func() error { return m.SetXattr(su, "/pub/fifo", "user.n", nil, 0) }, cairn.ErrPermission},
		{"getxattr missing", func() error { _, err := m.GetXattr(su, "/pub/af", "user.n"); return err }, cairn.ErrNotExist},
		{"getxattr no read", func() error { _, err := m.GetXattr(carol, "/home/alice/secret", "user.n"); return err }, cairn.ErrAccess},
		{"listxattrs missing", func() error { _, err := m.ListXattrs(su, "/nope"); return err }, cairn.ErrNotExist},
		{"removexattr missing", func() error { return m.RemoveXattr(su, "/pub/af", "user.n") }, cairn.ErrNotExist},
		{"removexattr no write", func() error { return m.RemoveXattr(bob, "/pub/af", "user.k") }, cairn.ErrAccess},
		{"summary missing", func() error { _, err := m.ContentSummary(su, "/nope"); return err }, cairn.ErrNotExist},
		{"summary no read", func() error { _, err := m.ContentSummary(bob, "/home"); return err }, cairn.ErrAccess},
		{"renew no client", func() error { return m.RenewLease(su, "") }, cairn.ErrInvalid},
		{"add block other writer", func() error {
			_, err := m.AddBlock(su, cairn.WriterRef{Path: "/a/w", Client: "c2"}, nil, nil)
			return err
		}, cairn.ErrBusy},
		{"add block closed file", func() error {
			_, err := m.AddBlock(su, cairn.WriterRef{Path: "/pub/af", Client: "c0"}, nil, nil)
			return err
		}, cairn.ErrPermission},
		{"complete other writer", func() error { return m.Complete(su, cairn.WriterRef{Path: "/a/w", Client: "c2"}, nil) }, cairn.ErrBusy},
		{"complete unknown block", func() error { return m.Complete(su, cairn.WriterRef{Path: "/a/w", Client: "c1"}, &cairn.Block{ID: 7}) }, cairn.ErrInvalid},
		{"checkpoint not super", func() error { return m.Checkpoint(bob, filepath.Join(ckptParent, "c")) }, cairn.ErrPermission},
		{"checkpoint relative", func() error { return m.Checkpoint(su, "ckpt") }, cairn.ErrInvalid},
		{"checkpoint exists", func() error { return m.Checkpoint(su, ckptParent) }, cairn.ErrExist},
		{"checkpoint no parent", func() error { return m.Checkpoint(su, filepath.Join(ckptParent, "a", "b")) }, cairn.ErrNotExist},
		{"bad identity", func() error { return m.Mkdir(as("a\nb"), "/pub/q", 0o755) }, cairn.ErrInvalid},
	}
	for _, bad := range badPaths {
		want := cairn.ErrInvalid
		if bad.tooLong {
			want = cairn.ErrNameTooLong
		}
		cases = append(cases,
			errCase{"mkdir " + bad.why, func() error { return m.Mkdir(su, bad.path, 0o755) }, want},
			errCase{"mkdirs " + bad.why, func() error { return m.Mkdirs(su, bad.path, 0o755) }, want},
			errCase{"create " + bad.why, create(su, bad.path, c1), want},
			errCase{"stat " + bad.why, stat(su, bad.path), want},
			errCase{"list " + bad.why, list(su, bad.path, ""), want},
			errCase{"delete " + bad.why, func() error { return m.Delete(su, bad.path, true) }, want},
			errCase{"rename from " + bad.why, func() error { return m.Rename(su, bad.path, "/pub/x") }, want},
			errCase{"rename to " + bad.why, func() error { return m.Rename(su, "/pub/af", bad.path) }, want},
			errCase{"setattr " + bad.why, setattr(su, bad.path, cairn.Attr{Perm: perm(0o600)}), want},
			errCase{"symlink " + bad.why, func() error { return m.Symlink(su, "t", bad.path) }, want},
			errCase{"mknod " + bad.why, func() error { return m.Mknod(su, bad.path, fs.ModeNamedPipe, 0) }, want},
			errCase{"setxattr " + bad.why, func() error { return m.SetXattr(su, bad.path, "user.a", nil, 0) }, want},
			errCase{"summary " + bad.why, func() error { _, err := m.ContentSummary(su, bad.path); return err }, want},
			errCase{"locations " + bad.why, func() error { _, err := m.BlockLocations(su, cairn.FileRef{Path: bad.path}); return err }, want},
		)
	}
	before := dump(t, m)
	for _, c := range cases {
		err := c.call()
		if !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want kind %q", c.name, err, c.want.Kind)
		}
		var ce *cairn.Error
		if err != nil && !errors.As(err, &ce) {
			t.Errorf("%s: %v is not a *cairn.Error", c.name, err)
		}
	}
	if after := dump(t, m); after != before {
		t.Errorf("refused calls changed the store:\n%s", diffLines(before, after))
	}
	mustCheckOpen(t, m)
}

var badPaths = []struct {
	why, path string
	tooLong   bool // ErrNameTooLong, not ErrInvalid
}{
	{"empty", "", false},
	{"relative", "pub/x", false},
	{"dotdot", "/pub/../x", false},
	{"dot", "/pub/./x", false},
	{"empty component", "/pub//x", false},
	{"trailing slash", "/pub/x/", false},
	{"NUL", "/pub/a\x00b", false},
	{"bad UTF-8", "/pub/\xff", false},
	{"long name", "/pub/" + strings.Repeat("n", cairn.MaxNameLen+1), true},
	{"long path", strings.Repeat("/"+strings.Repeat("p", 200), cairn.MaxNamespacePathLen/201+1), true},
}

// diffLines shows the lines only in a and only in b.
func diffLines(a, b string) string {
	in := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	ma, mb := in(a), in(b)
	var out strings.Builder
	for _, l := range strings.Split(a, "\n") {
		if !mb[l] {
			fmt.Fprintf(&out, "- %s\n", l)
		}
	}
	for _, l := range strings.Split(b, "\n") {
		if !ma[l] {
			fmt.Fprintf(&out, "+ %s\n", l)
		}
	}
	return out.String()
}

// mustCheckOpen closes m, checks its store, and leaves it closed.
func mustCheckOpen(t *testing.T, m *Metad) {
	t.Helper()
	must(t, m.Close())
	mustCheck(t, m.cfg.Dir)
}
