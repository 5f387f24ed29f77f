package cluster

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"cairn/trust"
)

// A Group is a metad group (metad --peers) of N members on 127.0.0.1,
// with GroupConfig.Blockds blockds (none by default), each given every
// member (--metad LIST): member 0 is formatted with --peers; the others get
// its VERSION and cluster CA (trust/) copied into empty data directories,
// as an operator would, and receive the namespace through the Raft log.
// Client commands (Run) are given the members' list.
type Group struct {
	*Cluster
	members []*member
}

type member struct {
	dir, addrFile, rpc string
	extra              []string // more flags for this member
	host               Host     // the host it runs on (nil: here, on 127.0.0.1)
	token              string   // the join token it last joined with (grow.go)
	proc               *proc
}

// GroupConfig describes a group.
type GroupConfig struct {
	Members         int           // default 3
	ElectionTimeout time.Duration // --election-timeout (default 500 ms)
	Insecure        bool
	MetadArgs       []string // more flags for every member
	// Blockds is how many blockds to start once the members listen,
	// each given the members' list; Heartbeat (default 200 ms with
	// blockds) is every daemon's --heartbeat, DeadAfter, BlockSize and
	// Replication the members' flags (zero: the defaults).
	Blockds     int
	Heartbeat   time.Duration
	DeadAfter   time.Duration
	BlockSize   int64
	Replication int
	// MemberHosts[i], when set, runs member i on that host of a test
	// network (tests/netns), at HOST:9000 (Raft on 9001); BlockdHosts[i]
	// does the same for blockd i. Unset, a process runs here, on
	// 127.0.0.1.
	MemberHosts []Host
	BlockdHosts []Host
}

// StartGroup starts a metad group and waits until every member listens.
func StartGroup(t testing.TB, cfg GroupConfig) *Group {
	t.Helper()
	if cfg.Members == 0 {
		cfg.Members = 3
	}
	if cfg.ElectionTimeout == 0 {
		cfg.ElectionTimeout = 500 * time.Millisecond
	}
	if cfg.Heartbeat == 0 && cfg.Blockds > 0 {
		cfg.Heartbeat = 200 * time.Millisecond
	}
	dir := t.TempDir()
	c := &Cluster{t: t, bin: Binary(t), cfg: Config{MetadOnly: cfg.Blockds == 0, Blockds: cfg.Blockds, Insecure: cfg.Insecure, MetadArgs: cfg.MetadArgs,
		Heartbeat: cfg.Heartbeat, DeadAfter: cfg.DeadAfter, BlockSize: cfg.BlockSize, Replication: cfg.Replication,
		BlockdHosts: cfg.BlockdHosts}, logDir: filepath.Join(dir, "logs")}
	mkdirs(t, c.logDir)
	t.Cleanup(c.cleanup)
	g := &Group{Cluster: c}
	var addrs []string
	for i := range cfg.Members {
		m := &member{dir: filepath.Join(dir, fmt.Sprintf("metad%d", i)), addrFile: filepath.Join(dir, fmt.Sprintf("metad%d.addr", i))}
		if i < len(cfg.MemberHosts) && cfg.MemberHosts[i] != nil {
			// A host of its own: its ports are free.
			m.host = cfg.MemberHosts[i]
			m.rpc = net.JoinHostPort(m.host.Address(), "9000")
		} else {
			m.rpc = freePortPair(t)
		}
		mkdirs(t, m.dir)
		g.members = append(g.members, m)
		addrs = append(addrs, m.rpc)
	}
	c.addrs.RPC = strings.Join(addrs, ",")
	c.metadDir = g.members[0].dir
	extra := []string{"--election-timeout", cfg.ElectionTimeout.String()}
	if cfg.Heartbeat != 0 {
		extra = append(extra, "--heartbeat", cfg.Heartbeat.String())
	}
	if cfg.DeadAfter != 0 {
		extra = append(extra, "--dead-after", cfg.DeadAfter.String())
	}
	if cfg.BlockSize != 0 {
		extra = append(extra, "--block-size", strconv.FormatInt(cfg.BlockSize, 10))
	}
	if cfg.Replication != 0 {
		extra = append(extra, "--replication", strconv.Itoa(cfg.Replication))
	}
	extra = append(extra, cfg.MetadArgs...)
	c.cfg.MetadArgs = extra
	g.launch(t, 0, true)
	g.wait(t, 0)
	for _, m := range g.members[1:] {
		copyFile(t, filepath.Join(g.members[0].dir, "VERSION"), filepath.Join(m.dir, "VERSION"))
		if !cfg.Insecure {
			copyDir(t, filepath.Join(g.members[0].dir, trust.CADir), filepath.Join(m.dir, trust.CADir))
		}
	}
	for i := 1; i < len(g.members); i++ {
		g.launch(t, i, false)
	}
	for i := 1; i < len(g.members); i++ {
		g.wait(t, i)
	}
	if !cfg.Insecure {
		c.setupCerts(t)
	}
	c.startBlockds(t, dir)
	t.Logf("metad group %s, %d blockds, logs in %s", c.addrs.RPC, len(c.blockds), c.logDir)
	return g
}

