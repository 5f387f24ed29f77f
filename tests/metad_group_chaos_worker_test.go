package tests

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"cairn"
	"cairn/client"
)

// chaosOpTimeout bounds one op of a chaos worker: longer than a client's
// search for a leader (client.FailoverTimeout), so a whole-group crash
// shows as an error, not a hang.
const chaosOpTimeout = 90 * time.Second

// chaosOps are a worker's ops and how often each is drawn. "stat" is a
// read: its answer is checked against the model during the run; the
// others change the namespace.
var chaosOps = []struct {
	name   string
	weight int
}{
	{"create", 28}, {"create-mount", 5}, {"append-mount", 3}, {"mkdir", 7}, {"rename", 8}, {"rename-dir", 2},
	{"delete", 7}, {"delete-dir", 1}, {"append", 10}, {"link", 5}, {"stat", 12},
}

// chaosWorker drives one directory of TestMetadGroupChaos through the
// client library and the mount, keeping its model (chaosModel) exact.
type chaosWorker struct {
	id    int
	m     *chaosModel
	cl    *client.Client
	mnt   string // the mount point
	rng   *rand.Rand
	tally *chaosTally

	// lastAck is when the last acknowledged change began (UnixNano): a
	// worker makes progress after a heal once one begun after it is
	// acknowledged.
	lastAck atomic.Int64
	// current names the op under way, for the report of a stuck worker.
	current atomic.Pointer[string]
}

// chaosTally is what the workers did, together.
type chaosTally struct {
	start  time.Time // the report's times count from here
	mu     sync.Mutex
	acked  map[string]int // acknowledged changes, by op
	failed map[string]int // failed ops, by "op: kind of error"
	reads  int            // reads that agreed with the model
	// failedChanges are the changes that failed: each left a name or a
	// file's contents uncertain.
	failedChanges int
	acks          []chaosAck // every acknowledged change
	// wrong are answers that disagreed with the model during the run.
	wrong []string
}

// chaosAck is when an acknowledged change began and was acknowledged.
type chaosAck struct{ start, end time.Time }

func newChaosTally(start time.Time) *chaosTally {
	return &chaosTally{start: start, acked: map[string]int{}, failed: map[string]int{}}
}

func (c *chaosTally) record(op string, change bool, start time.Time, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case err != nil:
		c.failed[op+": "+errKind(err)]++
		if change {
			c.failedChanges++
		}
	case change:
		c.acked[op]++
		c.acks = append(c.acks, chaosAck{start, time.Now()})
	default:
		c.reads++
	}
}

func (c *chaosTally) wrongAnswer(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wrong = append(c.wrong, fmt.Sprintf(format, args...)+fmt.Sprintf(" [at %v]", time.Since(c.start).Round(time.Millisecond)))
}

// total is the number of acknowledged changes.
func (c *chaosTally) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.acks)
}

// errKind names the kind of an error, for counting: an errno from the
// mount, a cairn error's kind, else the start of its text.
func errKind(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	if k := cairn.KindOf(err); k != cairn.KindOther {
		return k.String()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "deadline exceeded"
	}
	s := err.Error()
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return s
}

// run draws and runs ops until stop is closed, backing off after a
// failure (50 ms doubling to 2 s) and going on.
func (w *chaosWorker) run(stop <-chan struct{}) {
	var backoff time.Duration
	for {
		select {
		case <-stop:
			return
		default:
		}
		start := time.Now()
		op, change, err := w.step()
		w.tally.record(op, change, start, err)
		if err == nil {
			if change {
				w.lastAck.Store(start.UnixNano())
			}
			backoff = 0
			continue
		}
		backoff = min(max(2*backoff, 50*time.Millisecond), 2*time.Second)
		select {
		case <-stop:
			return
		case <-time.After(backoff):
		}
	}
}

