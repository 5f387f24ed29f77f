package tests

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"cairn"
	"cairn/client"
	"cairn/tests/cluster"
	"cairn/trust"
)

// TestMetadGroupFailover runs three metads in a Raft group (metad --peers)
// on loopback: creates through a client given the three addresses, the
// leader SIGKILLed in the middle of them, a new leader elected, no create
// failing (one made again is answered from the retry cache), every
// acknowledged create there, a file opened at the old leader completed
// at the new one, the old leader back and caught up (from a
// snapshot: it missed more entries than the others keep behind theirs),
// a minority refusing writes and reads, a fourth member added and the
// third removed (admin -add-metad, -remove-metad), a fifth joining by
// itself (metad --join), and `cairn metad check` on the members' stores
// agreeing on the namespace digest.
func TestMetadGroupFailover(t *testing.T) {
	g := cluster.StartGroup(t, cluster.GroupConfig{MetadArgs: []string{
		"--snapshot-threshold", "50", "--snapshot-interval", "200ms", "--trailing-logs", "10"}})
	leader := g.WaitLeader(t, -1, 30*time.Second)
	t.Logf("leader: metad%d (%s)", leader, g.MemberAddr(leader))

	cl, err := client.Dial(g.Members(), client.Options{Creds: g.ClientCreds()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := cl.NS.Mkdirs(ctx, "/g", 0o755); err != nil {
		t.Fatal(err)
	}

	// A follower refuses, naming the leader.
	follower := (leader + 1) % g.Size()
	fc, err := client.Dial(g.MemberAddr(follower), client.Options{Creds: g.ClientCreds()})
	if err != nil {
		t.Fatal(err)
	}
	err = fc.NS.Mkdir(ctx, "/g/refused", 0o755)
	fc.Close()
	if !errors.Is(err, cairn.ErrNotLeader) || !strings.Contains(err.Error(), "the leader is "+g.MemberAddr(leader)) {
		t.Fatalf("mkdir at follower metad%d: %v, want ErrNotLeader naming %s", follower, err, g.MemberAddr(leader))
	}

	// So does its WebHDFS, in-process: no stale read, as HDFS's standby
	// answers (StandbyException); the leader's answers.
	for _, c := range []struct {
		member int
		code   int
		want   string
	}{{follower, http.StatusForbidden, `"StandbyException"`}, {leader, http.StatusOK, `"type":"DIRECTORY"`}} {
		resp, err := g.MemberGet(t, c.member, "/webhdfs/v1/g?op=GETFILESTATUS")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.code || !strings.Contains(string(body), c.want) {
			t.Fatalf("WebHDFS GETFILESTATUS at metad%d: %s %s, want %d with %s", c.member, resp.Status, body, c.code, c.want)
		}
	}

	// A writer holds a file open across the failover.
	open, err := cl.NS.Create(ctx, "/g/open", cairn.CreateOptions{Perm: 0o644, Client: "writer-across"})
	if err != nil {
		t.Fatal(err)
	}

	// Writers create files until told to stop; each acknowledged name is
	// kept. A create whose answer was lost in the failover is made again
	// with the same call ID at the new leader, which answers it from its
	// retry cache, filled from the Raft log (metad/raftcalls.go): no
	// create fails, "file exists" included.
	var mu sync.Mutex
	var acked []string
	var firstErr error
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var ackedAfterKill, killed time.Time
	var killedMu sync.Mutex
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				p := fmt.Sprintf("/g/w%d-%05d", w, i)
				_, err := cl.NS.Create(ctx, p, cairn.CreateOptions{Perm: 0o644, Client: cl.Name(), Closed: true})
				mu.Lock()
				switch {
				case err == nil:
					acked = append(acked, p)
					killedMu.Lock()
					if !killed.IsZero() && ackedAfterKill.IsZero() {
						ackedAfterKill = time.Now()
					}
					killedMu.Unlock()
				default:
					if firstErr == nil {
						firstErr = fmt.Errorf("create %s: %w", p, err)
					}
				}
				mu.Unlock()
			}
		}()
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	waitCount := func(n int) {
		deadline := time.Now().Add(time.Minute)
		for count() < n {
			if time.Now().After(deadline) {
				t.Fatalf("only %d creates acknowledged, waiting for %d", count(), n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitCount(200)
	g.Kill(t, leader)
	killedMu.Lock()
	killed = time.Now() // the leader has exited: what is acknowledged now, another acknowledged
	killedMu.Unlock()
	before := count()
	waitCount(before + 300)
	close(stop)
	wg.Wait()
	if firstErr != nil {
		t.Fatalf("a create failed across the failover: %v", firstErr)
	}
	newLeader := g.WaitLeader(t, leader, 30*time.Second)
	t.Logf("failover: metad%d leads; first create acknowledged %v after the leader was killed; %d creates acknowledged",
		newLeader, ackedAfterKill.Sub(killed).Round(time.Millisecond), count())

	// The writer keeps its lease at the new leader: it renews there and
	// closes its file.
	if err := cl.NS.RenewLease(ctx, "writer-across"); err != nil {
		t.Fatalf("renew a lease at the new leader: %v", err)
	}
	if err := cl.NS.Complete(ctx, cairn.WriterRef{FileID: open.Inode, Path: "/g/open", Client: "writer-across"}, nil); err != nil {
		t.Fatalf("complete, at the new leader, a file opened at the old one: %v", err)
	}
	if fi, err := cl.NS.Stat(ctx, "/g/open"); err != nil || fi.Writing {
		t.Fatalf("the file completed across the failover: %+v, %v; want it closed", fi, err)
	}

	// Every acknowledged create is there.
	have := map[string]bool{}
	after := ""
	for {
		page, more, err := cl.NS.List(ctx, "/g", after, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, fi := range page {
			have["/g/"+fi.Name] = true
			after = fi.Name
		}
		if !more {
			break
		}
	}
	for _, p := range acked {
		if !have[p] {
			t.Errorf("acknowledged create %s is missing after the failover", p)
		}
	}

	// The old leader comes back and catches up.
	g.Restart(t, leader)
	want, err := g.Status(t, newLeader)
	if err != nil {
		t.Fatal(err)
	}
	waitApplied(t, g, leader, want.Applied)
	if st, _ := g.Status(t, leader); st.State != "Follower" || st.Leader != g.MemberAddr(newLeader) {
		t.Errorf("the old leader says %+v, want a follower of %s", st, g.MemberAddr(newLeader))
	}
	if !strings.Contains(logOf(t, g, leader), "store replaced by a snapshot") {
		t.Errorf("the old leader caught up without a snapshot; the test meant to make it need one")
	}
	for i := range g.Size() {
		waitApplied(t, g, i, want.Applied)
	}

	// A metad certificate only on the Raft port.
	if g.CA() != nil {
		refusedOnRaftPort(t, g, newLeader)
	}

	// A minority (the old leader alone) refuses writes and reads: it
	// acknowledges nothing and answers nothing from a store that may be
	// stale.
	lone := leader
	for i := range g.Size() {
		if i != lone {
			g.Kill(t, i)
		}
	}
	lc, err := client.Dial(g.MemberAddr(lone), client.Options{Creds: g.ClientCreds()})
	if err != nil {
		t.Fatal(err)
	}
	defer lc.Close()
	mctx, mcancel := context.WithTimeout(ctx, 5*time.Second)
	err = lc.NS.Mkdir(mctx, "/g/minority", 0o755)
	mcancel()
	if err == nil {
		t.Fatal("a member alone acknowledged a mkdir")
	}
	t.Logf("mkdir at a minority: %v", err)
	if _, err := lc.NS.Stat(ctx, "/g"); !errors.Is(err, cairn.ErrNotLeader) {
		t.Fatalf("stat at a minority: %v, want ErrNotLeader", err)
	}
	for i := range g.Size() {
		if i != lone {
			g.Restart(t, i)
		}
	}
	newLeader = g.WaitLeader(t, -1, 30*time.Second)
	if err := cl.NS.Mkdir(ctx, "/g/majority", 0o755); err != nil {
		t.Fatalf("mkdir once the majority is back: %v", err)
	}
	if _, err := cl.NS.Stat(ctx, "/g/minority"); !errors.Is(err, cairn.ErrNotExist) {
		t.Fatalf("the mkdir refused at the minority: stat says %v, want ErrNotExist", err)
	}
	if want, err = g.Status(t, newLeader); err != nil {
		t.Fatal(err)
	}
	for i := range g.Size() {
		waitApplied(t, g, i, want.Applied)
	}

	// A fourth member is added, catches up, and the third is removed.
	fourth := g.AddMember(t)
	if out, code := g.Run(t, "admin", "-add-metad", g.MemberAddr(fourth)); code != 0 {
		t.Fatalf("admin -add-metad: exit %d: %s", code, out)
	}
	third := (lone + 1) % 3
	if out, code := g.Run(t, "admin", "-remove-metad", g.MemberAddr(third)); code != 0 {
		t.Fatalf("admin -remove-metad: exit %d: %s", code, out)
	}
	if err := cl.NS.Mkdir(ctx, "/g/four", 0o755); err != nil {
		t.Fatal(err)
	}
	out, _ := g.Run(t, "admin", "-metad-members")
	if !strings.Contains(out, g.MemberAddr(fourth)+"\t") || strings.Contains(out, g.MemberAddr(third)+"\t") {
		t.Fatalf("admin -metad-members after adding metad%d and removing metad%d:\n%s", fourth, third, out)
	}
	// A fifth asks to join by itself (metad --join).
	group := g.Members()
	fifth := g.AddMember(t, "--join", group)
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, _ := g.Run(t, "admin", "-metad-members")
		if strings.Contains(out, g.MemberAddr(fifth)+"\t") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metad%d (--join) is not a member after 30s:\n%s", fifth, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if want, err = g.Status(t, g.WaitLeader(t, third, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	for i := range g.Size() {
		if i != third {
			waitApplied(t, g, i, want.Applied)
		}
	}

	// The three members' stores hold one namespace.
	if digests, same := stoppedDigests(t, g, lone, fourth, fifth, (lone+2)%3); !same {
		t.Fatalf("the members' namespaces differ: %v", digests)
	}
}

// waitApplied waits until member i has applied index n.
func waitApplied(t *testing.T, g *cluster.Group, i int, n uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := g.Status(t, i)
		if err == nil && st.Applied >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("metad%d has not applied index %d after 30s: %+v, %v", i, n, st, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func logOf(t *testing.T, g *cluster.Group, i int) string {
	t.Helper()
	return g.Log("metad" + strconv.Itoa(i))
}

// refusedOnRaftPort connects to member i's Raft port with the admin
// certificate: the handshake completes on the client's side (TLS 1.3), and
// the server's refusal arrives as an alert at the first read.
func refusedOnRaftPort(t *testing.T, g *cluster.Group, i int) {
	t.Helper()
	host, port, _ := net.SplitHostPort(g.MemberAddr(i))
	p, _ := strconv.Atoi(port)
	addr := net.JoinHostPort(host, strconv.Itoa(p+1))
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, trust.ClientConfig(g.ClientCreds(), trust.RoleMetad))
	if err != nil {
		return // refused at the handshake
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	_, err = conn.Read(make([]byte, 1))
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("an admin certificate on the Raft port: read gave %v, want the handshake refused", err)
	}
	t.Logf("an admin certificate on the Raft port: %v", err)
}

// stoppedDigests stops every member of g, then returns the namespace
// digests of members (all of them when none is named), logged, and
// whether they agree.
func stoppedDigests(t *testing.T, g *cluster.Group, members ...int) ([]string, bool) {
	t.Helper()
	for i := range g.Size() {
		g.Stop(t, i)
	}
	if len(members) == 0 {
		for i := range g.Size() {
			members = append(members, i)
		}
	}
	var digests []string
	for _, i := range members {
		digests = append(digests, memberDigest(t, g, i))
	}
	t.Logf("namespace digests: %v", digests)
	return digests, len(slices.Compact(slices.Clone(digests))) == 1
}

// memberDigest is the namespace digest `cairn metad check` prints for
// member i's store (the member stopped).
func memberDigest(t *testing.T, g *cluster.Group, i int) string {
	t.Helper()
	out := cluster.Exec(t, cluster.Binary(t), "metad", "check", "--data", g.MemberDir(i))
	if out.Code != 0 {
		t.Fatalf("metad check metad%d: exit %d\n%s%s", i, out.Code, out.Stdout, out.Stderr)
	}
	for _, l := range strings.Split(out.Stdout, "\n") {
		if v, ok := strings.CutPrefix(l, "Namespace digest:\t"); ok {
			return v
		}
	}
	t.Fatalf("metad check metad%d printed no digest:\n%s", i, out.Stdout)
	return ""
}
