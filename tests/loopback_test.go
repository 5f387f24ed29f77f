package tests

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// mountLoopback mounts a go-fuse loopback of a new plain directory, served
// by this process, as go-fuse's example loopback does (1 s attribute and
// entry timeouts), but with FUSE passthrough off, so every byte goes
// through the daemon as with cairn. It is unmounted when b ends.
func mountLoopback(b testing.TB) string {
	b.Helper()
	dir := b.TempDir()
	orig, mnt := filepath.Join(dir, "orig"), filepath.Join(dir, "mnt")
	mkdirsT(b, orig, mnt)
	root, err := fs.NewLoopbackRoot(orig)
	if err != nil {
		b.Fatal(err)
	}
	lb := root.(*fs.LoopbackNode)
	wrapped := &noPassthroughNode{lb}
	lb.RootData.RootNode = wrapped
	sec := time.Second
	server, err := fs.Mount(mnt, wrapped, &fs.Options{
		AttrTimeout:  &sec,
		EntryTimeout: &sec,
		MountOptions: fuse.MountOptions{FsName: "loopback", Name: "loopback"},
	})
	if err != nil {
		b.Fatalf("loopback mount: %v", err)
	}
	b.Cleanup(func() {
		if err := server.Unmount(); err != nil {
			b.Errorf("loopback unmount: %v", err)
		}
	})
	return mnt
}

// noPassthroughNode is a loopback node whose files never use FUSE
// passthrough.
type noPassthroughNode struct{ *fs.LoopbackNode }

var (
	_ fs.NodeWrapChilder = (*noPassthroughNode)(nil)
	_ fs.NodeOpener      = (*noPassthroughNode)(nil)
	_ fs.NodeCreater     = (*noPassthroughNode)(nil)
)

func (n *noPassthroughNode) WrapChild(ctx context.Context, ops fs.InodeEmbedder) fs.InodeEmbedder {
	if lb, ok := ops.(*fs.LoopbackNode); ok {
		return &noPassthroughNode{lb}
	}
	return ops
}

func (n *noPassthroughNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	fh, fl, e := n.LoopbackNode.Open(ctx, flags)
	return noPassthrough(fh), fl, e
}

func (n *noPassthroughNode) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	in, fh, fl, e := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	return in, noPassthrough(fh), fl, e
}

// noPassthroughFile is a loopback file that declines passthrough.
type noPassthroughFile struct{ *fs.LoopbackFile }

func (f *noPassthroughFile) PassthroughFd() (int, bool) { return -1, false }

func noPassthrough(fh fs.FileHandle) fs.FileHandle {
	if lf, ok := fh.(*fs.LoopbackFile); ok {
		return &noPassthroughFile{lf}
	}
	return fh
}

func mkdirsT(t testing.TB, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}