// step runs one op drawn at random; an op with nothing to work on (no
// file to append to, say) creates a file instead.
func (w *chaosWorker) step() (op string, change bool, err error) {
	n := 0
	for _, o := range chaosOps {
		n += o.weight
	}
	r := w.rng.IntN(n)
	for _, o := range chaosOps {
		if r -= o.weight; r < 0 {
			op = o.name
			break
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), chaosOpTimeout)
	defer cancel()
	m := w.m
	var ran bool
	switch op {
	case "create-mount":
		ran, err = w.createMount()
	case "append-mount":
		ran, err = w.appendMount()
	case "mkdir":
		ran, err = w.mkdir(ctx)
	case "rename":
		ran, err = w.rename(ctx)
	case "rename-dir":
		ran, err = w.renameDir(ctx)
	case "delete":
		ran, err = w.delete(ctx, m.pickFile(w.rng), false)
	case "delete-dir":
		ran, err = w.delete(ctx, m.pick(w.rng, func(p string, e *chaosEntry) bool { return e.dir && p != m.root }), true)
	case "append":
		ran, err = w.appendClient(ctx)
	case "link":
		ran, err = w.link(ctx)
	case "stat":
		ran, err = w.stat(ctx)
		if ran {
			return op, false, err
		}
	}
	if !ran {
		op = "create"
		err = w.create(ctx)
	}
	return op, true, err
}

func (w *chaosWorker) doing(what string) { w.current.Store(&what) }

