package blockd

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// errCrash is what every operation of a crashFS returns once it has
// crashed.
var errCrash = errors.New("crashFS: the process stopped here")

// crashFS is a fileSystem that works for a number of operations and then
// stops, as a process killed at that point would: the operation that
// would be next, and every one after it, fails and changes nothing, so
// the disk holds exactly what the first operations did. With left < 0 it
// never stops, and counts.
type crashFS struct {
	osFS
	mu      sync.Mutex
	left    int
	crashed bool
	ops     []string // the operations done, for messages
}

func newCrashFS(left int) *crashFS { return &crashFS{left: left} }

func (c *crashFS) step(op, path string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.left == 0 {
		c.crashed = true
		return fmt.Errorf("%s %s: %w", op, path, errCrash)
	}
	if c.left > 0 {
		c.left--
	}
	c.ops = append(c.ops, op+" "+shortPath(path))
	return nil
}

// hasCrashed reports whether an operation was refused.
func (c *crashFS) hasCrashed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.crashed
}

// done returns the operations done so far.
func (c *crashFS) done() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.ops...)
}

// shortPath keeps the last three elements of a path: enough to tell
// rbw/ from finalized/.
func shortPath(p string) string {
	d1, f := filepath.Split(filepath.Clean(p))
	d2, e1 := filepath.Split(filepath.Clean(d1))
	_, e2 := filepath.Split(filepath.Clean(d2))
	return filepath.Join(e2, e1, f)
}

func (c *crashFS) OpenFile(name string, flag int, perm fs.FileMode) (*os.File, error) {
	if err := c.step("open", name); err != nil {
		return nil, err
	}
	return c.osFS.OpenFile(name, flag, perm)
}

func (c *crashFS) WriteAt(f *os.File, p []byte, off int64) error {
	if err := c.step("write", f.Name()); err != nil {
		return err
	}
	return c.osFS.WriteAt(f, p, off)
}

func (c *crashFS) Truncate(f *os.File, size int64) error {
	if err := c.step("truncate", f.Name()); err != nil {
		return err
	}
	return c.osFS.Truncate(f, size)
}

func (c *crashFS) Sync(f *os.File) error {
	if err := c.step("fsync", f.Name()); err != nil {
		return err
	}
	return c.osFS.Sync(f)
}

func (c *crashFS) Rename(oldpath, newpath string) error {
	if err := c.step("rename", oldpath+" -> "+shortPath(newpath)); err != nil {
		return err
	}
	return c.osFS.Rename(oldpath, newpath)
}

func (c *crashFS) Remove(name string) error {
	if err := c.step("remove", name); err != nil {
		return err
	}
	return c.osFS.Remove(name)
}

func (c *crashFS) Mkdir(name string, perm fs.FileMode) error {
	if err := c.step("mkdir", name); err != nil {
		return err
	}
	return c.osFS.Mkdir(name, perm)
}

func (c *crashFS) SyncDir(dir string) error {
	if err := c.step("fsync-dir", dir); err != nil {
		return err
	}
	return c.osFS.SyncDir(dir)
}
