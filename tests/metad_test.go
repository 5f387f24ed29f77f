package tests

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	"cairn"
	"cairn/client"
	"cairn/rpc"
	"cairn/tests/cluster"
	"cairn/trust"
)

// metadClient dials the cluster's metad as this process's user (the
// superuser of a metad it started), with lease holder name.
func metadClient(t testing.TB, c *cluster.Cluster, name string, id cairn.Identity) *client.Client {
	t.Helper()
	cl, err := client.Dial(c.MetadAddr(), client.Options{Creds: c.ClientCreds(), Name: name, Identity: id})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// metadCheck runs `cairn metad check --data dir` and fails t unless it
// exits 0 with the CLEAN line.
func metadCheck(t testing.TB, dir string) {
	t.Helper()
	out := cluster.Exec(t, cluster.Binary(t), "metad", "check", "--data", dir)
	want := fmt.Sprintf("The metad store in '%s' is CLEAN", dir)
	if out.Code != 0 || cluster.LastLine(out.Stdout) != want {
		t.Errorf("cairn metad check --data %s: exit %d\nstdout:\n%s\nstderr:\n%s", dir, out.Code, out.Stdout, out.Stderr)
	}
}

// nsModel is what one crash-test client believes its directory holds:
// path -> "dir", "open" or "closed".
type nsModel map[string]string

// crashClient runs namespace calls one after another in its own directory
// and keeps the model of what every acknowledged call did. pending is the
// call under way when metad died: it may or may not have happened.
type crashClient struct {
	cl      *client.Client
	dir     string
	rng     *rand.Rand
	model   nsModel
	pending func(nsModel)
	seq     int
}

// step makes one call; it returns false once a call fails.
func (cc *crashClient) step(ctx context.Context) bool {
	cc.seq++
	name := fmt.Sprintf("%s/n%05d", cc.dir, cc.seq)
	pick := func(kind string) string {
		var ps []string
		for p, k := range cc.model {
			if k == kind {
				ps = append(ps, p)
			}
		}
		if len(ps) == 0 {
			return ""
		}
		sort.Strings(ps)
		return ps[cc.rng.IntN(len(ps))]
	}
	var call func() error
	var effect func(nsModel)
	switch op := cc.rng.IntN(10); {
	case op < 2:
		call = func() error { return cc.cl.NS.Mkdir(ctx, name, 0o755) }
		effect = func(m nsModel) { m[name] = "dir" }
	case op < 3:
		call = func() error { return cc.cl.NS.Mkdirs(ctx, name+"/a/b", 0o755) }
		effect = func(m nsModel) { m[name], m[name+"/a"], m[name+"/a/b"] = "dir", "dir", "dir" }
	case op < 6:
		call = func() error {
			_, err := cc.cl.NS.Create(ctx, name, cairn.CreateOptions{Client: cc.cl.Name()})
			return err
		}
		effect = func(m nsModel) { m[name] = "open" }
	case op < 8:
		p := pick("open")
		if p == "" {
			return true
		}
		call = func() error { return cc.cl.NS.Complete(ctx, cairn.WriterRef{Path: p, Client: cc.cl.Name()}, nil) }
		effect = func(m nsModel) { m[p] = "closed" }
	case op < 9:
		p := pick("closed")
		if p == "" {
			return true
		}
		call = func() error { return cc.cl.NS.Rename(ctx, p, name) }
		effect = func(m nsModel) { delete(m, p); m[name] = "closed" }
	default:
		p := pick("closed")
		if p == "" {
			return true
		}
		call = func() error { return cc.cl.NS.Delete(ctx, p, false) }
		effect = func(m nsModel) { delete(m, p) }
	}
	cc.pending = effect
	if err := call(); err != nil {
		return false
	}
	effect(cc.model)
	cc.pending = nil
	return true
}

// actual walks dir over RPC, page by page, into a model.
func actual(t testing.TB, ctx context.Context, cl *client.Client, dir string) nsModel {
	t.Helper()
	m := nsModel{}
	var walk func(string)
	walk = func(d string) {
		es, err := cl.ReadDir(ctx, d)
		if err != nil {
			t.Fatalf("list %s: %v", d, err)
		}
		for _, e := range es {
			p := cairn.Join(d, e.Name)
			switch {
			case e.IsDir():
				m[p] = "dir"
				walk(p)
			case e.Writing:
				m[p] = "open"
			default:
				m[p] = "closed"
			}
		}
	}
	walk(dir)
	return m
}

// TestMetadSurvivesSIGKILL runs eight clients making, closing, renaming
// and deleting files and directories against the real metad, kills metad
// with SIGKILL in the middle of their calls, restarts it, and finds every
// acknowledged call's effect there (and the call under way either done or
// not, whole); `cairn metad check` finds the store clean. Three rounds, a
// kill at a different point in each.
func TestMetadSurvivesSIGKILL(t *testing.T) {
	c := cluster.Start(t, cluster.Config{MetadOnly: true})
	ctx := context.Background()
	const clients = 8
	ccs := make([]*crashClient, clients)
	for i := range ccs {
		ccs[i] = &crashClient{dir: fmt.Sprintf("/crash%d", i), rng: rand.New(rand.NewPCG(uint64(i), 42)), model: nsModel{}}
		cl := metadClient(t, c, fmt.Sprintf("crash-client-%d", i), cairn.Identity{})
		must(t, cl.NS.Mkdir(ctx, ccs[i].dir, 0o755))
	}
	for round, killAfter := range []int64{150, 700, 1500} {
		var acked atomic.Int64
		var wg sync.WaitGroup
		for i, cc := range ccs {
			// A new connection each round: the old one saw metad die.
			cc.cl = metadClient(t, c, fmt.Sprintf("crash-client-%d", i), cairn.Identity{})
			wg.Add(1)
			go func() {
				defer wg.Done()
				for cc.step(ctx) {
					acked.Add(1)
				}
			}()
		}
		deadline := time.Now().Add(2 * time.Minute)
		for acked.Load() < killAfter && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		c.KillMetad(t)
		wg.Wait()
		t.Logf("round %d: metad killed after %d acknowledged calls", round, acked.Load())
		if acked.Load() < killAfter {
			t.Fatalf("round %d: only %d calls acknowledged in 2 minutes", round, acked.Load())
		}
		c.StartMetad(t)
		check := metadClient(t, c, "checker", cairn.Identity{})
		for _, cc := range ccs {
			got := actual(t, ctx, check, cc.dir)
			delete(got, cc.dir)
			if maps.Equal(got, cc.model) {
				continue
			}
			if cc.pending != nil {
				alt := maps.Clone(cc.model)
				cc.pending(alt)
				if maps.Equal(got, alt) {
					cc.model = alt // the call under way was done
					continue
				}
			}
			t.Errorf("round %d, %s after the crash:\n%s", round, cc.dir, modelDiff(cc.model, got))
		}
		c.StopMetad(t)
		metadCheck(t, c.MetadDataDir())
		c.StartMetad(t)
	}
}

func modelDiff(want, got nsModel) string {
	var b strings.Builder
	for _, p := range slices.Sorted(maps.Keys(want)) {
		if got[p] != want[p] {
			fmt.Fprintf(&b, "  %s: want %q, got %q\n", p, want[p], got[p])
		}
	}
	for _, p := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[p]; !ok {
			fmt.Fprintf(&b, "  %s: want nothing, got %q\n", p, got[p])
		}
	}
	return b.String()
}

