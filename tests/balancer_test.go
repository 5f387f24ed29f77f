package tests

// The balancer across hosts (metad/balancer.go, tools/balancer): two empty
// hosts join a cluster of two racks of two full hosts, and `cairn
// balancer` moves replicas to them.

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"cairn/tests/cluster"
	"cairn/tools/balancer"
)

const (
	balanceBlock    = 256 << 10
	balanceCapacity = 8 << 20 // each blockd's --capacity
)

// balanceCluster starts blockds on two racks of two hosts, writes files of
// 24 blocks (three replicas each: 56% of the four blockds' capacity), then
// adds an empty blockd on a new host of each rack.
func balanceCluster(t *testing.T) (*rackCluster, map[string][]byte) {
	t.Helper()
	rc := startRackCluster(t, []string{"/r1", "/r1", "/r2", "/r2"}, []string{""}, false, cluster.Config{
		BlockSize: balanceBlock, Replication: 3,
		BlockdArgs: []string{"--capacity", fmt.Sprint(balanceCapacity)},
		// Each trim is logged at DEBUG (one line a round at INFO): the
		// stop test counts them.
		MetadArgs: []string{"--debug"},
	})
	files := map[string][]byte{}
	for i := range 6 {
		p := fmt.Sprintf("/f%d", i)
		data := randomBytes(4*balanceBlock-100*i, uint64(40+i))
		putFile(t, rc.cli, p, data)
		files[p] = data
	}
	for _, rack := range []string{"/r1", "/r2"} {
		h := rc.net.AddHost(t, rack)
		rc.hosts = append(rc.hosts, h)
		rc.rackOf[h.IP] = rack
		rc.AddBlockd(t, h, rack)
	}
	return rc, files
}

// use returns each live blockd's use in percent and the cluster's mean, as
// metad's report has them.
func (rc *rackCluster) use(t *testing.T) (map[string]float64, float64) {
	t.Helper()
	rep, err := rc.cli.NS.Report(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	var used, capacity int64
	for _, n := range rep.Nodes {
		if n.Live && n.Capacity > 0 {
			out[n.DataAddr] = 100 * float64(n.Used) / float64(n.Capacity)
			used += n.Used
			capacity += n.Capacity
		}
	}
	return out, 100 * float64(used) / float64(capacity)
}

// checkFiles reads every file back, and checks each block has three good
// replicas on live blockds on both racks and no other replica (nothing
// extra left over), and fsck says HEALTHY with nothing mis-replicated.
func (rc *rackCluster) checkFiles(t *testing.T, files map[string][]byte) {
	t.Helper()
	for p, data := range files {
		got, err := readAll(asMe(), rc.cli, p)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s reads back %d bytes, %v; want its %d bytes", p, len(got), err, len(data))
		}
		racks, _ := rc.replicas(t, p)
		for i, r := range racks {
			if len(r) != 2 || r["/r1"]+r["/r2"] != 3 {
				t.Fatalf("block %d of %s: good replicas on racks %v, want three on both racks", i, p, r)
			}
		}
	}
	out, code := rc.Run(t, "fsck", "/", "-racks")
	if code != 0 || !strings.Contains(out, "is HEALTHY") || !strings.Contains(out, " Mis-replicated blocks:\t\t0 (0.0 %)\n") {
		t.Fatalf("fsck /: exit %d, want HEALTHY with nothing mis-replicated:\n%s", code, out)
	}
}

