package cluster

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"cairn/trust"
)

// Growing a metad group as an operator does: a single metad with data
// converted into the first member (metad --convert), and members joining
// from empty data directories with join tokens of role metad (metad
// --join LIST --join-token TOKEN), nothing copied by hand.

// ConvertToGroup makes the cluster's single metad (stopped first if it
// runs) the first member of a metad group: it starts again on the same
// data directory, at a new address whose next port is free for Raft,
// with --convert; then more members join it, each from an empty data
// directory with a join token; then the blockds are restarted with the
// members' list. Client commands (Run) get the list from then on. It
// returns the group once every member is a voter and has caught up.
func (c *Cluster) ConvertToGroup(t testing.TB, more int) *Group {
	t.Helper()
	if c.cfg.Insecure {
		t.Fatal("ConvertToGroup: a member joins with a join token, which takes the cluster CA")
	}
	if c.metad != nil && !c.metad.exited() {
		c.StopMetad(t)
	}
	g := &Group{Cluster: c}
	first := &member{dir: c.metadDir, addrFile: c.metadFile, rpc: freePortPair(t), extra: []string{"--convert"}}
	g.members = append(g.members, first)
	root := filepath.Dir(c.metadDir)
	for i := 1; i <= more; i++ {
		g.members = append(g.members, &member{dir: filepath.Join(root, fmt.Sprintf("metad%d", i)),
			addrFile: filepath.Join(root, fmt.Sprintf("metad%d.addr", i)), rpc: freePortPair(t)})
	}
	var addrs []string
	for _, m := range g.members {
		addrs = append(addrs, m.rpc)
	}
	c.addrs.RPC = strings.Join(addrs, ",")
	args := []string{"--election-timeout", "500ms", "--heartbeat", c.cfg.Heartbeat.String()}
	if c.cfg.DeadAfter != 0 {
		args = append(args, "--dead-after", c.cfg.DeadAfter.String())
	}
	if c.cfg.BlockSize != 0 {
		args = append(args, "--block-size", strconv.FormatInt(c.cfg.BlockSize, 10))
	}
	if c.cfg.Replication != 0 {
		args = append(args, "--replication", strconv.Itoa(c.cfg.Replication))
	}
	c.cfg.MetadArgs = append(args, c.cfg.MetadArgs...)
	g.launch(t, 0, false)
	g.wait(t, 0)
	c.metad = first.proc
	first.extra = nil // --convert is for once (a member ignores it)
	g.WaitLeader(t, -1, time.Minute)
	for i := 1; i <= more; i++ {
		g.JoinMember(t, i)
	}
	g.WaitVoters(t, len(g.members), time.Minute)
	for i := range c.blockds {
		c.KillBlockd(t, i)
		c.StartBlockd(t, i)
	}
	t.Logf("metad converted into the group %s", c.addrs.RPC)
	return g
}

// MemberJoinToken makes a join token of role metad for member i, with
// the cluster's CA, as cairn admin -join-token --role metad --name ADDR
// does.
func (g *Group) MemberJoinToken(t testing.TB, i int) string {
	t.Helper()
	return g.JoinToken(t, trust.RoleMetad, g.members[i].rpc, time.Hour)
}

// JoinMember starts member i, not running, on its data directory (made
// empty if missing) with a new join token and --join naming member via
// (default 0), and waits until it listens: it gets the cluster's keys
// from the group and asks to be added.
func (g *Group) JoinMember(t testing.TB, i int, via ...int) {
	t.Helper()
	m := g.members[i]
	mkdirs(t, m.dir)
	m.token = g.MemberJoinToken(t, i)
	at := g.members[0].rpc
	if len(via) > 0 {
		at = g.members[via[0]].rpc
	}
	m.extra = []string{"--join", at, "--join-token", m.token}
	g.launch(t, i, false)
	g.wait(t, i)
}

// UsedJoinToken is the join token member i last joined with
// (JoinMember).
func (g *Group) UsedJoinToken(i int) string { return g.members[i].token }

// Wipe removes member i's data directory (the member stopped), as when
// its disk is lost, and leaves an empty one.
func (g *Group) Wipe(t testing.TB, i int) {
	t.Helper()
	if g.Running(i) {
		t.Fatalf("Wipe: metad%d is running", i)
	}
	if err := os.RemoveAll(g.members[i].dir); err != nil {
		t.Fatal(err)
	}
	mkdirs(t, g.members[i].dir)
}

// RunMetad runs `cairn metad ARGS...` for member i to completion (a
// start that is expected to be refused), at most two minutes.
func (g *Group) RunMetad(t testing.TB, i int, args ...string) Output {
	t.Helper()
	full := append([]string{"metad", "--data", g.members[i].dir, "--listen", g.members[i].rpc, "--peers", g.Members(), "--http", "127.0.0.1:0"}, args...)
	out, err := runCommand(runTimeout, os.Environ(), g.bin, full...)
	if err != nil {
		t.Fatalf("cairn %s: %v\nstderr:\n%s", strings.Join(full, " "), err, out.Stderr)
	}
	return out
}

// Voters asks the group for its voting members' addresses.
func (g *Group) Voters(t testing.TB) ([]string, error) {
	t.Helper()
	out, err := g.run("admin", "-metad-members")
	if err != nil {
		return nil, err
	}
	if out.Code != 0 {
		return nil, fmt.Errorf("admin -metad-members: exit %d: %s", out.Code, out.Stderr)
	}
	var vs []string
	for _, l := range strings.Split(out.Stdout, "\n") {
		if f := strings.Split(l, "\t"); len(f) == 4 && f[2] == "voter" {
			vs = append(vs, f[0])
		}
	}
	return vs, nil
}

// WaitVoters waits up to timeout until the group has n voters and every
// running member has applied what the leader had applied when they were
// n.
func (g *Group) WaitVoters(t testing.TB, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last []string
	for {
		vs, err := g.Voters(t)
		if err == nil && len(vs) == n {
			break
		}
		last = vs
		if time.Now().After(deadline) {
			t.Fatalf("the group has voters %v (%v), want %d, after %v", last, err, n, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
	leader := g.WaitLeader(t, -1, time.Until(deadline))
	st, err := g.Status(t, leader)
	if err != nil {
		t.Fatal(err)
	}
	for i := range g.members {
		for g.Running(i) {
			s, err := g.Status(t, i)
			if err == nil && s.Applied >= st.Applied {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("metad%d applied %d (%v), the leader %d, after %v", i, s.Applied, err, st.Applied, timeout)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}
