package tests

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"cairn"
	"cairn/client"
	"cairn/tests/cluster"
	"cairn/tests/netns"
)

var (
	chaosDuration = flag.Duration("crash.group", defaultChaosDuration(), "TestMetadGroupChaos: inject faults for this long (make crash: 10m; every kind of fault runs once however short)")
	chaosSeed     = flag.Uint64("crash.groupseed", 0, "TestMetadGroupChaos: seed of the faults and the workload (0: from the clock)")
	chaosWorkers  = flag.Int("crash.groupworkers", 4, "TestMetadGroupChaos: how many workers change the namespace at once")
)

// defaultChaosDuration is the short variant make test runs: 60 s with $CI
// set, 45 s elsewhere.
func defaultChaosDuration() time.Duration {
	if os.Getenv("CI") != "" {
		return 60 * time.Second
	}
	return 45 * time.Second
}

// chaosFaultKinds are the faults TestMetadGroupChaos injects. The first
// round runs each once, in an order drawn from the seed; later ones are
// drawn at random.
var chaosFaultKinds = []string{"kill-leader", "kill-follower", "cut-leader", "cut-follower", "crash-group", "cut-blockd", "pause-leader"}

// chaosFault is one fault of the timeline.
type chaosFault struct {
	kind, target string
	at           time.Time     // injected
	down         time.Duration // until healed
	// failover: until a member other than the old leader leads (leader
	// faults), or until one leads after the restart (crash-group).
	failover time.Duration
	healed   time.Time
	note     string
}

