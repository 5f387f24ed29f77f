package tests

// The kill matrix's writer: the test binary run again as a separate
// process (so the test can SIGKILL it), writing through a cairn mount with
// ordinary file calls, or through the client library. Each acknowledged
// step (a close or fsync that returned success, a rename or unlink that
// returned) is appended to a manifest on the local disk and fsynced before
// the writer goes on, so after any kill the manifest holds exactly what was
// acknowledged.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"cairn/client"
)

// writerEnv names the writer's configuration file; set, the test binary
// runs as a writer instead of running tests.
const writerEnv = "CAIRN_KILLMATRIX_WRITER"

func init() {
	if cfg := os.Getenv(writerEnv); cfg != "" {
		os.Exit(runWriter(cfg))
	}
}

// The columns of the matrix: what each writer does in its own directory.
const (
	colCreate = "create-write-close"
	colHsync  = "write-hsync"
	colAppend = "append"
	colRename = "rename-while-open"
	colUnlink = "unlink-while-open"
)

var matrixColumns = []string{colCreate, colHsync, colAppend, colRename, colUnlink}

// The writers.
const (
	kindMount  = "mount"
	kindClient = "client"
)

// writerConfig is what a writer process is told to do.
type writerConfig struct {
	Kind  string // kindMount or kindClient
	Metad string // kindClient: metad's address
	Root  string // kindMount: the mount point
	// Columns the writer runs, each in its own goroutine, in the cairn
	// directory Dirs[column].
	Columns []string
	Dirs    map[string]string
	// Pause: a column pauses in the step of this index, halfway through
	// its data (written, not yet acknowledged), until GoFile exists. A
	// column missing here does not pause.
	Pause  map[string]int
	Steps  int // steps per column
	Seed   uint64
	MinSeg int // bytes written per step, at least
	MaxSeg int // and at most
	// Manifest is the file the writer appends its records to.
	Manifest string
	GoFile   string
}

// record is one line of a manifest.
type record struct {
	Ev   string `json:"ev"` // ack, renaming, renamed, unlinking, unlinked, inode, verified, verify-failed, read-error, paused, error, done
	Kind string `json:"kind"`
	Col  string `json:"col"`
	File string `json:"file,omitempty"` // the writer's name for the file, stable across renames
	Path string `json:"path,omitempty"` // its path when the record was made
	Off  int64  `json:"off,omitempty"`
	Len  int64  `json:"len,omitempty"`
	Sum  string `json:"sum,omitempty"` // SHA-256 of the bytes [Off, Off+Len)
	Op   string `json:"op,omitempty"`  // what was acknowledged: close, fsync
	From string `json:"from,omitempty"`
	To   string `json:"to,omitempty"`
	Ino  uint64 `json:"ino,omitempty"`
	Err  string `json:"err,omitempty"`
	At   string `json:"at,omitempty"`
}

// manifest appends records to a local file, each fsynced before Add
// returns.
type manifest struct {
	mu sync.Mutex
	f  *os.File
}

func (m *manifest) add(r record) {
	r.At = time.Now().Format(time.RFC3339Nano)
	b, _ := json.Marshal(r)
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, err := m.f.Write(append(b, '\n')); err != nil {
		fmt.Fprintf(os.Stderr, "manifest: %v\n", err)
		os.Exit(3)
	}
	if err := m.f.Sync(); err != nil {
		fmt.Fprintf(os.Stderr, "manifest fsync: %v\n", err)
		os.Exit(3)
	}
}

