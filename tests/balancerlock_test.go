package tests

// One balancer at a time (metad/balancerlock.go), through the real binary.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cairn/tests/cluster"
	"cairn/tools/balancer"
)

// TestOneBalancerAtATime: three full blockds and an empty fourth. A
// balancer that runs (its first iteration done, pausing) makes a second
// one print HDFS's "Another Balancer is running..  Exiting ..." and exit
// 252 at once, with nothing changed. Killed with SIGKILL, the first keeps
// no one out for good: once metad's --balancer-lease (3 s here) is over,
// a new balancer runs and balances the cluster.
func TestOneBalancerAtATime(t *testing.T) {
	c := cluster.Start(t, cluster.Config{Blockds: 3, BlockSize: balanceBlock, Replication: 3,
		BlockdArgs: []string{"--capacity", fmt.Sprint(balanceCapacity)},
		MetadArgs:  []string{"--balancer-lease", "3s"}})
	cl := volClient(t, c)
	files := map[string][]byte{}
	for i := range 4 {
		p := fmt.Sprintf("/b%d", i)
		files[p] = randomBytes(4*balanceBlock-100*i, uint64(90+i))
		putFile(t, cl, p, files[p])
	}
	c.AddBlockd(t, nil, "")
	// The balancer sees what metad has from heartbeats (every 200 ms):
	// the new blockd's capacity, and the others' use, which the files just
	// written raised. Before that the cluster looks balanced and the first
	// balancer has nothing to do.
	var written int64
	for _, data := range files {
		written += int64(len(data)) * 3
	}
	waitFor(t, time.Minute, "metad to know every blockd's capacity and use", func() bool {
		rep, err := cl.NS.Report(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		heard, used := 0, int64(0)
		for _, n := range rep.Nodes {
			if n.Live && n.Capacity > 0 {
				heard++
				used += n.Used
			}
		}
		return heard == 4 && used >= written
	})

	logPath := filepath.Join(c.LogDir(), "balancer1.log")
	first := c.StartProcess(t, "balancer1", cluster.Binary(t), []string{"balancer", "--metad", c.MetadAddr(), "-threshold", "10", "-pause", "10m", "-poll", "200ms"}, nil)
	// Its first iteration's line: it holds metad's lease.
	waitFor(t, time.Minute, "the first balancer's first iteration", func() bool {
		if first.Exited() {
			b, _ := os.ReadFile(logPath)
			t.Fatalf("the first balancer exited (%s):\n%s", first.ExitStatus(), b)
		}
		b, _ := os.ReadFile(logPath)
		return strings.Contains(string(b), balancer.Header) && strings.Count(string(b), "\n") >= 3
	})
	c.WaitLog(t, "metad", time.Minute, "balancer iteration")
	iterations := strings.Count(c.Log("metad"), "balancer iteration")
	out, code := c.Run(t, "balancer", "-threshold", "10", "-pause", "200ms")
	if code != balancer.ExitIOException || !strings.Contains(out, "\n"+balancer.AnotherLine+"\n") {
		t.Fatalf("a second balancer: exit %d, want %d and %q:\n%s", code, balancer.ExitIOException, balancer.AnotherLine, out)
	}
	if first.Exited() {
		t.Fatalf("the first balancer exited when the second was refused: %s", first.ExitStatus())
	}
	c.WaitLog(t, "metad", time.Minute, "refused a second balancer")
	if n := strings.Count(c.Log("metad"), "balancer iteration"); n != iterations {
		t.Fatalf("the refused balancer changed something: %d balancer iterations in metad's log, were %d", n, iterations)
	}

	first.Kill(t)
	var last string
	waitFor(t, time.Minute, "a balancer running after the first was killed", func() bool {
		out, code := c.Run(t, "balancer", "-threshold", "10", "-pause", "200ms")
		last = out
		if code == balancer.ExitIOException && strings.Contains(out, balancer.AnotherLine) {
			return false // the lease still runs
		}
		if code != balancer.ExitSuccess || !strings.Contains(out, balancer.BalancedLine) {
			t.Fatalf("the balancer after the first was killed: exit %d:\n%s", code, out)
		}
		return true
	})
	t.Logf("the balancer after the lease:\n%s", last)
	readsBack(t, cl, files, "balanced")
}
