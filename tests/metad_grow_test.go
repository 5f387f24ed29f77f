package tests

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cairn/tests/cluster"
	"cairn/trust"
)

// TestMetadGroupGrow turns a single metad with data into a group of
// three, as README's operator steps do, and replaces a lost member: the
// single metad refuses --peers without --convert (its directory
// unchanged); with --convert it becomes the first member, and two more
// join from empty data directories with join tokens of role metad,
// nothing copied by hand; the namespace, a delegation token and the
// blockds' registrations survive, blockds and a mount given the members'
// list work; a join with a replayed token, a token for another member,
// of another role or of another cluster, or for a member still in the
// group, is refused with a clear error and leaves the data directory
// empty; a member removed, wiped and joined again catches up; and every
// member's `metad check` digest agrees.
func TestMetadGroupGrow(t *testing.T) {
	c := cluster.Start(t, cluster.Config{Blockds: 2, Replication: 2})
	data := make([]byte, 300<<10)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	local := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(local, data, 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, c, "dfs", "-mkdir", "-p", "/grow/dir")
	mustRun(t, c, "dfs", "-put", local, "/grow/f")
	dt, _ := c.Run(t, "admin", "-delegation-token")
	dt = strings.TrimSpace(strings.SplitN(dt, "\n", 2)[0])

	// --peers on a store with a namespace and no Raft state: refused,
	// nothing written.
	c.StopMetad(t)
	dir := c.MetadDataDir()
	out := cluster.Exec(t, cluster.Binary(t), "metad", "--data", dir, "--listen", "127.0.0.1:0", "--peers", "127.0.0.1:1", "--self", "127.0.0.1:1")
	if out.Code == 0 || !strings.Contains(out.Stderr, "start it once with --convert") {
		t.Fatalf("metad --peers on a single metad's store: exit %d, stderr %q; want a refusal naming --convert", out.Code, out.Stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "raft")); err == nil {
		t.Fatalf("the refused start made %s/raft", dir)
	}

	g := c.ConvertToGroup(t, 2)
	for _, args := range [][]string{{"dfs", "-cat", "/grow/f"}} {
		if got, code := c.Run(t, args...); code != 0 || got != string(data) {
			t.Fatalf("cairn %v through the group: exit %d, %d bytes; want the %d bytes written to the single metad", args, code, len(got), len(data))
		}
	}
	if out, code := c.Run(t, "admin", "-renew-delegation-token", dt); code != 0 {
		t.Fatalf("renew a delegation token of the single metad through the group: exit %d %q", code, out)
	}
	if out, code := c.Run(t, "admin", "-report"); code != 0 || strings.Count(out, "Name: ") != 2 {
		t.Fatalf("admin -report through the group: exit %d\n%s\nwant both blockds", code, out)
	}
	mnt := c.Mount(t)
	if got, err := os.ReadFile(filepath.Join(mnt, "grow", "f")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read through a mount given the members' list: %v (%d bytes)", err, len(got))
	}
	if err := os.WriteFile(filepath.Join(mnt, "grow", "dir", "after"), data[:1000], 0o644); err != nil {
		t.Fatalf("write through the mount: %v", err)
	}

	// Refused joins: each leaves the member's data directory empty.
	other, err := trust.CreateCA(filepath.Join(t.TempDir(), "trust"), "ns-other")
	if err != nil {
		t.Fatal(err)
	}
	otherTok, _, _ := other.NewJoinToken(trust.RoleMetad, g.MemberAddr(2), time.Hour)
	removed := g.MemberAddr(2)
	refused := func(what, tok, want string) {
		t.Helper()
		out := g.RunMetad(t, 2, "--join", g.MemberAddr(0), "--join-token", tok)
		if out.Code == 0 || !strings.Contains(out.Stderr, want) {
			t.Fatalf("join with %s: exit %d, stderr %q; want a refusal saying %q", what, out.Code, out.Stderr, want)
		}
		if es, err := os.ReadDir(g.MemberDir(2)); err != nil || len(es) != 0 {
			t.Fatalf("join with %s was refused but left %v in the data directory (%v)", what, es, err)
		}
		t.Logf("join with %s: %s", what, cluster.LastLine(out.Stderr))
	}
	g.Kill(t, 2)
	g.Wipe(t, 2)
	refused("a token for a member still in the group", g.MemberJoinToken(t, 2), "remove it first: cairn admin -remove-metad "+removed)
	if out, code := c.Run(t, "admin", "-remove-metad", removed); code != 0 {
		t.Fatalf("admin -remove-metad %s: exit %d %q", removed, code, out)
	}
	g.WaitVoters(t, 2, time.Minute)
	refused("a token for another member", g.MemberJoinToken(t, 1), "the token is for member "+g.MemberAddr(1))
	refused("a blockd token", c.JoinToken(t, trust.RoleBlockd, "", time.Hour), "the token is for a blockd, not a metad")
	refused("another cluster's token", otherTok, "not the cluster the token is for")
	refused("a replayed token (metad2's first)", g.UsedJoinToken(2), "was used already")

	// The wiped member joins again with a new token, given a follower
	// (which names the leader), and catches up.
	leader := g.WaitLeader(t, 2, time.Minute)
	g.JoinMember(t, 2, 1-leader)
	g.WaitVoters(t, 3, time.Minute)
	mustRun(t, c, "dfs", "-mkdir", "/grow/replaced")
	g.WaitVoters(t, 3, time.Minute)
	if got, code := c.Run(t, "dfs", "-cat", "/grow/dir/after"); code != 0 || got != string(data[:1000]) {
		t.Fatalf("the file written through the mount: exit %d, %d bytes", code, len(got))
	}

	if digests, same := stoppedDigests(t, g); !same {
		t.Fatalf("the members' namespaces differ: %v", digests)
	}
}

func mustRun(t *testing.T, c *cluster.Cluster, args ...string) string {
	t.Helper()
	out, code := c.Run(t, args...)
	if code != 0 {
		t.Fatalf("cairn %v: exit %d", args, code)
	}
	return out
}
