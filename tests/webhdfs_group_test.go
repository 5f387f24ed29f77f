package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"cairn/tests/cluster"
)

// TestWebHDFSGroupFailover runs WebHDFS in front of a metad group of
// three (with two blockds) while its leader is SIGKILLed:
//   - curl runs a loop of CREATE, OPEN, LISTSTATUS and DELETE through
//     `cairn httpfs --metad LIST`, which follows the leader: no request
//     fails, and every acknowledged CREATE reads back equal afterwards;
//   - a CREATE and an OPEN redirected (307) by the old leader to a blockd
//     are sent there after it died: the blockd's calls go to the new
//     leader, which accepts the old one's delegation token;
//   - a follower's WebHDFS answers 403 StandbyException naming the new
//     leader, also for a CREATE (no redirect), as an HDFS standby;
//   - fsspec, a client given one address, works through the gateway;
//   - with no majority left, the gateway answers StandbyException.
func TestWebHDFSGroupFailover(t *testing.T) {
	g := cluster.StartGroup(t, cluster.GroupConfig{Blockds: 2, Replication: 2})
	leader := g.WaitLeader(t, -1, 30*time.Second)
	for _, args := range [][]string{{"dfs", "-mkdir", "-p", "/w/loop"}, {"dfs", "-chmod", "-R", "777", "/w"}} {
		if _, code := g.Run(t, args...); code != 0 {
			t.Fatalf("cairn %v: exit %d", args, code)
		}
	}
	w := whClients(t, g.Cluster, true)
	gw := g.StartHTTPFS(t) // given the members' list
	leaderHTTP := g.MemberHTTPAddr(t, leader)
	t.Logf("leader metad%d (%s, WebHDFS %s), httpfs %s", leader, g.MemberAddr(leader), leaderHTTP, gw)

	// Redirects the leader gives before it dies, each with a delegation
	// token it issued.
	before := whBody("written before the failover", 1000)
	whPut(t, w, w.url(gw, "/w/before", "CREATE"), before)
	createLoc := whLocation(t, w, "PUT", w.url(leaderHTTP, "/w/redirected", "CREATE"))
	openLoc := whLocation(t, w, "GET", w.url(leaderHTTP, "/w/before", "OPEN"))

	loop := &whLoop{w: w, addr: gw, dir: "/w/loop", src: t.TempDir(), acked: map[string][]byte{}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); loop.run(stop) }()
	stopLoop := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopLoop()
	loop.waitRounds(t, 3)
	atKill := loop.rounds()
	killed := time.Now()
	g.Kill(t, leader)
	next := g.WaitLeader(t, leader, 30*time.Second)
	t.Logf("metad%d leads %v after the SIGKILL of metad%d", next, time.Since(killed).Round(time.Millisecond), leader)
	loop.waitRounds(t, atKill+5)
	stopLoop()
	t.Logf("%d rounds of CREATE, OPEN, LISTSTATUS (and DELETE every third) through httpfs, %d during the failover", loop.rounds(), loop.rounds()-atKill)
	for _, e := range loop.errs {
		t.Error(e)
	}

	// Every acknowledged CREATE (not deleted) reads back equal.
	for p, want := range loop.acked {
		got, code := w.curl(t, w.url(gw, p, "OPEN"))
		if code != "200" || got != string(want) {
			t.Errorf("OPEN %s after the failover: HTTP %s, %d bytes, want %d bytes equal to those written", p, code, len(got), len(want))
		}
	}

	// The old leader's redirects, used after its death.
	redirected := whBody("sent to a blockd on a dead leader's redirect", 1000)
	src := filepath.Join(t.TempDir(), "redirected")
	if err := os.WriteFile(src, redirected, 0o644); err != nil {
		t.Fatal(err)
	}
	if body, code := w.curl(t, "-X", "PUT", "-T", src, createLoc); code != "201" {
		t.Fatalf("CREATE at the dead leader's redirect %s: HTTP %s: %s", createLoc, code, body)
	}
	if got, code := w.curl(t, w.url(gw, "/w/redirected", "OPEN")); code != "200" || got != string(redirected) {
		t.Fatalf("OPEN /w/redirected: HTTP %s, %d bytes, want %d", code, len(got), len(redirected))
	}
	if got, code := w.curl(t, openLoc); code != "200" || got != string(before) {
		t.Fatalf("OPEN at the dead leader's redirect %s: HTTP %s, %d bytes, want %d", openLoc, code, len(got), len(before))
	}

	// A follower: 403 StandbyException naming the leader, for a read and
	// for a CREATE, which it does not redirect.
	follower := 3 - leader - next
	fHTTP := g.MemberHTTPAddr(t, follower)
	for _, c := range [][]string{{w.url(fHTTP, "/w/before", "GETFILESTATUS")}, {"-X", "PUT", w.url(fHTTP, "/w/refused", "CREATE")}} {
		body, code := w.curl(t, c...)
		var re struct{ RemoteException map[string]string }
		if err := json.Unmarshal([]byte(body), &re); err != nil || code != "403" || re.RemoteException["exception"] != "StandbyException" ||
			re.RemoteException["javaClassName"] != "org.apache.hadoop.ipc.StandbyException" ||
			!strings.Contains(re.RemoteException["message"], "the leader is "+g.MemberAddr(next)) {
			t.Fatalf("%v at follower metad%d: HTTP %s %s (%v), want 403 StandbyException naming %s", c, follower, code, body, err, g.MemberAddr(next))
		}
	}

	// A client given one address works through the gateway.
	whFsspec(t, w, gw, "", "/w/fsspec")

	// No majority: the gateway gives up after client.FailoverTimeout with
	// a StandbyException, 503 from a member it could not reach last, 403
	// from one that knows no leader (docs/WEBHDFS.md).
	g.Kill(t, next)
	body, code := w.curl(t, w.url(gw, "/w/before", "GETFILESTATUS"))
	var re struct{ RemoteException map[string]string }
	if err := json.Unmarshal([]byte(body), &re); err != nil || (code != "503" && code != "403") || re.RemoteException["exception"] != "StandbyException" {
		t.Fatalf("GETFILESTATUS through httpfs with one member of three: HTTP %s %s (%v), want 503 or 403 StandbyException", code, body, err)
	}
	t.Logf("with one member of three, httpfs answers HTTP %s: %s", code, re.RemoteException["message"])
}