// TestMetadGroupChaos runs three metads in a Raft group, each on a host of
// its own (tests/netns), three blockds on hosts of their own (replication
// 2), a mount given the members' list and a client library given it too.
// For -crash.group (45 s; 60 s in CI; 10 minutes in make crash) four
// workers (-crash.groupworkers), each in a directory of its own, create
// files with content (through the client library, and some through the
// mount: write, fsync, close), make directories, rename files and
// directories, delete, append to closed files and make hard links,
// keeping an exact model of what was acknowledged (chaosModel), while
// faults drawn from a seed (-crash.groupseed) strike one at a time: the
// leader or a follower SIGKILLed and restarted, cut off the network and
// brought back, the whole group SIGKILLed and restarted, a blockd's host
// cut off, the leader paused (SIGSTOP) past the election timeout and
// continued. After every heal each worker must make progress. At the end
// every acknowledged op must hold, read back through the client library
// (and some files through the mount), no deleted name may be back, fsck
// is HEALTHY and the three members' namespace digests agree. The summary
// (ops acknowledged, uncertain and lost, faults, longest failover, the
// timeline) is logged and written to $CAIRN_CHAOS_OUT when set; what was
// lost says when it was acknowledged, a wrong read when it was made, and
// a failed run logs the members' warnings and changes of leadership;
// $CAIRN_CHAOS_LOGS=DIR keeps the daemons' logs and the members' stores
// there; $CAIRN_CHAOS_DEBUG=1 runs the members with --debug.
func TestMetadGroupChaos(t *testing.T) {
	seed := *chaosSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (-crash.groupseed=%d repeats the faults), faults for %v", seed, seed, *chaosDuration)
	rng := rand.New(rand.NewPCG(seed, 0x63686173))

	nt := netns.New(t)
	var memberHosts, blockdHosts []cluster.Host
	var mh, bh []*netns.Host
	for range 3 {
		h := nt.AddHost(t, "")
		memberHosts, mh = append(memberHosts, h), append(mh, h)
	}
	for range 3 {
		h := nt.AddHost(t, "")
		blockdHosts, bh = append(blockdHosts, h), append(bh, h)
	}
	var metadArgs []string
	if os.Getenv("CAIRN_CHAOS_DEBUG") != "" {
		metadArgs = append(metadArgs, "--debug")
	}
	g := cluster.StartGroup(t, cluster.GroupConfig{MemberHosts: memberHosts, BlockdHosts: blockdHosts, Blockds: 3,
		Replication: 2, BlockSize: 1 << 20, DeadAfter: 5 * time.Second, MetadArgs: metadArgs})
	if dir := os.Getenv("CAIRN_CHAOS_LOGS"); dir != "" {
		// Run before the cluster's cleanup removes the logs.
		t.Cleanup(func() { keepChaosLogs(t, g, dir) })
	}
	// A failed run says what the members saw (CI keeps nothing else).
	t.Cleanup(func() {
		if t.Failed() {
			t.Log("\n" + chaosLogExcerpts(g, 150))
		}
	})
	g.WaitLeader(t, -1, 30*time.Second)
	mnt := g.Mount(t)
	cl, err := client.Dial(g.Members(), client.Options{Creds: g.ClientCreds()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	if err := cl.NS.Mkdirs(ctx, "/chaos/probe", 0o755); err != nil {
		t.Fatal(err)
	}

	// start: times in the report count from here.
	start := time.Now()
	tally := newChaosTally(start)
	var workers []*chaosWorker
	for i := range *chaosWorkers {
		root := fmt.Sprintf("/chaos/w%d", i)
		if err := cl.NS.Mkdir(ctx, root, 0o755); err != nil {
			t.Fatal(err)
		}
		w := &chaosWorker{id: i, m: newChaosModel(root), cl: cl, mnt: mnt, rng: rand.New(rand.NewPCG(seed, uint64(i))), tally: tally}
		w.doing("starting")
		workers = append(workers, w)
	}
	stop := make(chan struct{})
	var stopOnce sync.Once
	stopWorkers := func() { stopOnce.Do(func() { close(stop) }) }
	defer stopWorkers()
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Add(1)
		go func() { defer wg.Done(); w.run(stop) }()
	}

	// The faults, one at a time, each healed before the next.
	probes := &chaosProbes{}
	order := rng.Perm(len(chaosFaultKinds))
	var faults []*chaosFault
	for n := 0; n < len(order) || time.Since(start) < *chaosDuration; n++ {
		time.Sleep(500*time.Millisecond + jitter(rng, 1500*time.Millisecond))
		kind := chaosFaultKinds[rng.IntN(len(chaosFaultKinds))]
		if n < len(order) {
			kind = chaosFaultKinds[order[n]]
		}
		before := tally.total()
		f := injectChaos(t, g, mh, bh, cl, rng, probes, kind, n)
		faults = append(faults, f)
		t.Logf("fault %d at %v: %s %s, down %v, failover %v%s; %d changes acknowledged since the last fault",
			n, f.at.Sub(start).Round(time.Millisecond), f.kind, f.target, f.down.Round(time.Millisecond),
			f.failover.Round(time.Millisecond), f.note, tally.total()-before)
		waitChaosProgress(t, workers, tally, f.healed)
	}
	end := time.Now()
	stopWorkers()
	waitChaosWorkers(t, &wg, workers)

	// Everything healed: a leader, and every member applied up to it.
	l := g.WaitLeader(t, -1, time.Minute)
	st, err := g.Status(t, l)
	if err != nil {
		t.Fatal(err)
	}
	for i := range g.Size() {
		waitApplied(t, g, i, st.Applied)
	}

	// Every acknowledged op holds.
	var lost []string
	checked, uncertain := 0, 0
	for _, w := range workers {
		c, u := w.m.counts()
		checked, uncertain = checked+c, uncertain+u
		lost = append(lost, verifyChaosModel(ctx, t, cl, w.m, start)...)
		lost = append(lost, verifyChaosMount(t, mnt, w.m, 5, start)...)
	}
	lost = append(lost, probes.verify(ctx, t, cl)...)
	tally.mu.Lock()
	wrong := slices.Clone(tally.wrong)
	tally.mu.Unlock()

	report := chaosReport(seed, start, end, faults, tally, checked, uncertain, lost, wrong, probes)
	t.Log("\n" + report)
	if p := os.Getenv("CAIRN_CHAOS_OUT"); p != "" {
		if err := os.WriteFile(p, []byte(report), 0o644); err != nil {
			t.Errorf("writing the report: %v", err)
		}
	}
	for _, s := range lost {
		t.Errorf("lost: %s", s)
	}
	for _, s := range append(wrong, probes.wrong...) {
		t.Errorf("wrong answer: %s", s)
	}

	// The blocks are all there once replication settles, and the three
	// stores hold one namespace. The leader goes on changing the
	// namespace by itself (it recovers the leases of the writers that
	// failed, say), and the two members still running after the first
	// is stopped would apply such a change without it: safe mode, on
	// by hand, stops that, and every member applies what the leader
	// has before they are stopped.
	chaosWaitHealthy(t, g, 2*time.Minute)
	if out, code := g.Run(t, "admin", "-safemode", "enter"); code != 0 {
		t.Fatalf("admin -safemode enter: exit %d: %s", code, out)
	}
	l = g.WaitLeader(t, -1, time.Minute)
	if st, err = g.Status(t, l); err != nil {
		t.Fatal(err)
	}
	for i := range g.Size() {
		waitApplied(t, g, i, st.Applied)
	}
	if digests, same := stoppedDigests(t, g); !same {
		t.Errorf("the members' namespaces differ: %v", digests)
		if dir := os.Getenv("CAIRN_CHAOS_LOGS"); dir != "" {
			for i := range g.Size() {
				keep := filepath.Join(dir, fmt.Sprintf("data-metad%d", i))
				if out := cluster.Exec(t, "cp", "-a", g.MemberDir(i), keep); out.Code != 0 {
					t.Errorf("keeping metad%d's store: %s", i, out.Stderr)
				}
			}
			t.Logf("the members' stores are kept in %s", dir)
		}
	}
}

// injectChaos injects one fault of kind, heals it, and waits until every
// member it touched has caught up with the leader, so that never more
// than one member is down or cut off at a time (but in crash-group).
func injectChaos(t *testing.T, g *cluster.Group, mh, bh []*netns.Host, cl *client.Client, rng *rand.Rand, probes *chaosProbes, kind string, n int) *chaosFault {
	t.Helper()
	f := &chaosFault{kind: kind}
	downFor := func() time.Duration { return time.Second + jitter(rng, 3*time.Second) }
	heal := func() { f.healed = time.Now(); f.down = f.healed.Sub(f.at) }
	l := g.WaitLeader(t, -1, time.Minute)
	other := (l + 1 + rng.IntN(g.Size()-1)) % g.Size()
	member := func(i int) string { return fmt.Sprintf("metad%d", i) }
	failover := func(old int) { g.WaitLeader(t, old, time.Minute); f.failover = time.Since(f.at) }
	switch kind {
	case "kill-leader":
		f.target, f.at = member(l), time.Now()
		g.Kill(t, l)
		failover(l)
		sleepUntil(f.at.Add(downFor()))
		g.Restart(t, l)
		heal()
		catchUp(t, g, l)
	case "kill-follower":
		f.target, f.at = member(other), time.Now()
		g.Kill(t, other)
		time.Sleep(downFor())
		g.Restart(t, other)
		heal()
		catchUp(t, g, other)
	case "cut-leader":
		f.target, f.at = member(l), time.Now()
		mh[l].Cut(t)
		failover(l)
		sleepUntil(f.at.Add(downFor()))
		mh[l].Restore(t)
		heal()
		catchUp(t, g, l)
	case "cut-follower":
		f.target, f.at = member(other), time.Now()
		mh[other].Cut(t)
		time.Sleep(downFor())
		mh[other].Restore(t)
		heal()
		catchUp(t, g, other)
	case "crash-group":
		f.target, f.at = "all members", time.Now()
		for i := range g.Size() {
			g.Kill(t, i)
		}
		time.Sleep(downFor() / 2)
		var took []string
		for i := range g.Size() {
			at := time.Now()
			g.Restart(t, i)
			took = append(took, time.Since(at).Round(time.Millisecond).String())
		}
		heal()
		f.note = fmt.Sprintf(" (the restarts took %s)", strings.Join(took, ", "))
		g.WaitLeader(t, -1, time.Minute)
		f.failover = time.Since(f.healed)
		for i := range g.Size() {
			catchUp(t, g, i)
		}
	case "cut-blockd":
		b := rng.IntN(len(bh))
		f.target, f.at = fmt.Sprintf("blockd%d", b), time.Now()
		bh[b].Cut(t)
		time.Sleep(2*time.Second + jitter(rng, 4*time.Second))
		bh[b].Restore(t)
		heal()
	case "pause-leader":
		f.target = member(l)
		f.note = pauseLeader(t, g, cl, l, f, probes, n, 1500*time.Millisecond+jitter(rng, 2*time.Second))
		heal()
		catchUp(t, g, l)
	default:
		t.Fatalf("no fault %q", kind)
	}
	return f
}

// pauseLeader stops leader l (SIGSTOP) for pause, longer than the
// election timeout. Meanwhile a new leader makes a directory; a client
// of l alone, connected before the pause, sends l a stat of that
// directory and a mkdir, which l reads only once continued (SIGCONT),
// deposed: the stat must not say the directory is missing (a stale
// read), and a mkdir l acknowledges must hold like any other.
func pauseLeader(t *testing.T, g *cluster.Group, cl *client.Client, l int, f *chaosFault, probes *chaosProbes, n int, pause time.Duration) string {
	t.Helper()
	pc, err := client.Dial(g.MemberAddr(l), client.Options{Creds: g.ClientCreds()})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := pc.NS.Stat(ctx, "/chaos/probe"); err != nil {
		t.Logf("pause-leader: metad%d does not answer before the pause (%v); no probe", l, err)
		pc = nil
	}
	f.at = time.Now()
	g.Pause(t, l)
	g.WaitLeader(t, l, time.Minute)
	f.failover = time.Since(f.at)
	marker := fmt.Sprintf("/chaos/probe/new%d", n)
	markerErr := cl.NS.Mkdir(ctx, marker, 0o755)
	probes.add(marker, markerErr)
	stale := fmt.Sprintf("/chaos/probe/deposed%d", n)
	statc, mkdirc := make(chan error, 1), make(chan error, 1)
	if pc != nil {
		go func() { _, err := pc.NS.Stat(ctx, marker); statc <- err }()
		go func() { mkdirc <- pc.NS.Mkdir(ctx, stale, 0o755) }()
	}
	sleepUntil(f.at.Add(pause))
	g.Resume(t, l)
	if pc == nil {
		return ""
	}
	statErr, mkdirErr := <-statc, <-mkdirc
	probes.add(stale, mkdirErr)
	probes.answers = append(probes.answers, fmt.Sprintf("pause %d: the deposed metad%d answered stat: %v; mkdir: %v", n, l, errText(statErr), errText(mkdirErr)))
	if markerErr == nil && errors.Is(statErr, cairn.ErrNotExist) {
		probes.wrong = append(probes.wrong, fmt.Sprintf("the deposed leader metad%d said %s, made by the new leader during its pause, is missing (a stale read): %v", l, marker, statErr))
	}
	return fmt.Sprintf(" (its stat after waking: %s; its mkdir: %s)", errText(statErr), errText(mkdirErr))
}

// keepChaosLogs copies every process's log into dir ($CAIRN_CHAOS_LOGS).
func keepChaosLogs(t *testing.T, g *cluster.Group, dir string) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Error(err)
		return
	}
	names := []string{"mount0"}
	for i := range g.Size() {
		names = append(names, fmt.Sprintf("metad%d", i))
	}
	for i := range g.Blockds() {
		names = append(names, fmt.Sprintf("blockd%d", i))
	}
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n+".log"), []byte(g.Log(n)), 0o644); err != nil {
			t.Error(err)
		}
	}
	t.Logf("logs kept in %s", dir)
	// The members' stores and Raft logs are kept too: each member is
	// killed first, so its directory is not copied while it changes.
	for i := range g.Size() {
		if g.Running(i) {
			g.Kill(t, i)
		}
		keep := filepath.Join(dir, fmt.Sprintf("data-metad%d", i))
		_ = os.RemoveAll(keep)
		if out := cluster.Exec(t, "cp", "-a", g.MemberDir(i), keep); out.Code != 0 {
			t.Errorf("keeping metad%d's store: %s", i, out.Stderr)
		}
	}
	t.Logf("the members' stores are kept in %s", dir)
}