// chaosData returns bytes to write: mostly a few KiB, sometimes more than
// a block (1 MiB in the test).
func chaosData(rng *rand.Rand) []byte {
	var n int
	switch r := rng.IntN(100); {
	case r < 80:
		n = 1 + rng.IntN(8<<10)
	case r < 96:
		n = 1 + rng.IntN(128<<10)
	default:
		n = 1 + rng.IntN(5<<19)
	}
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := rng.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// create makes a new file with content through the client library:
// create, write, close.
func (w *chaosWorker) create(ctx context.Context) error {
	m := w.m
	p := m.newName(m.pickDir(w.rng, 2), "f")
	data := chaosData(w.rng)
	w.doing("create " + p)
	err := writeClose(func() (io.WriteCloser, error) { return w.cl.Create(ctx, p, 0o644) }, data)
	if err != nil {
		m.uncertain(p)
		return err
	}
	m.addFile(p, data, false)
	return nil
}

// createMount makes a new file through the mount: open O_EXCL, write,
// fsync, close, each an ordinary system call.
func (w *chaosWorker) createMount() (bool, error) {
	m := w.m
	p := m.newName(m.root, "m")
	data := chaosData(w.rng)
	w.doing("create through the mount " + p)
	err := func() error {
		f, err := os.OpenFile(w.mnt+p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return err
		}
		if _, err := f.Write(data); err != nil {
			f.Close()
			return err
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}()
	if err != nil {
		m.uncertain(p)
		return true, err
	}
	m.addFile(p, data, true)
	return true, nil
}

// appendMount appends to a file made through the mount, through the
// mount (O_APPEND).
func (w *chaosWorker) appendMount() (bool, error) {
	m := w.m
	p := m.pick(w.rng, func(p string, e *chaosEntry) bool { return !e.dir && e.ino.viaMount })
	if p == "" {
		return false, nil
	}
	data := chaosData(w.rng)
	w.doing("append through the mount " + p)
	err := writeClose(func() (io.WriteCloser, error) { return os.OpenFile(w.mnt+p, os.O_WRONLY|os.O_APPEND, 0) }, data)
	if err != nil {
		m.appendFailed(p)
		return true, err
	}
	m.appendTo(p, data)
	return true, nil
}

func (w *chaosWorker) mkdir(ctx context.Context) (bool, error) {
	m := w.m
	p := m.newName(m.pickDir(w.rng, 1), "d")
	w.doing("mkdir " + p)
	if err := w.cl.NS.Mkdir(ctx, p, 0o755); err != nil {
		m.uncertain(p)
		return true, err
	}
	m.addDir(p)
	return true, nil
}

// rename moves a file to a new name, or over another file (a quarter of
// the time).
func (w *chaosWorker) rename(ctx context.Context) (bool, error) {
	m := w.m
	src := m.pickFile(w.rng)
	if src == "" {
		return false, nil
	}
	dst := ""
	if w.rng.IntN(4) == 0 {
		dst = m.pick(w.rng, func(p string, e *chaosEntry) bool {
			return !e.dir && !e.ino.viaMount && e.ino != m.entries[src].ino
		})
	}
	if dst == "" {
		dst = m.newName(m.pickDir(w.rng, 2), "r")
	}
	w.doing("rename " + src + " " + dst)
	if err := w.cl.NS.Rename(ctx, src, dst); err != nil {
		m.uncertain(src, dst)
		return true, err
	}
	m.rename(src, dst)
	return true, nil
}

// renameDir moves a directory, with what it holds, to a new name in the
// worker's directory.
func (w *chaosWorker) renameDir(ctx context.Context) (bool, error) {
	m := w.m
	src := m.pick(w.rng, func(p string, e *chaosEntry) bool { return e.dir && p != m.root })
	if src == "" {
		return false, nil
	}
	dst := m.newName(m.root, "d")
	w.doing("rename " + src + " " + dst)
	if err := w.cl.NS.Rename(ctx, src, dst); err != nil {
		m.uncertain(src, dst)
		return true, err
	}
	m.rename(src, dst)
	return true, nil
}

func (w *chaosWorker) delete(ctx context.Context, p string, recursive bool) (bool, error) {
	if p == "" {
		return false, nil
	}
	w.doing("delete " + p)
	if err := w.cl.NS.Delete(ctx, p, recursive); err != nil {
		w.m.uncertain(p)
		return true, err
	}
	w.m.remove(p)
	return true, nil
}

// appendClient reopens a closed file through the client library and
// writes at its end.
func (w *chaosWorker) appendClient(ctx context.Context) (bool, error) {
	m := w.m
	p := m.pickFile(w.rng)
	if p == "" {
		return false, nil
	}
	data := chaosData(w.rng)
	w.doing("append " + p)
	err := writeClose(func() (io.WriteCloser, error) { return w.cl.Append(ctx, p) }, data)
	if err != nil {
		m.appendFailed(p)
		return true, err
	}
	m.appendTo(p, data)
	return true, nil
}

// link gives a file another name (a hard link).
func (w *chaosWorker) link(ctx context.Context) (bool, error) {
	m := w.m
	src := m.pickFile(w.rng)
	if src == "" {
		return false, nil
	}
	dst := m.newName(m.pickDir(w.rng, 2), "l")
	w.doing("link " + src + " " + dst)
	if err := w.cl.NS.Link(ctx, src, dst); err != nil {
		m.uncertain(dst)
		return true, err
	}
	m.link(src, dst)
	return true, nil
}

// stat reads a known name back during the run: an answer that
// disagrees with the model (a stale read, a lost change) is wrong; an
// error is only counted.
func (w *chaosWorker) stat(ctx context.Context) (bool, error) {
	m := w.m
	p := m.pick(w.rng, func(string, *chaosEntry) bool { return true })
	e := m.entries[p]
	w.doing("stat " + p)
	fi, err := w.cl.NS.Stat(ctx, p)
	switch {
	case errors.Is(err, cairn.ErrNotExist):
		w.tally.wrongAnswer("stat %s during the run: %v, but it was made and acknowledged", p, err)
	case err != nil:
	case fi.IsDir() != e.dir:
		w.tally.wrongAnswer("stat %s during the run: a directory %v, want %v", p, fi.IsDir(), e.dir)
	case !e.dir && fi.Size != int64(len(e.ino.data)):
		w.tally.wrongAnswer("stat %s during the run: size %d, want %d", p, fi.Size, len(e.ino.data))
	}
	return true, err
}

// writeClose opens a file with open, writes data and closes it: the
// close's error is the one that says whether the bytes are in.
func writeClose(open func() (io.WriteCloser, error), data []byte) error {
	f, err := open()
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
