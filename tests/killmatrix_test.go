package tests

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"go.uber.org/zap"

	"cairn"
	"cairn/client"
	"cairn/tests/cluster"
)

// The long variant, `make crash`: rounds with random kill points instead
// of the matrix's fixed ones.
var (
	crashRounds = flag.Int("crash.rounds", 0, "TestKillMatrix: run this many rounds with random kill points (0: the fixed matrix)")
	crashTime   = flag.Duration("crash.time", 30*time.Minute, "TestKillMatrix: start no round after this long")
	crashSeed   = flag.Uint64("crash.seed", 0, "TestKillMatrix: seed of the random rounds (0: from the clock)")
)

// The kill matrix's timing. Leases are short so an abandoned file is
// recovered soon; the hard limit stays above the client's renewal period
// (20 s, client.leaseRenewal: a mount renews no more often while its
// writers wait at their kill point), so only a writer that is gone loses
// its lease.
const (
	leaseSoft = 2 * time.Second
	leaseHard = 30 * time.Second
	// closeWait bounds the wait for every file to be closed once its
	// writer is gone: the hard limit, then a block recovery or two.
	closeWait = leaseHard + 35*time.Second
	// fsckWait bounds the wait for fsck to be HEALTHY once every file is
	// closed (replicas being reported after restarts).
	fsckWait = 30 * time.Second
	// readDuringWait bounds the retries of readers after the kill.
	readDuringWait = 10 * time.Second
	// writerWait bounds a writer's run after the kill.
	writerWait = 3 * time.Minute
)

// matrixRow is a row of the matrix: what is killed, and which writers run.
type matrixRow struct {
	name, label string
	kinds       []string
}

var matrixRows = []matrixRow{
	{"mount", "the writer's mount", []string{kindMount}},
	{"client", "the writer's client", []string{kindClient}},
	{"metad", "metad", []string{kindMount, kindClient}},
	{"blockd", "one blockd", []string{kindMount, kindClient}},
	{"blockds", "every blockd", []string{kindMount, kindClient}},
}

// rowPlan is how one row is run.
type rowPlan struct {
	row   matrixRow
	seed  uint64
	steps int
	// pause: each column pauses in this step, halfway through its data,
	// and is killed there; nil: the writers run freely and are killed
	// once their manifests hold killAfter acknowledgements (or they end).
	pause     map[string]int
	killAfter int
	blockd    int // the blockd of the one-blockd row
	// restartFirst: the killed daemons are started again before the
	// writers go on; otherwise once they end (metad: after downFor).
	restartFirst bool
	downFor      time.Duration
	// waitBlockds: after a restart of metad, the writers go on only once
	// every blockd has registered with it again.
	waitBlockds bool
	minSeg      int
	maxSeg      int
}

func (p rowPlan) String() string {
	kill := fmt.Sprintf("free-running writers killed after %d acknowledgements", p.killAfter)
	if p.pause != nil {
		var s []string
		for _, col := range matrixColumns {
			s = append(s, fmt.Sprintf("%s@%d", col, p.pause[col]))
		}
		kill = "paused mid-write at step " + strings.Join(s, " ")
	}
	return fmt.Sprintf("seed %d, %d steps, %s, blockd %d, restart first %v, down for %v, wait for blockds %v",
		p.seed, p.steps, kill, p.blockd, p.restartFirst, p.downFor, p.waitBlockds)
}

// fixedPlan is the row as `make test` runs it: every column killed halfway
// through the data of a step, after two or three acknowledged ones (in the
// unlink column, after the file is unlinked).
func fixedPlan(r matrixRow) rowPlan {
	return rowPlan{
		row: r, seed: 1, steps: 6,
		pause:        map[string]int{colCreate: 2, colHsync: 3, colAppend: 2, colRename: 3, colUnlink: 3},
		blockd:       1,
		restartFirst: r.name != "blockd",
		waitBlockds:  true,
		// Half a step is more than a packet: the kill finds a block
		// being written.
		minSeg: 300 << 10, maxSeg: 700 << 10,
	}
}

// randomPlan is a row of `make crash`.
func randomPlan(r matrixRow, rng *rand.Rand) rowPlan {
	p := rowPlan{
		row: r, seed: rng.Uint64(), steps: 4 + rng.IntN(6),
		blockd:       rng.IntN(3),
		restartFirst: rng.IntN(2) == 0,
		waitBlockds:  rng.IntN(2) == 0,
		downFor:      time.Duration(rng.IntN(1500)) * time.Millisecond,
		minSeg:       1 + rng.IntN(64<<10), maxSeg: 64<<10 + rng.IntN(1<<20),
	}
	if rng.IntN(2) == 0 {
		p.pause = map[string]int{}
		for _, col := range matrixColumns {
			p.pause[col] = rng.IntN(p.steps)
		}
	} else {
		p.killAfter = rng.IntN(p.steps * len(matrixColumns) * len(r.kinds))
	}
	return p
}

