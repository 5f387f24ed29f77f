package admin

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cairn"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestReportGolden compares -report's text for a fixed cluster with
// testdata/report.golden (regenerate with -update and review the diff).
func TestReportGolden(t *testing.T) {
	at := time.Date(2024, 10, 1, 11, 13, 53, 0, time.UTC)
	node := func(addr, id string, used, remaining int64, live bool, blocks int64) cairn.NodeReport {
		return cairn.NodeReport{
			Node:     cairn.Node{StorageID: id, DataAddr: addr, HTTPAddr: strings.Replace(addr, ":9866", ":9864", 1), Rack: "/default-rack"},
			Capacity: 8610254848, Used: used, Remaining: remaining, Blocks: blocks, LastHeartbeat: at, Live: live,
		}
	}
	rep := cairn.ClusterReport{NamespaceID: "ns-0123456789abcdef", DefaultReplication: 3, Nodes: []cairn.NodeReport{
		node("10.0.0.2:9866", "DS-2", 65536, 1742622720, true, 12),
		node("10.0.0.1:9866", "DS-1", 32768, 1747660800, true, 10),
		node("10.0.0.3:9866", "DS-3", 0, 0, false, 0),
	}}
	// One blockd being decommissioned, with a failed disk.
	rep.Nodes[0].AdminState = cairn.AdminDecommissioning
	rep.Nodes[0].FailedVolumes = []string{"/data2: VERSION unreadable: input/output error"}
	rep.Nodes[1].AdminState = cairn.AdminNormal
	// One switched off in maintenance, until its expiry.
	rep.Nodes[2].AdminState = cairn.AdminInMaintenance
	rep.Nodes[2].MaintenanceExpires = at.Add(4 * time.Hour)
	st := cairn.FsStats{Capacity: 17220509696, Used: 98304, Remaining: 3490283520, Files: 42, Blocks: 11, LiveNodes: 2}
	var b strings.Builder
	WriteReport(&b, st, rep)
	golden := filepath.Join("testdata", "report.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if b.String() != string(want) {
		t.Errorf("report differs from %s:\n%s", golden, b.String())
	}
}

func TestBytesDesc(t *testing.T) {
	for n, want := range map[int64]string{
		0: "0 (0 B)", 65536: "65536 (64 KB)", 17220509696: "17220509696 (16.04 GB)", 1023: "1023 (1023 B)", 1536: "1536 (1.50 KB)",
	} {
		if got := bytesDesc(n); got != want {
			t.Errorf("bytesDesc(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestTopologyGolden compares -printTopology's text for a fixed cluster
// with testdata/topology.golden: racks in order, each blockd (dead ones
// too) as "   IP:port (hostname)", the name only where the address has one.
func TestTopologyGolden(t *testing.T) {
	node := func(addr, rack string, live bool) cairn.NodeReport {
		return cairn.NodeReport{Node: cairn.Node{StorageID: "DS-" + addr, DataAddr: addr, Rack: rack}, Live: live}
	}
	rep := cairn.ClusterReport{Nodes: []cairn.NodeReport{
		node("10.0.1.2:9866", "/dc1/r2", true),
		node("10.0.0.2:9866", "/dc1/r1", true),
		node("10.0.0.1:9866", "/dc1/r1", false),
		node("10.0.1.1:9866", "/dc1/r2", true),
	}}
	names := map[string]string{"10.0.0.1": "host1.example", "10.0.1.1": "host3.example"}
	var b strings.Builder
	WriteTopology(&b, rep, func(ip string) string { return names[ip] })
	golden := filepath.Join("testdata", "topology.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if b.String() != string(want) {
		t.Errorf("topology differs from %s:\n%s", golden, b.String())
	}
}