// Members returns the members' RPC addresses, comma-separated: what
// clients are given.
func (g *Group) Members() string { return g.addrs.RPC }

// MemberAddr returns member i's RPC address.
func (g *Group) MemberAddr(i int) string { return g.members[i].rpc }

// MemberDir returns member i's data directory.
func (g *Group) MemberDir(i int) string { return g.members[i].dir }

// MemberHTTPAddr returns member i's HTTP address (WebHDFS), as its
// address file says.
func (g *Group) MemberHTTPAddr(t testing.TB, i int) string {
	t.Helper()
	var a metadAddrs
	if !readJSON(g.members[i].addrFile, &a) || a.HTTP == "" {
		t.Fatalf("metad%d's address file %s names no HTTP address", i, g.members[i].addrFile)
	}
	return a.HTTP
}

// MemberGet GETs path at member i's HTTP port, with the test's client
// certificate on a secure group.
func (g *Group) MemberGet(t testing.TB, i int, path string) (*http.Response, error) {
	t.Helper()
	addr := g.MemberHTTPAddr(t, i)
	if g.cfg.Insecure {
		return http.Get("http://" + addr + path)
	}
	hc := &http.Client{Timeout: runTimeout, Transport: &http.Transport{TLSClientConfig: trust.ClientConfig(g.ClientCreds(), trust.RoleMetad)}}
	return hc.Get("https://" + addr + path)
}

// Size is the number of members.
func (g *Group) Size() int { return len(g.members) }

// Running reports whether member i runs.
func (g *Group) Running(i int) bool { p := g.members[i].proc; return p != nil && !p.exited() }

func (g *Group) launch(t testing.TB, i int, format bool) {
	t.Helper()
	m := g.members[i]
	os.Remove(m.addrFile)
	httpAddr := "127.0.0.1:0"
	if m.host != nil {
		httpAddr = net.JoinHostPort(m.host.Address(), "0")
	}
	args := []string{"metad", "--data", m.dir, "--peers", g.Members(), "--listen", m.rpc, "--http", httpAddr,
		"--addr-file", m.addrFile, "--safemode-extension", "0s"}
	if format {
		args = append(args, "--format")
	}
	if g.cfg.Insecure {
		args = append(args, "--insecure")
	}
	args = append(append(args, g.cfg.MetadArgs...), m.extra...)
	m.proc = g.startOn(t, m.host, fmt.Sprintf("metad%d", i), args)
}

func (g *Group) wait(t testing.TB, i int) {
	t.Helper()
	m := g.members[i]
	var a metadAddrs
	waitUntil(t, m.proc, startTimeout, "listening (address file "+m.addrFile+")", func() bool {
		return readJSON(m.addrFile, &a) && a.RPC != ""
	})
}

// AddMember starts one more member, from a data directory holding the
// first member's VERSION and CA, with more flags (--join LIST); without
// --join it is not in the group until it is added (cairn admin
// -add-metad). It returns its index; the group's list (Members) includes
// it from now on.
func (g *Group) AddMember(t testing.TB, extra ...string) int {
	t.Helper()
	i := len(g.members)
	root := filepath.Dir(g.members[0].dir)
	m := &member{dir: filepath.Join(root, fmt.Sprintf("metad%d", i)), addrFile: filepath.Join(root, fmt.Sprintf("metad%d.addr", i)), rpc: freePortPair(t), extra: extra}
	mkdirs(t, m.dir)
	copyFile(t, filepath.Join(g.members[0].dir, "VERSION"), filepath.Join(m.dir, "VERSION"))
	if !g.cfg.Insecure {
		copyDir(t, filepath.Join(g.members[0].dir, trust.CADir), filepath.Join(m.dir, trust.CADir))
	}
	g.members = append(g.members, m)
	g.addrs.RPC += "," + m.rpc
	g.launch(t, i, false)
	g.wait(t, i)
	return i
}

// Kill kills member i with SIGKILL and waits for it to exit.
func (g *Group) Kill(t testing.TB, i int) {
	t.Helper()
	p := g.members[i].proc
	p.accounted.Store(true)
	p.kill()
	if !p.waitExit(stopGrace) {
		t.Fatalf("metad%d did not exit within %v of SIGKILL", i, stopGrace)
	}
}

// Pause stops member i with SIGSTOP, as a long stall of its host would
// (a pause of the whole machine, a swap storm): its connections stay
// open, nothing answers. Resume continues it with SIGCONT.
func (g *Group) Pause(t testing.TB, i int) {
	t.Helper()
	if !g.Running(i) {
		t.Fatalf("Pause: metad%d is not running", i)
	}
	g.members[i].proc.signal(syscall.SIGSTOP)
}