// TestMetadCheckpointRestore has eight clients each make directories
// 0, 1, 2... in its own directory while `cairn admin -checkpoint` runs.
// A metad restored from the checkpoint holds, for each client, exactly
// the names 0..k-1 for one k: at least every name acknowledged before the
// checkpoint was asked for, none asked for after it returned, and no gap.
func TestMetadCheckpointRestore(t *testing.T) {
	c := cluster.Start(t, cluster.Config{MetadOnly: true})
	ctx := context.Background()
	const clients = 8
	var started, acked [clients]atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range clients {
		cl := metadClient(t, c, fmt.Sprintf("ckpt-client-%d", i), cairn.Identity{})
		dir := fmt.Sprintf("/ck%d", i)
		must(t, cl.NS.Mkdir(ctx, dir, 0o755))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				started[i].Store(int64(n + 1))
				if err := cl.NS.Mkdir(ctx, fmt.Sprintf("%s/%06d", dir, n), 0o755); err != nil {
					t.Errorf("client %d: %v", i, err)
					return
				}
				acked[i].Store(int64(n + 1))
			}
		}()
	}
	for acked[0].Load() < 100 {
		time.Sleep(time.Millisecond)
	}
	var lo, hi [clients]int64
	for i := range clients {
		lo[i] = acked[i].Load()
	}
	// A checkpoint goes under metad's --checkpoint-dir.
	ckpt := filepath.Join(c.MetadDataDir(), "checkpoints", "ckpt")
	out, code := c.Run(t, "admin", "-checkpoint", ckpt)
	for i := range clients {
		hi[i] = started[i].Load()
	}
	for acked[0].Load() < hi[0]+100 {
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if code != 0 || !strings.Contains(out, ckpt) {
		t.Fatalf("cairn admin -checkpoint: exit %d, %q", code, out)
	}
	metadCheck(t, ckpt)

	r := cluster.Start(t, cluster.Config{MetadOnly: true, Restore: ckpt})
	rcl := metadClient(t, r, "reader", cairn.Identity{})
	for i := range clients {
		es, err := rcl.ReadDir(ctx, fmt.Sprintf("/ck%d", i))
		must(t, err)
		for j, e := range es {
			if want := fmt.Sprintf("%06d", j); e.Name != want {
				t.Fatalf("client %d: restored entry %d is %s, want %s (a gap)", i, j, e.Name, want)
			}
		}
		if k := int64(len(es)); k < lo[i] || k > hi[i] {
			t.Errorf("client %d: the checkpoint holds %d directories; %d were acknowledged before it was asked for and %d asked for when it returned", i, k, lo[i], hi[i])
		}
		t.Logf("client %d: %d ≤ %d ≤ %d", i, lo[i], len(es), hi[i])
	}
	r.StopMetad(t)
	metadCheck(t, r.MetadDataDir())
}