// segment returns the bytes a writer writes in step of column col of
// file: reproducible from the seed, so a failure can be looked into.
func segment(cfg *writerConfig, col string, step int) []byte {
	h := sha256.Sum256([]byte(fmt.Sprintf("%d/%s/%s/%d", cfg.Seed, cfg.Kind, col, step)))
	r := rand.NewChaCha8(h)
	n := cfg.MinSeg
	if cfg.MaxSeg > cfg.MinSeg {
		n += int(r.Uint64() % uint64(cfg.MaxSeg-cfg.MinSeg+1))
	}
	b := make([]byte, n)
	_, _ = r.Read(b)
	return b
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// wfile is a file open for writing; rfile one open for reading.
type wfile interface {
	Write([]byte) (int, error)
	Sync() error
	Close() error
}

type rfile interface {
	ReadAt([]byte, int64) (int, error)
	Close() error
}

// fsops are the calls a column makes, through a mount or the client.
type fsops interface {
	create(p string) (wfile, error)
	appendTo(p string) (wfile, error)
	mkdir(p string) error
	rename(from, to string) error
	openRead(p string) (rfile, error)
	unlink(p string) error
	inode(p string) (uint64, error)
	// release ends the hold on an unlinked file once its last handle is
	// closed (the mount does it itself at the last close).
	release(ino uint64) error
}

// mountOps are ordinary file calls under a mount point.
type mountOps struct{ root string }

func (m mountOps) create(p string) (wfile, error) {
	return os.OpenFile(m.root+p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
}

func (m mountOps) appendTo(p string) (wfile, error) {
	return os.OpenFile(m.root+p, os.O_WRONLY|os.O_APPEND, 0)
}

func (m mountOps) mkdir(p string) error             { return os.Mkdir(m.root+p, 0o755) }
func (m mountOps) rename(from, to string) error     { return os.Rename(m.root+from, m.root+to) }
func (m mountOps) openRead(p string) (rfile, error) { return os.Open(m.root + p) }
func (m mountOps) unlink(p string) error            { return os.Remove(m.root + p) }
func (m mountOps) release(uint64) error             { return nil }

func (m mountOps) inode(p string) (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(m.root+p, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// clientOps are calls of the client library.
type clientOps struct{ c *client.Client }

func (o clientOps) create(p string) (wfile, error) {
	return o.c.Create(context.Background(), p, 0o644)
}

func (o clientOps) appendTo(p string) (wfile, error) {
	return o.c.Append(context.Background(), p)
}

func (o clientOps) mkdir(p string) error { return o.c.NS.Mkdir(context.Background(), p, 0o755) }

func (o clientOps) rename(from, to string) error {
	return o.c.NS.Rename(context.Background(), from, to)
}

func (o clientOps) openRead(p string) (rfile, error) { return o.c.Open(context.Background(), p) }
func (o clientOps) unlink(p string) error            { return o.c.UnlinkOpen(context.Background(), p) }

func (o clientOps) inode(p string) (uint64, error) {
	fi, err := o.c.NS.Stat(context.Background(), p)
	return fi.Inode, err
}

func (o clientOps) release(ino uint64) error {
	return o.c.ReleaseUnlinked(context.Background(), ino)
}

// column is one column's run in a writer.
type column struct {
	cfg *writerConfig
	ops fsops
	m   *manifest
	col string
	dir string
}

func (c *column) rec(r record) {
	r.Kind, r.Col = c.cfg.Kind, c.col
	c.m.add(r)
}

// write writes step's segment to f; in the pause step it writes half,
// records the pause, waits for the go file, then writes the rest.
func (c *column) write(f wfile, step int) ([]byte, error) {
	data := segment(c.cfg, c.col, step)
	if p, ok := c.cfg.Pause[c.col]; ok && p == step {
		if _, err := f.Write(data[:len(data)/2]); err != nil {
			return nil, err
		}
		c.rec(record{Ev: "paused", Off: int64(step)})
		for {
			if _, err := os.Stat(c.cfg.GoFile); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		_, err := f.Write(data[len(data)/2:])
		return data, err
	}
	_, err := f.Write(data)
	return data, err
}

func (c *column) run() {
	var err error
	switch c.col {
	case colCreate:
		err = c.createWriteClose()
	case colHsync:
		err = c.writeHsync()
	case colAppend:
		err = c.appendSteps()
	case colRename:
		err = c.renameWhileOpen()
	case colUnlink:
		err = c.unlinkWhileOpen()
	default:
		err = fmt.Errorf("unknown column %q", c.col)
	}
	if err != nil {
		c.rec(record{Ev: "error", Err: err.Error()})
		return
	}
	c.rec(record{Ev: "done"})
}

// createWriteClose: each step a new file, written and closed.
func (c *column) createWriteClose() error {
	for i := range c.cfg.Steps {
		name := fmt.Sprintf("f%d", i)
		p := path.Join(c.dir, name)
		f, err := c.ops.create(p)
		if err != nil {
			return fmt.Errorf("create %s: %w", p, err)
		}
		data, err := c.write(f, i)
		if err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("close %s: %w", p, err)
		}
		c.rec(record{Ev: "ack", Op: "close", File: name, Path: p, Len: int64(len(data)), Sum: sum(data)})
	}
	return nil
}

// writeHsync: one file, each step written and fsynced; closed at the end.
func (c *column) writeHsync() error {
	p := path.Join(c.dir, "f")
	f, err := c.ops.create(p)
	if err != nil {
		return fmt.Errorf("create %s: %w", p, err)
	}
	var off int64
	for i := range c.cfg.Steps {
		data, err := c.write(f, i)
		if err != nil {
			return fmt.Errorf("write %s at %d: %w", p, off, err)
		}
		if err := f.Sync(); err != nil {
			return fmt.Errorf("fsync %s at %d: %w", p, off, err)
		}
		c.rec(record{Ev: "ack", Op: "fsync", File: "f", Path: p, Off: off, Len: int64(len(data)), Sum: sum(data)})
		off += int64(len(data))
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", p, err)
	}
	c.rec(record{Ev: "ack", Op: "close", File: "f", Path: p, Off: off})
	return nil
}

// appendSteps: a file written and closed, then reopened to append and
// closed at each further step.
func (c *column) appendSteps() error {
	p := path.Join(c.dir, "f")
	var off int64
	for i := range c.cfg.Steps {
		var f wfile
		var err error
		if i == 0 {
			f, err = c.ops.create(p)
		} else {
			f, err = c.ops.appendTo(p)
		}
		if err != nil {
			return fmt.Errorf("open %s (step %d): %w", p, i, err)
		}
		data, err := c.write(f, i)
		if err != nil {
			return fmt.Errorf("write %s at %d: %w", p, off, err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("close %s at %d: %w", p, off, err)
		}
		c.rec(record{Ev: "ack", Op: "close", File: "f", Path: p, Off: off, Len: int64(len(data)), Sum: sum(data)})
		off += int64(len(data))
	}
	return nil
}

// renameWhileOpen: one file written and fsynced at each step, renamed
// after each step while open: itself twice, then the directory above it.
func (c *column) renameWhileOpen() error {
	dir := path.Join(c.dir, "d0")
	if err := c.ops.mkdir(dir); err != nil {
		return fmt.Errorf("mkdir %s: %w", dir, err)
	}
	name := "n0"
	p := path.Join(dir, name)
	f, err := c.ops.create(p)
	if err != nil {
		return fmt.Errorf("create %s: %w", p, err)
	}
	var off int64
	for i := range c.cfg.Steps {
		data, err := c.write(f, i)
		if err != nil {
			return fmt.Errorf("write %s at %d: %w", p, off, err)
		}
		if err := f.Sync(); err != nil {
			return fmt.Errorf("fsync %s at %d: %w", p, off, err)
		}
		c.rec(record{Ev: "ack", Op: "fsync", File: "f", Path: p, Off: off, Len: int64(len(data)), Sum: sum(data)})
		off += int64(len(data))

		var from, to string
		if i%3 == 2 {
			from, to = dir, path.Join(c.dir, fmt.Sprintf("d%d", i+1))
		} else {
			from, to = p, path.Join(dir, fmt.Sprintf("n%d", i+1))
		}
		c.rec(record{Ev: "renaming", File: "f", From: from, To: to})
		if err := c.ops.rename(from, to); err != nil {
			return fmt.Errorf("rename %s %s: %w", from, to, err)
		}
		c.rec(record{Ev: "renamed", File: "f", From: from, To: to})
		if i%3 == 2 {
			dir = to
		} else {
			name = path.Base(to)
		}
		p = path.Join(dir, name)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", p, err)
	}
	c.rec(record{Ev: "ack", Op: "close", File: "f", Path: p, Off: off})
	return nil
}

// unlinkWhileOpen: a file kept, then a temporary file written, fsynced and
// unlinked while open for writing and for reading, written on and read
// back through the open handle, with other files written and closed
// meanwhile.
func (c *column) unlinkWhileOpen() error {
	tmp := path.Join(c.dir, "tmp")
	var f wfile
	var r rfile
	var ino uint64
	var off int64
	for i := range c.cfg.Steps {
		if i == 0 || i >= 3 && i%2 == 0 {
			name := fmt.Sprintf("keep%d", i)
			p := path.Join(c.dir, name)
			kf, err := c.ops.create(p)
			if err != nil {
				return fmt.Errorf("create %s: %w", p, err)
			}
			data, err := c.write(kf, i)
			if err != nil {
				return fmt.Errorf("write %s: %w", p, err)
			}
			if err := kf.Close(); err != nil {
				return fmt.Errorf("close %s: %w", p, err)
			}
			c.rec(record{Ev: "ack", Op: "close", File: name, Path: p, Len: int64(len(data)), Sum: sum(data)})
			continue
		}
		if f == nil {
			var err error
			if f, err = c.ops.create(tmp); err != nil {
				return fmt.Errorf("create %s: %w", tmp, err)
			}
			if r, err = c.ops.openRead(tmp); err != nil {
				return fmt.Errorf("open %s to read: %w", tmp, err)
			}
			if ino, err = c.ops.inode(tmp); err != nil {
				return fmt.Errorf("stat %s: %w", tmp, err)
			}
			c.rec(record{Ev: "inode", File: "tmp", Path: tmp, Ino: ino})
		}
		data, err := c.write(f, i)
		if err != nil {
			return fmt.Errorf("write %s at %d: %w", tmp, off, err)
		}
		if err := f.Sync(); err != nil {
			return fmt.Errorf("fsync %s at %d: %w", tmp, off, err)
		}
		c.rec(record{Ev: "ack", Op: "fsync", File: "tmp", Path: tmp, Off: off, Len: int64(len(data)), Sum: sum(data)})
		if i >= 3 {
			// Unlinked: only the open handle still reaches the bytes.
			got := make([]byte, len(data))
			n, err := r.ReadAt(got, off)
			if err != nil && !errors.Is(err, io.EOF) {
				// An error, not a short count: honest while no replica
				// can be reached (the row that kills every blockd).
				c.rec(record{Ev: "read-error", File: "tmp", Off: off, Len: int64(len(data)), Err: fmt.Sprintf("read %d bytes through the open handle: %v", n, err)})
			} else if err != nil && n != len(got) {
				c.rec(record{Ev: "verify-failed", File: "tmp", Off: off, Len: int64(len(data)), Err: fmt.Sprintf("read %d bytes through the open handle: %v", n, err)})
			} else if sum(got) != sum(data) {
				c.rec(record{Ev: "verify-failed", File: "tmp", Off: off, Len: int64(len(data)), Err: "the bytes read through the open handle differ from those written"})
			} else {
				c.rec(record{Ev: "verified", File: "tmp", Off: off, Len: int64(len(data))})
			}
		}
		off += int64(len(data))
		if i == 2 {
			c.rec(record{Ev: "unlinking", File: "tmp", Path: tmp, Ino: ino})
			if err := c.ops.unlink(tmp); err != nil {
				return fmt.Errorf("unlink %s while open: %w", tmp, err)
			}
			c.rec(record{Ev: "unlinked", File: "tmp", Path: tmp, Ino: ino})
		}
	}
	if f != nil {
		if err := f.Close(); err != nil {
			return fmt.Errorf("close %s: %w", tmp, err)
		}
		c.rec(record{Ev: "ack", Op: "close", File: "tmp", Path: tmp, Off: off})
		if err := r.Close(); err != nil {
			return fmt.Errorf("close the reader of %s: %w", tmp, err)
		}
		if err := c.ops.release(ino); err != nil {
			return fmt.Errorf("release %s (inode %d): %w", tmp, ino, err)
		}
	}
	return nil
}

// runWriter is the writer process's main.
func runWriter(cfgPath string) int {
	b, err := os.ReadFile(cfgPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	var cfg writerConfig
	if err := json.Unmarshal(b, &cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	mf, err := os.OpenFile(cfg.Manifest, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	m := &manifest{f: mf}
	var ops fsops
	switch cfg.Kind {
	case kindMount:
		ops = mountOps{root: cfg.Root}
	case kindClient:
		lc := zap.NewDevelopmentConfig()
		lc.DisableStacktrace = true
		log, _ := lc.Build()
		c, err := client.Dial(cfg.Metad, client.Options{Logger: log})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		defer c.Close()
		// Keep the lease while a column waits at its pause, however long
		// the test takes to kill and restart: the client itself renews
		// only every 20 s.
		go func() {
			for range time.Tick(500 * time.Millisecond) {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				_ = c.NS.RenewLease(ctx, c.Name())
				cancel()
			}
		}()
		ops = clientOps{c}
	default:
		fmt.Fprintf(os.Stderr, "unknown writer kind %q\n", cfg.Kind)
		return 2
	}
	var wg sync.WaitGroup
	for _, col := range cfg.Columns {
		c := &column{cfg: &cfg, ops: ops, m: m, col: col, dir: cfg.Dirs[col]}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.run()
		}()
	}
	wg.Wait()
	m.add(record{Ev: "exit", Kind: cfg.Kind})
	return 0
}
