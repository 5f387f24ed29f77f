package metad

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cairn"
	"cairn/internal/versionfile"
)

// churn runs one writer: it makes, closes, renames and deletes files and
// directories under /w<i> until stop is closed, counting in ok the calls
// that succeed.
func churn(m *Metad, i int, stop <-chan struct{}, ok *atomic.Int64) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(uint64(i), 7))
	base := fmt.Sprintf("/w%d", i)
	client := fmt.Sprintf("writer%d", i)
	if m.Mkdirs(ctx, base, 0o755) != nil {
		return
	}
	for n := 0; ; n++ {
		select {
		case <-stop:
			return
		default:
		}
		p := fmt.Sprintf("%s/%d", base, rng.IntN(40))
		var err error
		switch rng.IntN(6) {
		case 0:
			err = m.Mkdir(ctx, p, 0o755)
		case 1:
			_, err = m.Create(ctx, p, cairn.CreateOptions{Client: client})
		case 2:
			err = m.Complete(ctx, cairn.WriterRef{Path: p, Client: client}, nil)
		case 3:
			err = m.Rename(ctx, p, fmt.Sprintf("%s/%d", base, rng.IntN(40)))
		case 4:
			err = m.Delete(ctx, p, true)
		case 5:
			err = m.SetXattr(ctx, p, "user.n", []byte(fmt.Sprint(n)), 0)
		}
		if err == nil {
			ok.Add(1)
		}
	}
}

// TestCheckpointWhileWriting takes checkpoints while eight writers change
// the namespace, each with the writers held at one point (the store's
// lock) so the namespace of that moment is known, and finds each
// checkpoint restores to exactly that namespace, key for key.
func TestCheckpointWhileWriting(t *testing.T) {
	m := openCfg(t, Config{})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var done atomic.Int64
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			churn(m, i, stop, &done)
		}()
	}
	root := t.TempDir()
	type taken struct{ dir, want string }
	var ckpts []taken
	for i := range 4 {
		for done.Load() < int64(200*(i+1)) {
			time.Sleep(time.Millisecond)
		}
		dir := filepath.Join(root, fmt.Sprintf("ckpt%d", i))
		m.st.mu.Lock() // no mutation applies until the checkpoint is taken
		want := dump(t, m)
		err := m.checkpointTo(dir)
		m.st.mu.Unlock()
		must(t, err)
		ckpts = append(ckpts, taken{dir, want})
	}
	close(stop)
	wg.Wait()
	t.Logf("%d successful calls by 8 writers", done.Load())
	for i, c := range ckpts {
		mustCheck(t, c.dir)
		data := filepath.Join(root, fmt.Sprintf("restored%d", i))
		must(t, Restore(c.dir, data, false))
		r, err := Open(Config{Dir: data})
		must(t, err)
		got := dump(t, r)
		must(t, r.Close())
		if got != c.want {
			t.Errorf("checkpoint %d restores to another namespace:\n%s", i, diffLines(c.want, got))
		}
		mustCheck(t, data)
		if i > 0 && c.want == ckpts[i-1].want {
			t.Errorf("checkpoints %d and %d hold the same namespace: the writers did not write between them", i-1, i)
		}
	}
}

func TestCheckpointCall(t *testing.T) {
	m := openCfg(t, Config{})
	ctx := context.Background()
	must(t, m.Mkdirs(ctx, "/a/b", 0o755))
	dir := filepath.Join(t.TempDir(), "ckpt")
	must(t, m.Checkpoint(ctx, dir))
	v, err := versionfile.Read(dir)
	must(t, err)
	if v["namespaceID"] != m.NamespaceID() || v["checkpointTime"] == "" {
		t.Errorf("checkpoint VERSION %v", v)
	}
	must(t, m.Mkdir(ctx, "/after", 0o755))
	data := filepath.Join(t.TempDir(), "data")
	must(t, Restore(dir, data, false))
	r, err := Open(Config{Dir: data})
	must(t, err)
	defer r.Close()
	if r.NamespaceID() != m.NamespaceID() {
		t.Errorf("restored namespace %s, want %s", r.NamespaceID(), m.NamespaceID())
	}
	if _, err := r.Stat(ctx, "/a/b"); err != nil {
		t.Errorf("restored: %v", err)
	}
	if _, err := r.Stat(ctx, "/after"); err == nil {
		t.Error("the restored namespace has a directory made after the checkpoint")
	}
	// The restored store is a copy: writing it leaves the checkpoint as it was.
	must(t, r.Mkdir(ctx, "/new", 0o755))
	mustCheck(t, dir)
}

func TestRestoreRefuses(t *testing.T) {
	m := openCfg(t, Config{})
	ckpt := filepath.Join(t.TempDir(), "ckpt")
	must(t, m.Checkpoint(context.Background(), ckpt))
	formatted := filepath.Join(t.TempDir(), "formatted")
	_, err := Format(formatted, false)
	must(t, err)
	for _, c := range []struct {
		name, ckpt, dir string
		force           bool
		want            string
	}{
		{"formatted target", ckpt, formatted, false, "add --force"},
		{"not a checkpoint", t.TempDir(), filepath.Join(t.TempDir(), "x"), false, "no VERSION"},
		{"onto itself", ckpt, ckpt, true, "both"},
	} {
		if err := Restore(c.ckpt, c.dir, c.force); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error saying %q", c.name, err, c.want)
		}
	}
	must(t, Restore(ckpt, formatted, true))
	mustCheck(t, formatted)
	// A checkpoint of a newer layout is refused, not misread.
	v, _ := versionfile.Read(ckpt)
	v["layoutVersion"] = fmt.Sprint(LayoutVersion + 1)
	must(t, versionfile.Write(ckpt, v))
	if err := Restore(ckpt, filepath.Join(t.TempDir(), "y"), false); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Errorf("newer layout: %v", err)
	}
}

func TestPeriodicCheckpoints(t *testing.T) {
	clk := newFakeClock()
	root := filepath.Join(t.TempDir(), "ckpts")
	m := openCfg(t, Config{Clock: clk, CheckpointDir: root, CheckpointKeep: 2})
	ctx := context.Background()
	var made []string
	for i := range 3 {
		must(t, m.Mkdir(ctx, fmt.Sprintf("/d%d", i), 0o755))
		if i == 2 { // a checkpoint cut short by a crash
			must(t, os.MkdirAll(filepath.Join(root, ".tmp-checkpoint-x", "pebble"), 0o755))
		}
		dir, err := m.periodicCheckpoint()
		must(t, err)
		made = append(made, dir)
		clk.Add(time.Hour)
	}
	es, err := os.ReadDir(root)
	must(t, err)
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	if want := []string{filepath.Base(made[1]), filepath.Base(made[2])}; fmt.Sprint(names) != fmt.Sprint(want) {
		t.Fatalf("checkpoint directory holds %v, want %v", names, want)
	}
	mustCheck(t, made[2])
	data := filepath.Join(t.TempDir(), "data")
	must(t, Restore(made[2], data, false))
	r, err := Open(Config{Dir: data})
	must(t, err)
	defer r.Close()
	if _, err := r.Stat(ctx, "/d2"); err != nil {
		t.Errorf("the newest checkpoint lacks /d2: %v", err)
	}
}