// TestKillMatrix is issue 8's acceptance test: SIGKILL of {the writer's
// mount, the writer's client, metad, one blockd, every blockd} ×
// {create-write-close, write-hsync, append, rename while open, unlink
// while open}. Writers are separate processes (this test binary run
// again), through a real mount and through the client library, and keep a
// manifest of every step acknowledged before the kill. After restarts and
// lease (block) recovery every acknowledged byte must read back, through
// the client and through a fresh mount, fsck (with -verify when the binary
// has it) must be HEALTHY, every file closed, every unlinked file freed,
// and no finalized replica of a live file at its current generation stamp
// deleted. One cluster per row; the five columns run at once, each in its
// own directory. The matrix is printed as a table.
//
// With -crash.rounds N it runs N rounds instead (make crash), each a row
// with random kill points, and prints the figures.
func TestKillMatrix(t *testing.T) {
	RequireFUSE(t)
	if *crashRounds > 0 {
		crashMatrix(t)
		return
	}
	var rows [][]*cell
	for _, r := range matrixRows {
		var cells []*cell
		t.Run(r.name, func(t *testing.T) {
			plan := fixedPlan(r)
			t.Logf("plan: %s", plan)
			cells = runRow(t, plan)
			for _, c := range cells {
				if !c.passed() {
					t.Errorf("kill %s × %s: %s", r.label, c.col, strings.Join(c.reasons, "; "))
				}
			}
		})
		rows = append(rows, cells)
	}
	writeReport(t, matrixTable(rows))
}

// crashMatrix runs random rounds until -crash.rounds or -crash.time.
func crashMatrix(t *testing.T) {
	seed := *crashSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	rng := rand.New(rand.NewPCG(seed, 0x6b696c6c))
	start := time.Now()
	type tally struct{ run, passed int }
	tallies := map[string]*tally{}
	var rounds, cells, failed int
	var acked, readBack int64
	var failures []string
	for i := 0; i < *crashRounds && time.Since(start) < *crashTime; i++ {
		r := matrixRows[i%len(matrixRows)]
		plan := randomPlan(r, rng)
		t.Run(fmt.Sprintf("round%d-%s", i, r.name), func(t *testing.T) {
			t.Logf("plan: %s", plan)
			for _, c := range runRow(t, plan) {
				cells++
				k := r.name + "/" + c.col
				if tallies[k] == nil {
					tallies[k] = &tally{}
				}
				tallies[k].run++
				acked += c.acked
				readBack += c.readBack
				if c.passed() {
					tallies[k].passed++
					continue
				}
				failed++
				msg := fmt.Sprintf("round %d (%s) kill %s × %s: %s", i, plan, r.label, c.col, strings.Join(c.reasons, "; "))
				failures = append(failures, msg)
				t.Error(msg)
			}
		})
		rounds++
	}
	var b strings.Builder
	fmt.Fprintf(&b, "kill matrix, random kill points: seed %d, %d rounds in %v\n", seed, rounds, time.Since(start).Round(time.Second))
	fmt.Fprintf(&b, "cells run %d, passed %d, failed %d; bytes acknowledged %d, read back equal %d\n\n", cells, cells-failed, failed, acked, readBack)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "killed\t%s\t\n", strings.Join(matrixColumns, "\t"))
	for _, r := range matrixRows {
		fmt.Fprintf(tw, "%s", r.label)
		for _, col := range matrixColumns {
			if tl := tallies[r.name+"/"+col]; tl != nil {
				fmt.Fprintf(tw, "\t%d/%d passed", tl.passed, tl.run)
			} else {
				fmt.Fprintf(tw, "\t-")
			}
		}
		fmt.Fprintf(tw, "\t\n")
	}
	tw.Flush()
	if len(failures) > 0 {
		fmt.Fprintf(&b, "\nfailures:\n")
		for _, f := range failures {
			fmt.Fprintf(&b, "- %s\n", f)
		}
	}
	writeReport(t, b.String())
}