// chaosNotable picks the lines of a member's log worth reading after a
// failed run: warnings and errors, and the changes of leadership, safe
// mode and the pipeline of entries.
var chaosNotable = []string{"\twarn\t", "\terror\t", "leading the metad group", "no longer the leader", "safe mode",
	"dropped", "member started", "pipeline of proposals reopened", "behind the newest snapshot", "=== "}

// chaosNoise are warnings every cut brings, many times over.
var chaosNoise = []string{"\tdebug\t", "failed to heartbeat", "failed to appendEntries", "failed to make requestVote", "failed to contact"}

// chaosLogExcerpts returns the last max notable lines of each member's
// log.
func chaosLogExcerpts(g *cluster.Group, max int) string {
	var b strings.Builder
	for i := range g.Size() {
		var keep []string
		for _, l := range strings.Split(g.Log(fmt.Sprintf("metad%d", i)), "\n") {
			if slices.ContainsFunc(chaosNoise, func(n string) bool { return strings.Contains(l, n) }) {
				continue
			}
			for _, n := range chaosNotable {
				if strings.Contains(l, n) {
					keep = append(keep, l)
					break
				}
			}
		}
		if len(keep) > max {
			fmt.Fprintf(&b, "metad%d: the last %d of %d notable log lines\n", i, max, len(keep))
			keep = keep[len(keep)-max:]
		} else {
			fmt.Fprintf(&b, "metad%d: %d notable log lines\n", i, len(keep))
		}
		for _, l := range keep {
			if len(l) > 400 {
				l = l[:400] + "…"
			}
			b.WriteString("  " + l + "\n")
		}
	}
	return b.String()
}

