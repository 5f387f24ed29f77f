package mount

import (
	"context"
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
	ReadAt(p []byte, off int64) (int, error)
	// Size is the file's length when it was opened.
	Size() int64
	Close() error
}

// syncer is a FileWriter that can make what it accepted durable without
// closing the file; fsync(2) needs it.
type syncer interface {
	Sync() error
}

// ClientBackend is the Backend of a real cluster, reached through c.
func ClientBackend(c *client.Client) Backend { return clientBackend{c} }

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

func (b clientBackend) Rename(ctx context.Context, src, dst string) error {
	return b.c.NS.Rename(ctx, src, dst)
}

func (b clientBackend) Statfs(ctx context.Context) (cairn.FsStats, error) {
	return b.c.NS.Statfs(ctx)
}

func (b clientBackend) Create(ctx context.Context, path string, perm os.FileMode) (FileWriter, error) {
	w, err := b.c.Create(ctx, path, perm)
	if err != nil {
		return nil, err
	}
	return w, nil
}

func (b clientBackend) Open(ctx context.Context, path string) (FileReader, error) {
	r, err := b.c.Open(ctx, path)
	if err != nil {
		return nil, err
	}
	return r, nil
}