// TestMetadLeaseHardLimit: a writer that stops renewing loses its file to
// metad's own recovery after the hard limit; one that renews keeps its.
func TestMetadLeaseHardLimit(t *testing.T) {
	c := cluster.Start(t, cluster.Config{MetadOnly: true, MetadArgs: []string{"--lease-soft-limit", "1s", "--lease-hard-limit", "2s"}})
	ctx := context.Background()
	cl := metadClient(t, c, "renewer", cairn.Identity{})
	for _, p := range []struct{ path, holder string }{{"/gone", "silent-client"}, {"/kept", "renewer"}} {
		if _, err := cl.NS.Create(ctx, p.path, cairn.CreateOptions{Client: p.holder}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(time.Minute)
	for {
		must(t, cl.NS.RenewLease(ctx, "renewer"))
		fi, err := cl.NS.Stat(ctx, "/gone")
		must(t, err)
		if !fi.Writing {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("metad did not recover /gone within a minute of its 2 s hard limit")
		}
		time.Sleep(100 * time.Millisecond)
	}
	fi, err := cl.NS.Stat(ctx, "/kept")
	must(t, err)
	if !fi.Writing {
		t.Error("metad recovered /kept, whose writer renews")
	}
	c.WaitLog(t, "metad", 10*time.Second, "lease recovered", "/gone", "hard limit passed")
}

// TestMetadPermissionsOverRPC: identities asserted over gRPC are checked;
// a call asserting none runs as nobody; --permissions=false checks
// nothing.
func TestMetadPermissionsOverRPC(t *testing.T) {
	c := cluster.Start(t, cluster.Config{MetadOnly: true})
	ctx := context.Background()
	root := metadClient(t, c, "root", cairn.Identity{})
	alice := metadClient(t, c, "alice", cairn.Identity{User: "alice", Groups: []string{"staff"}})
	bob := metadClient(t, c, "bob", cairn.Identity{User: "bob", Groups: []string{"users"}})
	must(t, root.NS.Mkdirs(ctx, "/home/alice", 0o755))
	owner, perm := "alice", fs.FileMode(0o700)
	if _, err := root.NS.SetAttr(ctx, "/home/alice", cairn.Attr{Owner: &owner, Perm: &perm}); err != nil {
		t.Fatal(err)
	}
	fi, err := alice.NS.Create(ctx, "/home/alice/f", cairn.CreateOptions{Client: "alice", Perm: 0o600})
	if err != nil || fi.Owner != "alice" || fi.Group != "staff" {
		t.Fatalf("alice creates in her home: %+v, %v", fi, err)
	}
	if _, err := bob.NS.Stat(ctx, "/home/alice/f"); !errors.Is(err, cairn.ErrAccess) {
		t.Errorf("bob stats in alice's 0700 home: %v, want ErrAccess", err)
	}
	if err := bob.NS.Mkdir(ctx, "/bob", 0o755); !errors.Is(err, cairn.ErrAccess) {
		t.Errorf("bob makes a directory in /: %v, want ErrAccess", err)
	}
	if err := bob.NS.Checkpoint(ctx, "x"); !errors.Is(err, cairn.ErrPermission) {
		t.Errorf("bob asks for a checkpoint: %v, want ErrPermission", err)
	}
	// A raw connection of a mount that asserts no identity.
	mountCreds := c.IssueCert(t, trust.Peer{Role: trust.RoleMount, Name: "host"}, filepath.Join(t.TempDir(), "mount"))
	conn, err := grpc.NewClient(c.MetadAddr(), rpc.Transport(trust.NewHolder(mountCreds)))
	must(t, err)
	defer conn.Close()
	anon := rpc.NewNamespaceClient(conn)
	if err := anon.Mkdir(ctx, "/anon", 0o755); !errors.Is(err, cairn.ErrAccess) || !strings.Contains(err.Error(), "user=nobody") {
		t.Errorf("a call without identity makes a directory in /: %v, want ErrAccess for nobody", err)
	}
	if _, err := anon.Stat(ctx, "/home"); err != nil {
		t.Errorf("a call without identity stats /home (0755): %v", err)
	}

	c.StopMetad(t)
	off := cluster.Start(t, cluster.Config{MetadOnly: true, MetadArgs: []string{"--permissions=false"}})
	bobOff := metadClient(t, off, "bob", cairn.Identity{User: "bob", Groups: []string{"users"}})
	must(t, bobOff.NS.Mkdir(ctx, "/bob", 0o755))
	if fi, _ := bobOff.NS.Stat(ctx, "/bob"); fi.Owner != "bob" {
		t.Errorf("with --permissions=false the owner is %q, want bob", fi.Owner)
	}
}

// TestAdminReport: `cairn admin -report` lists every blockd in dfsadmin's
// layout; `cairn metad check` refuses a running metad's directory.
func TestAdminReport(t *testing.T) {
	c := cluster.Start(t, cluster.Config{Blockds: 2})
	out, code := c.Run(t, "admin", "-report")
	if code != 0 || !strings.Contains(out, "Live datanodes (2):") || !strings.HasPrefix(out, "Configured Capacity: ") {
		t.Errorf("cairn admin -report: exit %d\n%s", code, out)
	}
	for _, dir := range c.BlockdDataDirs() {
		id, err := os.ReadFile(filepath.Join(dir, "VERSION"))
		must(t, err)
		sid := strings.TrimPrefix(findLine(string(id), "storageID="), "storageID=")
		if !strings.Contains(out, "("+sid+")") {
			t.Errorf("the report does not name blockd %s:\n%s", sid, out)
		}
	}
	res := cluster.Exec(t, cluster.Binary(t), "metad", "check", "--data", c.MetadDataDir())
	if res.Code != 2 || !strings.Contains(res.Stderr, "running") {
		t.Errorf("check of a running metad's directory: exit %d, %s", res.Code, res.Stderr)
	}
}

func findLine(s, prefix string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestMetadPeriodicCheckpoints: with --checkpoint-dir metad writes
// checkpoints on its own while it serves and keeps the newest
// --checkpoint-keep; each one checks clean and holds the namespace.
func TestMetadPeriodicCheckpoints(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ckpts")
	c := cluster.Start(t, cluster.Config{MetadOnly: true, MetadArgs: []string{
		"--checkpoint-dir", dir, "--checkpoint-interval", "200ms", "--checkpoint-keep", "2"}})
	ctx := context.Background()
	cl := metadClient(t, c, "writer", cairn.Identity{})
	must(t, cl.NS.Mkdir(ctx, "/kept", 0o755))
	c.WaitLog(t, "metad", time.Minute, "old checkpoint removed")
	c.StopMetad(t)
	es, err := os.ReadDir(dir)
	must(t, err)
	var ckpts []string
	for _, e := range es {
		if strings.HasPrefix(e.Name(), "checkpoint-") {
			ckpts = append(ckpts, filepath.Join(dir, e.Name()))
		}
	}
	if len(ckpts) != 2 {
		t.Fatalf("%s holds %v, want the 2 newest checkpoints", dir, ckpts)
	}
	newest := ckpts[len(ckpts)-1]
	metadCheck(t, newest)
	r := cluster.Start(t, cluster.Config{MetadOnly: true, Restore: newest})
	if _, err := metadClient(t, r, "reader", cairn.Identity{}).NS.Stat(ctx, "/kept"); err != nil {
		t.Errorf("the newest checkpoint lacks /kept: %v", err)
	}
}