// whBody is n lines of line, the last without its newline (whAuth.curl
// drops one at the end of what it read).
func whBody(line string, n int) []byte {
	return bytes.TrimSuffix(bytes.Repeat([]byte(line+"\n"), n), []byte("\n"))
}

// whPut CREATEs at url (curl -L) with body, wanting 201.
func whPut(t *testing.T, w whAuth, url string, body []byte) {
	t.Helper()
	src := filepath.Join(t.TempDir(), "body")
	if err := os.WriteFile(src, body, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, code := w.curl(t, "-X", "PUT", "-T", src, url); code != "201" {
		t.Fatalf("CREATE %s: HTTP %s: %s", url, code, out)
	}
}

// whLocation sends method to url without following and returns the 307's
// Location.
func whLocation(t *testing.T, w whAuth, method, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := append(append([]string{"-sS", "-X", method, "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}"}, w.curlArgs...), url)
	out, err := exec.CommandContext(ctx, "curl", args...).Output()
	if err != nil {
		t.Fatalf("curl %s: %v", strings.Join(args, " "), err)
	}
	code, loc, _ := strings.Cut(string(out), " ")
	if code != "307" || loc == "" {
		t.Fatalf("%s %s: HTTP %s, Location %q, want a 307", method, url, code, loc)
	}
	return loc
}

// whLoop runs rounds of WebHDFS calls through one endpoint: round i
// CREATEs dir/fI, OPENs it and compares, LISTSTATUSes dir and finds it,
// and every third round DELETEs it. Each answer that is not the success
// wanted is an error; acked holds the files created and not deleted.
type whLoop struct {
	w              whAuth
	addr, dir, src string

	mu    sync.Mutex
	n     int // rounds finished
	acked map[string][]byte
	errs  []string
}

func (l *whLoop) run(stop <-chan struct{}) {
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		l.round(i)
		l.mu.Lock()
		l.n++
		l.mu.Unlock()
	}
}

func (l *whLoop) round(i int) {
	name := fmt.Sprintf("f%05d", i)
	p := l.dir + "/" + name
	content := whBody(name+" of the loop", 2000)
	src := filepath.Join(l.src, name)
	if err := os.WriteFile(src, content, 0o644); err != nil {
		l.fail("write %s: %v", src, err)
		return
	}
	defer os.Remove(src)
	call := func(op, want string, args ...string) (string, bool) {
		body, code, err := l.w.curlRun(args...)
		if err != nil {
			l.fail("%s %s: %v", op, p, err)
			return "", false
		}
		if code != want {
			l.fail("%s %s: HTTP %s, want %s: %s", op, p, code, want, body)
			return "", false
		}
		return body, true
	}
	if _, ok := call("CREATE", "201", "-X", "PUT", "-T", src, l.w.url(l.addr, p, "CREATE")); !ok {
		return
	}
	l.mu.Lock()
	l.acked[p] = content
	l.mu.Unlock()
	if got, ok := call("OPEN", "200", l.w.url(l.addr, p, "OPEN")); ok && got != string(content) {
		l.fail("OPEN %s: %d bytes, not the %d written", p, len(got), len(content))
	}
	if body, ok := call("LISTSTATUS", "200", l.w.url(l.addr, l.dir, "LISTSTATUS")); ok && !strings.Contains(body, `"pathSuffix":"`+name+`"`) {
		l.fail("LISTSTATUS %s does not list %s: %.200s", l.dir, name, body)
	}
	if i%3 != 0 {
		return
	}
	if body, ok := call("DELETE", "200", "-X", "DELETE", l.w.url(l.addr, p, "DELETE")); ok {
		if body != `{"boolean":true}` {
			l.fail("DELETE %s answered %s", p, body)
			return
		}
		l.mu.Lock()
		delete(l.acked, p)
		l.mu.Unlock()
	}
}

func (l *whLoop) fail(format string, a ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errs = append(l.errs, fmt.Sprintf(format, a...))
}

func (l *whLoop) rounds() int { l.mu.Lock(); defer l.mu.Unlock(); return l.n }

// waitRounds waits until n rounds are finished; a loop that stops making
// progress for 2 minutes fails the test.
func (l *whLoop) waitRounds(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for l.rounds() < n {
		if time.Now().After(deadline) {
			t.Fatalf("the WebHDFS loop finished %d rounds, waiting for %d", l.rounds(), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