// writeReport logs the result and writes it to the test's temporary directory
// and, when set, to $CAIRN_KILLMATRIX_OUT.
func writeReport(t *testing.T, s string) {
	t.Log("\n" + s)
	paths := []string{filepath.Join(t.TempDir(), "killmatrix.txt")}
	if p := os.Getenv("CAIRN_KILLMATRIX_OUT"); p != "" {
		paths = append(paths, p)
	}
	for _, p := range paths {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Errorf("writing the matrix: %v", err)
		}
	}
}

// matrixTable prints the cells of each row: PASS, or FAIL and the first
// reason, then every reason and note in full.
func matrixTable(rows [][]*cell) string {
	var b strings.Builder
	verify := "fsck -verify"
	for _, cells := range rows {
		for _, c := range cells {
			if !c.verify {
				verify = "fsck WITHOUT -verify (not in this binary)"
			}
		}
	}
	fmt.Fprintf(&b, "kill matrix (SIGKILL of the row × what the writers were doing; checks: acknowledged bytes, %s, files closed, no live replica deleted)\n\n", verify)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "killed\t%s\t\n", strings.Join(matrixColumns, "\t"))
	for i, cells := range rows {
		if cells == nil {
			continue // not run (-run chose other rows)
		}
		fmt.Fprintf(tw, "%s", matrixRows[i].label)
		for _, c := range cells {
			if c.passed() {
				fmt.Fprintf(tw, "\tPASS")
			} else {
				fmt.Fprintf(tw, "\tFAIL: %s", shortReason(c.reasons[0]))
			}
		}
		fmt.Fprintf(tw, "\t\n")
	}
	tw.Flush()
	fmt.Fprintf(&b, "\n")
	for i, cells := range rows {
		for _, c := range cells {
			fmt.Fprintf(&b, "%s × %s [%s]: acknowledged %d bytes, read back %d through the client, %d through a fresh mount\n",
				matrixRows[i].label, c.col, strings.Join(c.kinds, "+"), c.acked, c.readBack, c.mounted)
			for _, r := range c.reasons {
				fmt.Fprintf(&b, "    FAIL: %s\n", r)
			}
			for _, n := range c.notes {
				fmt.Fprintf(&b, "    note: %s\n", n)
			}
		}
	}
	return b.String()
}