// Resume continues member i after Pause.
func (g *Group) Resume(t testing.TB, i int) {
	t.Helper()
	g.members[i].proc.signal(syscall.SIGCONT)
}

// Stop stops member i with SIGTERM.
func (g *Group) Stop(t testing.TB, i int) {
	t.Helper()
	p := g.members[i].proc
	if !p.stop(syscall.SIGTERM, stopGrace) {
		t.Errorf("metad%d did not exit within %v of SIGTERM; it was killed", i, stopGrace)
	}
}

// Restart starts a stopped member i again on its data directory.
func (g *Group) Restart(t testing.TB, i int) {
	t.Helper()
	if g.Running(i) {
		t.Fatalf("Restart: metad%d is running", i)
	}
	g.launch(t, i, false)
	g.wait(t, i)
}

// MemberStatus is what `cairn admin -metad-members` says, asked of one
// member.
type MemberStatus struct {
	State   string // Leader, Follower, Candidate
	Applied uint64
	Leader  string // the leader's RPC address as the member knows it
}

// Status asks member i alone about the group, from its own host.
func (g *Group) Status(t testing.TB, i int) (MemberStatus, error) {
	t.Helper()
	out, err := g.runAtOn(g.members[i].host, g.members[i].rpc, "admin", "-metad-members")
	if err != nil {
		return MemberStatus{}, err
	}
	if out.Code != 0 {
		return MemberStatus{}, fmt.Errorf("admin -metad-members at %s: exit %d: %s", g.members[i].rpc, out.Code, out.Stderr)
	}
	var st MemberStatus
	for _, l := range strings.Split(out.Stdout, "\n") {
		if rest, ok := strings.CutPrefix(l, "Answered by "); ok {
			// Answered by ADDR (STATE), applied index N, commit index M
			f := strings.Fields(strings.NewReplacer("(", "", ")", "", ",", "").Replace(rest))
			if len(f) >= 5 {
				st.State = f[1]
				st.Applied, _ = strconv.ParseUint(f[4], 10, 64)
			}
		}
		if f := strings.Split(l, "\t"); len(f) == 4 && f[3] == "leader" {
			st.Leader = f[0]
		}
	}
	return st, nil
}

// WaitLeader waits up to timeout until a running member other than
// except (-1: none) says it is the leader, and returns its index.
func (g *Group) WaitLeader(t testing.TB, except int, timeout time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for i := range g.members {
			if i == except || !g.Running(i) {
				continue
			}
			if st, err := g.Status(t, i); err == nil && st.State == "Leader" {
				return i
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no member of %s leads after %v", g.Members(), timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runAtOn runs a cairn client command against the metad at addr alone,
// on host h (nil: here).
func (g *Group) runAtOn(h Host, addr string, args ...string) (Output, error) {
	full := append([]string{args[0], "--metad", addr}, args[1:]...)
	env := append(append(os.Environ(), "CAIRN_METAD="+addr), g.env("client")...)
	bin := g.bin
	if h != nil {
		bin, full = h.Wrap(bin, full)
	}
	return runCommand(runTimeout, env, bin, full...)
}

// RunAtMember runs a cairn client command against member i alone, from
// member i's own host (so it reaches it while that host is cut off), and
// returns what it printed and its exit code.
func (g *Group) RunAtMember(t testing.TB, i int, args ...string) Output {
	t.Helper()
	out, err := g.runAtOn(g.members[i].host, g.members[i].rpc, args...)
	if err != nil {
		t.Fatalf("cairn %v at metad%d: %v\nstderr:\n%s", args, i, err, out.Stderr)
	}
	return out
}

// freePortPair returns 127.0.0.1:P where the kernel just had P and P+1
// free: a member's RPC port and its Raft port.
func freePortPair(t testing.TB) string {
	t.Helper()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l2, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p+1)))
		l.Close()
		if err != nil {
			continue
		}
		l2.Close()
		return net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
	}
	t.Fatal("no two free ports in a row")
	return ""
}

func copyFile(t testing.TB, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

func copyDir(t testing.TB, src, dst string) {
	t.Helper()
	fi, err := os.Stat(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dst, fi.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
	es, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if e.IsDir() {
			copyDir(t, filepath.Join(src, e.Name()), filepath.Join(dst, e.Name()))
		} else {
			copyFile(t, filepath.Join(src, e.Name()), filepath.Join(dst, e.Name()))
		}
	}
}

// Exited waits up to timeout for member i to exit by itself (at a crash
// point, say), counts that exit as expected, and reports whether it
// exited.
func (g *Group) Exited(t testing.TB, i int, timeout time.Duration) bool {
	t.Helper()
	p := g.members[i].proc
	if !p.waitExit(timeout) {
		return false
	}
	p.accounted.Store(true)
	return true
}
