package tests

// Rack awareness across hosts: blockds, metad, a mount and clients each in
// a network namespace of their own (tests/netns), on two racks.

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cairn"
	"cairn/client"
	"cairn/tests/cluster"
	"cairn/tests/netns"
)

// probeEnv holds a probe's configuration (JSON); set, the test binary runs
// as a probe instead of running tests: a client on the host it runs on
// that may write a file, and prints the file's block locations in the
// order metad returns them.
const probeEnv = "CAIRN_RACK_PROBE"

type probeConfig struct {
	Metad string
	Path  string
	Write int64 // bytes to write to a new file at Path first (0: none)
}

func init() {
	if cfg := os.Getenv(probeEnv); cfg != "" {
		os.Exit(runProbe(cfg))
	}
}

func runProbe(cfgJSON string) int {
	var cfg probeConfig
	if err := json.Unmarshal([]byte(cfgJSON), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := client.Dial(cfg.Metad, client.Options{BlockSize: 1 << 20})
	if err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		return 1
	}
	defer c.Close()
	if cfg.Write > 0 {
		w, err := c.Create(ctx, cfg.Path, 0o644)
		if err == nil {
			_, err = w.Write(randomBytes(int(cfg.Write), 7))
			if cerr := w.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "probe: write:", err)
			return 1
		}
	}
	fb, err := c.NS.BlockLocations(ctx, cairn.FileRef{Path: cfg.Path})
	if err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		return 1
	}
	var locs [][]string
	for _, b := range fb.Blocks {
		var l []string
		for _, n := range b.Locations {
			l = append(l, n.DataAddr)
		}
		locs = append(locs, l)
	}
	if err := json.NewEncoder(os.Stdout).Encode(locs); err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		return 1
	}
	return 0
}

// probe runs a probe on host h and returns each block's locations as metad
// gave them to it.
func probe(t *testing.T, c *cluster.Cluster, h *netns.Host, cfg probeConfig) [][]string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(cfg)
	cmd := h.Command(exe, "-test.run=^$")
	cmd.Env = append(append(os.Environ(), probeEnv+"="+string(b)), c.ClientEnv()...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("probe on %s (%+v): %v\n%s", h.IP, cfg, err, stderr.String())
	}
	var locs [][]string
	if err := json.Unmarshal(out, &locs); err != nil {
		t.Fatalf("probe on %s: %v: %q", h.IP, err, out)
	}
	return locs
}

// rackCluster is a cluster across hosts: metad on a host of its own, and
// a blockd on each of hosts, whose racks are named by a topology script
// (script) or by each blockd's --rack.
type rackCluster struct {
	*cluster.Cluster
	net     *netns.Net
	hosts   []*netns.Host // blockd i's host
	clients []*netns.Host // hosts without a blockd
	rackOf  map[string]string
	cli     *client.Client // a client in the test's own namespace
}