func shortReason(s string) string {
	const n = 48
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// runRow runs one row on a cluster of its own and returns its cells,
// checked.
func runRow(t *testing.T, plan rowPlan) []*cell {
	c := cluster.Start(t, cluster.Config{
		Blockds: 3, Replication: 3, BlockSize: 512 << 10, DeadAfter: 4 * time.Second,
		MetadArgs: []string{"--lease-soft-limit", leaseSoft.String(), "--lease-hard-limit", leaseHard.String()},
	})
	ctx := context.Background()
	cl, err := client.Dial(c.MetadAddr(), client.Options{Creds: c.ClientCreds(), Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	verify := c.FsckHasVerify(t)
	if !verify {
		t.Logf("this cairn's fsck has no -verify: the matrix checks with plain fsck")
	}
	row := plan.row
	for _, col := range matrixColumns {
		for _, k := range row.kinds {
			must(t, cl.NS.Mkdirs(ctx, cellDir(col, k), 0o755))
		}
	}

	// The writers.
	dir := t.TempDir()
	goFile := filepath.Join(dir, "go")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var wmount *cluster.MountProcess
	writers := map[string]*cluster.Process{}
	manifests := map[string]string{}
	start := time.Now()
	for _, kind := range row.kinds {
		cfg := writerConfig{
			Kind: kind, Metad: c.MetadAddr(), Columns: matrixColumns, Dirs: map[string]string{},
			Pause: plan.pause, Steps: plan.steps, Seed: plan.seed, MinSeg: plan.minSeg, MaxSeg: plan.maxSeg,
			Manifest: filepath.Join(dir, kind+".manifest"), GoFile: goFile,
		}
		for _, col := range matrixColumns {
			cfg.Dirs[col] = cellDir(col, kind)
		}
		if kind == kindMount {
			wmount = c.MountProcess(t)
			cfg.Root = wmount.Dir
		}
		b, _ := json.Marshal(cfg)
		cfgPath := filepath.Join(dir, kind+".json")
		must(t, os.WriteFile(cfgPath, b, 0o644))
		manifests[kind] = cfg.Manifest
		w := c.StartProcess(t, "writer-"+kind, exe, []string{"-test.run=^$"}, []string{writerEnv + "=" + cfgPath})
		writers[kind] = w
		// Before the mounts are stopped (cleanups run last first), so no
		// writer keeps a mount busy.
		t.Cleanup(func() {
			if !w.Exited() {
				w.Kill(t)
			}
		})
	}

	// The kill point.
	early := map[string][]string{} // failures seen before the kill, by column
	if plan.pause != nil {
		waitPaused(t, manifests, writers)
		heldOpen(ctx, t, cl, manifests, early)
	} else {
		waitAcks(t, manifests, writers, plan.killAfter)
	}
	watch := watchReplicas(c)
	killedAt := time.Now()
	goOn := func() { must(t, os.WriteFile(goFile, nil, 0o644)) }
	waitWriters := func() {
		for kind, w := range writers {
			if !w.Wait(writerWait) {
				t.Logf("writer-%s still runs %v after the kill; killing it", kind, writerWait)
				w.Kill(t)
			}
		}
	}
	// Once every daemon runs again, and before the files are recovered,
	// readers must see every acknowledged byte (a file being written, up
	// to its last fsync).
	readers := func() { readDuring(ctx, t, cl, manifests, early) }
	switch row.name {
	case "mount":
		wmount.Kill(t)
		readers()
		goOn()
		waitWriters()
	case "client":
		writers[kindClient].Kill(t)
		readers()
		goOn()
	case "metad":
		c.KillMetad(t)
		if plan.restartFirst {
			c.StartMetad(t)
			if plan.waitBlockds {
				waitLive(ctx, t, cl, c.Blockds())
				readers()
			}
			goOn()
		} else {
			goOn()
			time.Sleep(plan.downFor)
			c.StartMetad(t)
		}
		if !plan.restartFirst || !plan.waitBlockds {
			waitLive(ctx, t, cl, c.Blockds())
			readers()
		}
		waitWriters()
	case "blockd":
		c.KillBlockd(t, plan.blockd)
		if plan.restartFirst {
			c.StartBlockd(t, plan.blockd)
			readers()
			goOn()
			waitWriters()
		} else {
			goOn()
			waitWriters()
			c.StartBlockd(t, plan.blockd)
			readers()
		}
	case "blockds":
		c.KillBlockds(t)
		if plan.restartFirst {
			c.StartBlockds(t)
			readers()
			goOn()
			waitWriters()
		} else {
			goOn()
			waitWriters()
			c.StartBlockds(t)
			readers()
		}
	default:
		t.Fatalf("unknown row %q", row.name)
	}
	if wmount != nil && row.name != "mount" {
		wmount.Stop(t)
	}
	t.Logf("killed %s %v after the writers started; writers gone %v after the kill", row.label, killedAt.Sub(start).Round(time.Millisecond), time.Since(killedAt).Round(time.Millisecond))

	// What was acknowledged.
	logs := map[string]map[string]*columnLog{}
	for kind, p := range manifests {
		l, err := readManifest(p)
		if err != nil {
			t.Fatalf("manifest of writer-%s: %v", kind, err)
		}
		logs[kind] = l
	}
	var cells []*cell
	for _, col := range matrixColumns {
		ce := &cell{row: row.name, col: col, kinds: row.kinds, reasons: early[col]}
		for _, kind := range row.kinds {
			l := logs[kind][col]
			if l == nil {
				l = &columnLog{kind: kind, col: col, files: map[string]*ackedFile{}}
			}
			if plan.pause != nil && !l.paused && !l.ended {
				ce.fail("%s writer never reached its kill point", kind)
			}
			ce.logs = append(ce.logs, l)
		}
		writerNotes(ce, killedAt)
		cells = append(cells, ce)
	}

	// Recovery, then the checks.
	waitClosed(ctx, cl, cells, closeWait)
	for _, ce := range cells {
		checkFsck(c, ce, verify, fsckWait)
	}
	open, exists := clientReader(ctx, cl)
	for _, ce := range cells {
		ce.readBack = checkRead(ce, "client", open, exists)
	}
	if row.kinds[0] == kindMount {
		fresh := c.MountProcess(t)
		open, exists := mountReader(fresh.Dir)
		for _, ce := range cells {
			ce.mounted = checkRead(ce, "fresh mount", open, exists)
		}
		fresh.Stop(t)
	}
	// Let deletions metad has queued reach the blockds before the last
	// look at their disks.
	time.Sleep(5 * 200 * time.Millisecond)
	now, err := watch.finish()
	if err != nil {
		t.Fatal(err)
	}
	if len(watch.errs) > 0 {
		t.Logf("replica scans: %s", strings.Join(watch.errs, "; "))
	}
	checkLiveReplicas(ctx, c, cl, cells, watch.seen, now)
	keepLogs(t, c, dir)
	return cells
}

// keepLogs copies the row's logs and manifests to
// $CAIRN_KILLMATRIX_LOGS/TESTNAME, when set, for a look after the test.
func keepLogs(t *testing.T, c *cluster.Cluster, dir string) {
	root := os.Getenv("CAIRN_KILLMATRIX_LOGS")
	if root == "" {
		return
	}
	dst := filepath.Join(root, strings.ReplaceAll(t.Name(), "/", "_"))
	for _, src := range []string{c.LogDir(), dir} {
		out := cluster.Exec(t, "cp", "-r", src, dst+"-"+filepath.Base(src))
		if out.Code != 0 {
			t.Logf("keeping the logs: %s", out.Stderr)
		}
	}
	t.Logf("logs and manifests kept under %s-*", dst)
}

// heldOpen checks, while the writers wait at their kill points, that each
// file a writer unlinked and holds open is still kept at metad, by inode
// number (which also shows the number the writer recorded is the file's,
// so the check that it is freed later can fail).
func heldOpen(ctx context.Context, t *testing.T, cl *client.Client, manifests map[string]string, early map[string][]string) {
	t.Helper()
	for kind, p := range manifests {
		logs, err := readManifest(p)
		if err != nil {
			t.Fatal(err)
		}
		for col, l := range logs {
			if l.ended {
				continue
			}
			for _, f := range l.files {
				if !f.unlinked {
					continue
				}
				if _, err := cl.NS.BlockLocations(ctx, cairn.FileRef{ID: f.ino}); err != nil {
					early[col] = append(early[col], fmt.Sprintf("%s writer: its unlinked %s (inode %d), open, is not kept at metad: %v", kind, f.path, f.ino, err))
				}
			}
		}
	}
}

// readDuring reads every acknowledged byte the manifests hold so far
// through the client, retrying for a while (blockds report their
// replicas to a restarted metad soon after they register); what is still
// unreadable then fails its column, as a reader of the file would.
func readDuring(ctx context.Context, t *testing.T, cl *client.Client, manifests map[string]string, early map[string][]string) {
	t.Helper()
	deadline := time.Now().Add(readDuringWait)
	open, exists := clientReader(ctx, cl)
	for {
		failed := map[string][]string{}
		for kind, p := range manifests {
			logs, err := readManifest(p)
			if err != nil {
				t.Fatal(err)
			}
			for col, l := range logs {
				ce := &cell{col: col, kinds: []string{kind}, logs: []*columnLog{l}}
				checkRead(ce, "reader after the kill, before recovery", open, exists)
				failed[col] = append(failed[col], ce.reasons...)
			}
		}
		n := 0
		for _, r := range failed {
			n += len(r)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			for col, r := range failed {
				early[col] = append(early[col], r...)
			}
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// waitLive waits until metad counts n live blockds.
func waitLive(ctx context.Context, t *testing.T, cl *client.Client, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		live := 0
		if r, err := cl.NS.Report(ctx); err == nil {
			for _, node := range r.Nodes {
				if node.Live {
					live++
				}
			}
		}
		if live >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("metad counts %d live blockds 30s after its restart, want %d", live, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitAcks waits until the manifests hold n acknowledgements, or every
// writer has ended.
func waitAcks(t *testing.T, manifests map[string]string, writers map[string]*cluster.Process, n int) {
	t.Helper()
	deadline := time.Now().Add(writerWait)
	for {
		acks, running := 0, false
		for kind, p := range manifests {
			b, err := os.ReadFile(p)
			if err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
			acks += strings.Count(string(b), `"ev":"ack"`)
			if !writers[kind].Exited() {
				running = true
			}
		}
		if acks >= n || !running {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the writers made %d acknowledgements in %v, not %d", acks, writerWait, n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitPaused waits until every column of every writer has reached its
// kill point (or ended, which the checks then report).
func waitPaused(t *testing.T, manifests map[string]string, writers map[string]*cluster.Process) {
	t.Helper()
	deadline := time.Now().Add(writerWait)
	for {
		ready := true
		for kind, p := range manifests {
			logs, err := readManifest(p)
			if err != nil {
				t.Fatal(err)
			}
			for _, col := range matrixColumns {
				if l := logs[col]; l == nil || !l.paused && !l.ended {
					ready = false
				}
			}
			if !ready && writers[kind].Exited() {
				t.Fatalf("writer-%s exited (%s) before its kill point; end of its log:\n%s", kind, writers[kind].ExitStatus(), writers[kind].LogTail())
			}
		}
		if ready {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the writers did not reach their kill points within %v", writerWait)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