// jitter is a duration in [0, d) drawn from rng.
func jitter(rng *rand.Rand, d time.Duration) time.Duration {
	return time.Duration(rng.Int64N(int64(d)))
}

func errText(err error) string {
	if err == nil {
		return "ok"
	}
	return errKind(err)
}

func sleepUntil(at time.Time) { time.Sleep(time.Until(at)) }

// catchUp waits until member i has applied what the leader has.
func catchUp(t *testing.T, g *cluster.Group, i int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		l := g.WaitLeader(t, -1, time.Minute)
		st, err := g.Status(t, l)
		if err == nil {
			waitApplied(t, g, i, st.Applied)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the leader metad%d gives no status: %v", l, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitChaosProgress waits until every worker has had a change begun
// after healed acknowledged.
func waitChaosProgress(t *testing.T, workers []*chaosWorker, tally *chaosTally, healed time.Time) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		stuck := ""
		for _, w := range workers {
			if w.lastAck.Load() < healed.UnixNano() {
				stuck += fmt.Sprintf(" w%d (%s)", w.id, *w.current.Load())
			}
		}
		if stuck == "" {
			return
		}
		if time.Now().After(deadline) {
			tally.mu.Lock()
			failed := fmt.Sprint(tally.failed)
			tally.mu.Unlock()
			t.Fatalf("no acknowledged change 2 minutes after the heal by:%s; failures so far: %s", stuck, failed)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitChaosWorkers waits for the stopped workers to finish their ops.
func waitChaosWorkers(t *testing.T, wg *sync.WaitGroup, workers []*chaosWorker) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(chaosOpTimeout + time.Minute):
		for _, w := range workers {
			t.Errorf("w%d: %s", w.id, *w.current.Load())
		}
		t.Fatalf("workers still in an op %v after being stopped", chaosOpTimeout+time.Minute)
	}
}

// verifyChaosModel checks every name m knows exactly through the client
// library: there, of its kind, a file's bytes equal; a directory listing
// nothing m does not know; and no name an acknowledged delete or rename
// removed. It returns what does not hold.
func verifyChaosModel(ctx context.Context, t *testing.T, cl *client.Client, m *chaosModel, start time.Time) []string {
	t.Helper()
	var lost []string
	lose := func(p, what string) { lost = append(lost, what+m.when(p, start)) }
	for _, p := range slices.Sorted(maps.Keys(m.entries)) {
		e := m.entries[p]
		if !m.certain(p) {
			continue
		}

		fi, err := cl.NS.Stat(ctx, p)
		switch {
		case err != nil:
			lose(p, fmt.Sprintf("%s: %v", p, err))
			continue
		case fi.IsDir() != e.dir:
			lose(p, fmt.Sprintf("%s: a directory %v, want %v", p, fi.IsDir(), e.dir))
			continue
		}
		if e.dir {
			es, err := cl.ReadDir(ctx, p)
			if err != nil {
				t.Fatalf("list %s: %v", p, err)
			}
			for _, c := range es {
				if m.entries[p+"/"+c.Name] == nil {
					lose(p+"/"+c.Name, fmt.Sprintf("%s/%s is there, but was never made or was removed", p, c.Name))
				}
			}
			continue
		}
		if fi.Size != int64(len(e.ino.data)) {
			lose(p, fmt.Sprintf("%s: size %d, want %d", p, fi.Size, len(e.ino.data)))
			continue
		}
		r, err := cl.Open(ctx, p)
		if err != nil {
			t.Fatalf("open %s: %v", p, err)
		}
		got, err := io.ReadAll(io.NewSectionReader(r, 0, r.Size()))
		r.Close()
		if err != nil {
			lose(p, fmt.Sprintf("%s: read: %v", p, err))
		} else if !bytes.Equal(got, e.ino.data) {
			lose(p, fmt.Sprintf("%s: %d bytes read back differ from the %d written", p, len(got), len(e.ino.data)))
		}
	}
	for _, p := range slices.Sorted(maps.Keys(m.gone)) {
		if _, err := cl.NS.Stat(ctx, p); !errors.Is(err, cairn.ErrNotExist) {
			lose(p, fmt.Sprintf("%s was removed, acknowledged, but stat says %v", p, errText(err)))
		}
	}
	return lost
}

// verifyChaosMount reads back through the mount every file made through
// it and up to more others.
func verifyChaosMount(t *testing.T, mnt string, m *chaosModel, more int, start time.Time) []string {
	t.Helper()
	var lost []string
	lose := func(p, what string) { lost = append(lost, what+m.when(p, start)) }
	for _, p := range slices.Sorted(maps.Keys(m.entries)) {
		e := m.entries[p]
		if !m.certain(p) || e.dir {
			continue
		}
		if !e.ino.viaMount {
			if more == 0 {
				continue
			}
			more--
		}
		got, err := os.ReadFile(filepath.Join(mnt, p))
		switch {
		case err != nil:
			lose(p, fmt.Sprintf("%s through the mount: %v", p, err))
		case !bytes.Equal(got, e.ino.data):
			lose(p, fmt.Sprintf("%s through the mount: %d bytes read back differ from the %d written", p, len(got), len(e.ino.data)))
		}
	}
	return lost
}

// chaosProbes are the directories made around a paused leader: by the
// new leader, and by the deposed one after it woke.
type chaosProbes struct {
	acked, uncertain []string
	answers, wrong   []string
}

func (p *chaosProbes) add(path string, err error) {
	if err == nil {
		p.acked = append(p.acked, path)
	} else {
		p.uncertain = append(p.uncertain, path)
	}
}

func (p *chaosProbes) verify(ctx context.Context, t *testing.T, cl *client.Client) []string {
	t.Helper()
	var lost []string
	for _, d := range p.acked {
		if fi, err := cl.NS.Stat(ctx, d); err != nil || !fi.IsDir() {
			lost = append(lost, fmt.Sprintf("%s (made around a paused leader): %v", d, errText(err)))
		}
	}
	return lost
}

// chaosReport is the summary: ops, faults, the timeline.
func chaosReport(seed uint64, start, end time.Time, faults []*chaosFault, tally *chaosTally, checked, uncertain int, lost, wrong []string, probes *chaosProbes) string {
	tally.mu.Lock()
	defer tally.mu.Unlock()
	var b strings.Builder
	acked := len(tally.acks) + len(probes.acked)
	fmt.Fprintf(&b, "metad group chaos: seed %d, %v of faults, %d workers\n", seed, end.Sub(start).Round(time.Second), *chaosWorkers)
	fmt.Fprintf(&b, "ops acknowledged %d, uncertain (failed, never touched again) %d, lost %d; names checked at the end %d, uncertain %d; reads checked during the run %d, wrong %d\n",
		acked, tally.failedChanges+len(probes.uncertain), len(lost), checked, uncertain, tally.reads, len(wrong)+len(probes.wrong))
	fmt.Fprintf(&b, "acknowledged by op: %s\n", formatCounts(tally.acked))
	fmt.Fprintf(&b, "failed by op and error: %s\n", formatCounts(tally.failed))
	kinds := map[string]int{}
	var longest time.Duration
	for _, f := range faults {
		kinds[f.kind]++
		longest = max(longest, f.failover)
	}
	fmt.Fprintf(&b, "faults %d: %s; longest failover %v\n", len(faults), formatCounts(kinds), longest.Round(time.Millisecond))

	fmt.Fprintf(&b, "\ntimeline (stall: from the fault to the first acknowledgement of a change begun after it)\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "at\tfault\ttarget\tdown\tfailover\tstall\tacknowledged\t\n")
	for i, f := range faults {
		next := end
		if i+1 < len(faults) {
			next = faults[i+1].at
		}
		stall, n := time.Duration(-1), 0
		for _, a := range tally.acks {
			if !a.start.Before(f.at) && (stall < 0 || a.end.Sub(f.at) < stall) {
				stall = a.end.Sub(f.at)
			}
			if !a.end.Before(f.at) && a.end.Before(next) {
				n++
			}
		}
		fo := "-"
		if f.failover > 0 {
			fo = f.failover.Round(time.Millisecond).String()
		}
		fmt.Fprintf(tw, "%v\t%s\t%s\t%v\t%s\t%v\t%d\t\n", f.at.Sub(start).Round(time.Millisecond), f.kind, f.target,
			f.down.Round(time.Millisecond), fo, stall.Round(time.Millisecond), n)
	}
	tw.Flush()
	if len(probes.answers) > 0 {
		fmt.Fprintf(&b, "\n%s\n", strings.Join(probes.answers, "\n"))
	}
	for _, s := range append(slices.Clone(lost), append(slices.Clone(wrong), probes.wrong...)...) {
		fmt.Fprintf(&b, "- %s\n", s)
	}
	return b.String()
}

func formatCounts(m map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// chaosWaitHealthy polls `cairn fsck /` until the cluster is HEALTHY.
func chaosWaitHealthy(t *testing.T, g *cluster.Group, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out, code := g.Run(t, "fsck", "/")
		if code == 0 && cluster.LastLine(out) == cluster.HealthyLine("/") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("fsck / not HEALTHY after %v; last run: exit %d\n%s", timeout, code, out)
		}
		time.Sleep(time.Second)
	}
}