// replicaCount is how many replicas of each of files' blocks metad
// records, good or not.
func (rc *rackCluster) replicaCounts(t *testing.T, files map[string][]byte) map[string][]int {
	t.Helper()
	out := map[string][]int{}
	for p := range files {
		fr, err := rc.cli.NS.ReplicaReport(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range fr.Blocks {
			out[p] = append(out[p], len(b.Replicas))
		}
	}
	return out
}

// TestBalancerAcrossHosts: after two empty hosts join, `cairn balancer
// -threshold 10`, run from a client host, prints HDFS's table and "The
// cluster is balanced. Exiting...", exits 0, and leaves every blockd's use
// within 10 points of the mean; every file reads back, every block keeps
// three replicas on both racks, and fsck is HEALTHY.
func TestBalancerAcrossHosts(t *testing.T) {
	rc, files := balanceCluster(t)
	before, avg := rc.use(t)
	t.Logf("use before: %v, mean %.1f%%", before, avg)
	out, code := rc.RunOn(t, rc.clients[0], "balancer", "-threshold", "10", "-bandwidth", "4m", "-pause", "1s")
	t.Logf("cairn balancer:\n%s", out)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if code != balancer.ExitSuccess || lines[0] != balancer.Header || !strings.Contains(out, "\n"+balancer.BalancedLine+"\n") ||
		!strings.Contains(lines[len(lines)-1], "Balancing took ") {
		t.Fatalf("cairn balancer: exit %d, want 0 with HDFS's table and %q", code, balancer.BalancedLine)
	}
	if len(lines) < 5 {
		t.Fatalf("cairn balancer printed no iteration before it was balanced: the new hosts were empty")
	}
	// The blockds report their new use on their next heartbeats.
	time.Sleep(time.Second)
	after, avg := rc.use(t)
	for addr, u := range after {
		if math.Abs(u-avg) > 10 {
			t.Errorf("blockd %s at %.1f%%, mean %.1f%%: beyond the threshold", addr, u, avg)
		}
	}
	if len(after) != 6 {
		t.Fatalf("%d live blockds, want 6", len(after))
	}
	rc.checkFiles(t, files)
}

// TestBalancerStoppedMidRun: a balancer moving replicas slowly (32 KB/s)
// is interrupted (SIGINT: exit 250, the moves not yet sent dropped), and
// metad is killed while the sent copies are under way and restarted. The
// copies land on a metad that knows nothing of the moves: the blocks they
// belong to have a fourth replica, which the replication monitor trims.
// Nothing is lost: every file reads back, every block has three replicas
// and no more, on both racks, and fsck is HEALTHY. A balancer run again
// then balances the cluster.
func TestBalancerStoppedMidRun(t *testing.T) {
	rc, files := balanceCluster(t)
	logPath := filepath.Join(rc.LogDir(), "balancer.log")
	p := rc.StartProcess(t, "balancer", cluster.Binary(t), []string{"balancer", "--metad", rc.MetadAddr(), "-threshold", "10", "-bandwidth", "32k", "-pause", "1s"}, nil)
	// Wait for its first iteration's line: moves are scheduled.
	deadline := time.Now().Add(time.Minute)
	for {
		b, _ := os.ReadFile(logPath)
		if strings.Count(string(b), "\n") >= 2 && strings.Contains(string(b), balancer.Header) {
			break
		}
		if time.Now().After(deadline) || p.Exited() {
			t.Fatalf("the balancer printed no iteration (%s):\n%s", p.ExitStatus(), b)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second) // heartbeats hand the sources their copies
	if err := syscall.Kill(p.PID(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if !p.Wait(30 * time.Second) {
		t.Fatalf("the balancer still runs 30 s after SIGINT:\n%s", p.LogTail())
	}
	if st := p.ExitStatus(); !strings.Contains(st, "250") {
		t.Fatalf("interrupted balancer: %s, want exit status 250:\n%s", st, p.LogTail())
	}
	rc.KillMetad(t) // the copies go on without it
	logBefore := len(rc.Log("metad"))
	rc.StartMetad(t)
	rc.WaitSafeModeOff(t, time.Minute)

	// Converges: the interrupted moves' copies land as fourth replicas,
	// which are trimmed: every block back to exactly three.
	trims := func() int { return strings.Count(rc.Log("metad")[logBefore:], "block over-replicated: trimming") }
	deadline = time.Now().Add(2 * time.Minute)
	for {
		counts := rc.replicaCounts(t, files)
		off := 0
		for _, cs := range counts {
			for _, n := range cs {
				if n != 3 {
					off++
				}
			}
		}
		if off == 0 && trims() > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("two minutes after metad's restart: %d trims, replicas of each block %v; want the copies trimmed and three of each", trims(), counts)
		}
		time.Sleep(200 * time.Millisecond)
	}
	trimmed := map[string]bool{}
	for _, l := range strings.Split(rc.Log("metad")[logBefore:], "\n") {
		if strings.Contains(l, "block over-replicated: trimming") {
			if _, rest, ok := strings.Cut(l, `"block": "`); ok {
				b, _, _ := strings.Cut(rest, `"`)
				trimmed[b] = true
			}
		}
	}
	t.Logf("%d trims of %d blocks after metad's restart", trims(), len(trimmed))
	rc.checkFiles(t, files)

	out, code := rc.Run(t, "balancer", "-threshold", "10", "-bandwidth", "4m", "-pause", "1s")
	if code != balancer.ExitSuccess || !strings.Contains(out, balancer.BalancedLine) {
		t.Fatalf("the balancer run again: exit %d:\n%s", code, out)
	}
	rc.checkFiles(t, files)
}