// startRackCluster starts blockds on hosts on racks, and makes a host
// with no blockd (a client's) on each of clients.
func startRackCluster(t *testing.T, racks, clients []string, script bool, cfg cluster.Config) *rackCluster {
	t.Helper()
	nt := netns.New(t)
	rc := &rackCluster{net: nt, rackOf: map[string]string{}}
	metaHost := nt.AddHost(t, "")
	for _, r := range clients {
		h := nt.AddHost(t, r)
		rc.clients = append(rc.clients, h)
		rc.rackOf[h.IP] = r
	}
	cfg.MetadHost = metaHost
	cfg.Blockds = len(racks)
	for _, r := range racks {
		h := nt.AddHost(t, r)
		rc.hosts = append(rc.hosts, h)
		cfg.BlockdHosts = append(cfg.BlockdHosts, h)
		rc.rackOf[h.IP] = r
	}
	if script {
		var cases strings.Builder
		for _, h := range append(rc.hosts, rc.clients...) {
			if h.Rack != "" {
				fmt.Fprintf(&cases, "\t%s) echo %s ;;\n", h.IP, h.Rack)
			}
		}
		path := filepath.Join(t.TempDir(), "topology.sh")
		body := "#!/bin/sh\nfor ip; do\n\tcase $ip in\n" + cases.String() + "\t*) echo /default-rack ;;\n\tesac\ndone\n"
		if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
		cfg.MetadArgs = append(cfg.MetadArgs, "--topology-script", path)
	} else {
		cfg.Racks = racks
	}
	rc.Cluster = cluster.Start(t, cfg)
	for i, h := range rc.hosts {
		if host, _, _ := net.SplitHostPort(rc.BlockdAddr(i)); host != h.IP {
			t.Fatalf("blockd%d on %s advertises %s, not its host's address", i, h.IP, rc.BlockdAddr(i))
		}
	}
	c, err := client.Dial(rc.MetadAddr(), client.Options{Creds: rc.ClientCreds()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	rc.cli = c
	return rc
}

func (rc *rackCluster) rackOfAddr(addr string) string {
	host, _, _ := net.SplitHostPort(addr)
	return rc.rackOf[host]
}

// replicas returns, for each block of path, the racks of its good
// replicas on live blockds, and their addresses.
func (rc *rackCluster) replicas(t *testing.T, path string) (racks []map[string]int, addrs [][]string) {
	t.Helper()
	fr, err := rc.cli.NS.ReplicaReport(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range fr.Blocks {
		r := map[string]int{}
		var a []string
		for _, rep := range b.Replicas {
			if rep.Live && rep.Good {
				r[rep.Rack]++
				a = append(a, rep.DataAddr)
			}
		}
		racks = append(racks, r)
		addrs = append(addrs, a)
	}
	return racks, addrs
}

// TestRackPlacementAcrossHosts: six blockds on six hosts, three on each of
// two racks that a topology script names. A file written through a mount
// on a client host of /r2 has every block on both racks: one replica on
// the writer's rack, two on the other. A file written by a client on a
// blockd's host has its first replica there. metad gives each reader the
// replicas on its host first, then those on its rack; fsck finds nothing
// mis-replicated, and admin -printTopology shows the racks.
func TestRackPlacementAcrossHosts(t *testing.T) {
	rc := startRackCluster(t, []string{"/r1", "/r1", "/r1", "/r2", "/r2", "/r2"}, []string{"/r2"}, true,
		cluster.Config{BlockSize: 1 << 20, Replication: 3})
	clientHost := rc.clients[0] // the script puts it on /r2 too

	topo, code := rc.Run(t, "admin", "-printTopology")
	if code != 0 {
		t.Fatalf("admin -printTopology: exit %d", code)
	}
	// "Rack: /r1", its three blockds, a blank line, then /r2's.
	sections := strings.Split(strings.TrimSuffix(topo, "\n\n"), "\n\n")
	if len(sections) != 2 {
		t.Fatalf("admin -printTopology shows %d racks, want 2:\n%s", len(sections), topo)
	}
	for s, rack := range []string{"/r1", "/r2"} {
		lines := strings.Split(sections[s], "\n")
		if lines[0] != "Rack: "+rack || len(lines) != 4 {
			t.Fatalf("admin -printTopology: section %q, want %s with three blockds", sections[s], rack)
		}
		for _, l := range lines[1:] {
			addr, _, _ := strings.Cut(strings.TrimPrefix(l, "   "), " ")
			if !strings.HasPrefix(l, "   ") || rc.rackOfAddr(addr) != rack || rc.BlockdOf(addr) < 0 {
				t.Errorf("admin -printTopology lists %q under %s", l, rack)
			}
		}
	}

	// Through a mount on the client host.
	mnt := rc.MountOn(t, clientHost)
	data := randomBytes(6<<20+5, 1)
	if err := os.WriteFile(filepath.Join(mnt, "f"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	racks, _ := rc.replicas(t, "/f")
	if len(racks) != 7 {
		t.Fatalf("/f has %d blocks, want 7", len(racks))
	}
	for i, r := range racks {
		if r["/r2"] != 1 || r["/r1"] != 2 {
			t.Errorf("block %d of /f, written from a host of /r2, has good replicas on racks %v, want one on /r2 and two on /r1", i, r)
		}
	}

	// By a client on blockd0's host (on /r1).
	local := probe(t, rc.Cluster, rc.hosts[0], probeConfig{Metad: rc.MetadAddr(), Path: "/local", Write: 3<<20 + 1})
	for i, locs := range local {
		if len(locs) != 3 || locs[0] != rc.BlockdAddr(0) {
			t.Fatalf("block %d of /local, written on blockd0's host: locations %v, want 3 with %s first", i, locs, rc.BlockdAddr(0))
		}
		if rc.rackOfAddr(locs[1]) != "/r2" || rc.rackOfAddr(locs[2]) != "/r2" {
			t.Errorf("block %d of /local: locations %v, want the second and third on /r2", i, locs)
		}
	}

	// Readers: on the client host (/r2 by the script), /f's replica on
	// /r2 comes first; on blockd3's host (/r2), /f's replicas on that host
	// or else on /r2 first; on blockd0's host, its own replica of /local.
	for _, c := range []struct {
		h    *netns.Host
		path string
	}{{clientHost, "/f"}, {rc.hosts[3], "/f"}, {rc.hosts[1], "/f"}, {rc.hosts[4], "/local"}} {
		got := probe(t, rc.Cluster, c.h, probeConfig{Metad: rc.MetadAddr(), Path: c.path})
		for i, locs := range got {
			checkNearestFirst(t, rc, c.h, fmt.Sprintf("block %d of %s", i, c.path), locs)
		}
	}

	out, code := rc.Run(t, "fsck", "/", "-files", "-blocks", "-racks")
	if code != 0 || !strings.Contains(out, " Mis-replicated blocks:\t\t0 (0.0 %)\n") || !strings.Contains(out, " Number of racks:\t\t2\n") {
		t.Errorf("fsck /: exit %d, want HEALTHY on 2 racks with nothing mis-replicated:\n%s", code, out)
	}
}

// checkNearestFirst checks that locs, as a reader on h got them, are in
// order of distance from h: its host, its rack, the rest.
func checkNearestFirst(t *testing.T, rc *rackCluster, h *netns.Host, what string, locs []string) {
	t.Helper()
	dist := func(addr string) int {
		host, _, _ := net.SplitHostPort(addr)
		switch {
		case host == h.IP:
			return 0
		case rc.rackOf[host] == h.Rack:
			return 2
		}
		return 4
	}
	for i := 1; i < len(locs); i++ {
		if dist(locs[i]) < dist(locs[i-1]) {
			t.Errorf("%s read on %s (%s): locations %v, not nearest first", what, h.IP, h.Rack, locs)
			return
		}
	}
}

// TestHostCutOff: six blockds on two racks (--rack). A host holding
// replicas is cut off: metad counts it dead no sooner than --dead-after,
// copies its blocks so each again has three replicas on two racks; when
// the host comes back, the extra replicas are trimmed, so each block has
// three replicas on two racks again, on disk as well as in metad's map.
func TestHostCutOff(t *testing.T) {
	const deadAfter = 4 * time.Second
	rc := startRackCluster(t, []string{"/r1", "/r1", "/r1", "/r2", "/r2", "/r2"}, []string{""}, false,
		cluster.Config{BlockSize: 1 << 20, Replication: 3, DeadAfter: deadAfter, MetadArgs: []string{"--stale-after", "1s"}})
	clientHost := rc.clients[0]
	locs := probe(t, rc.Cluster, clientHost, probeConfig{Metad: rc.MetadAddr(), Path: "/f", Write: 5<<20 + 3})
	racks, _ := rc.replicas(t, "/f")
	for i, r := range racks {
		if len(r) != 2 || r["/r1"]+r["/r2"] != 3 {
			t.Fatalf("block %d of /f: good replicas on racks %v, want three on both racks", i, r)
		}
	}
	victim := rc.BlockdOf(locs[0][0])
	if victim < 0 {
		t.Fatalf("no blockd at %s", locs[0][0])
	}
	vid := rc.BlockdStorageID(victim)

	cut := time.Now()
	rc.hosts[victim].Cut(t)
	waitFor(t, 2*time.Minute, "blockd"+fmt.Sprint(victim)+" counted dead", func() bool { return !rc.live(t, vid) })
	if took := time.Since(cut); took < deadAfter-time.Second {
		t.Errorf("blockd%d was counted dead %v after it was cut off, before --dead-after %v", victim, took, deadAfter)
	}
	waitFor(t, 2*time.Minute, "every block of /f re-replicated on two racks", func() bool {
		racks, addrs := rc.replicas(t, "/f")
		for i, r := range racks {
			if r["/r1"] < 1 || r["/r2"] < 1 || r["/r1"]+r["/r2"] != 3 || contains(addrs[i], rc.BlockdAddr(victim)) {
				return false
			}
		}
		return true
	})

	rc.hosts[victim].Restore(t)
	waitFor(t, 2*time.Minute, "blockd"+fmt.Sprint(victim)+" live again", func() bool { return rc.live(t, vid) })
	waitFor(t, 2*time.Minute, "the extra replicas trimmed, in metad's map and on disk", func() bool {
		racks, _ := rc.replicas(t, "/f")
		for _, r := range racks {
			if len(r) != 2 || r["/r1"]+r["/r2"] != 3 {
				return false
			}
		}
		fr, err := rc.cli.NS.ReplicaReport(context.Background(), "/f")
		if err != nil {
			t.Fatal(err)
		}
		onDisk, err := rc.FinalizedReplicas()
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range fr.Blocks {
			n := 0
			for r := range onDisk {
				if r.ID == uint64(b.ID) {
					n++
				}
			}
			if len(b.Replicas) != 3 || n != 3 {
				return false
			}
		}
		return true
	})
	rc.WaitHealthy(t, time.Minute)
}

// live reports whether metad counts the blockd with storage ID id live.
func (rc *rackCluster) live(t *testing.T, id string) bool {
	t.Helper()
	rep, err := rc.cli.NS.Report(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range rep.Nodes {
		if n.StorageID == id {
			return n.Live
		}
	}
	t.Fatalf("metad does not know blockd %s", id)
	return false
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// waitFor polls cond every 200 ms until it holds, failing t after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not %s after %v", what, timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
