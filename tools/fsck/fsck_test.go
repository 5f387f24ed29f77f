package fsck

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// The report's layout is hdfs fsck's; a change shows as a diff of the
// golden files (go test ./tools/fsck -update to accept it).
func TestReportGolden(t *testing.T) {
	start := time.Date(2026, 11, 21, 5, 0, 0, 0, time.UTC)
	cases := map[string]*Report{
		"healthy": {
			Path: "/", Nodes: 3, Racks: 1, Dirs: 2, Files: 2, Size: 3<<20 + 5, Blocks: 4, MinRepl: 4,
			Replicas: 12, DefRepl: 3,
			Lines: []string{"/d <dir>", "/d/f 3145733 bytes, replicated: replication=3, 4 block(s):  OK"},
		},
		"corrupt": {
			Path: "/logs", Nodes: 2, Racks: 1, Dirs: 1, Files: 1, Size: 2 << 20, Blocks: 2, MinRepl: 1,
			UnderRepl: 1, Missing: 1, MissingSz: 1 << 20, Replicas: 2, MissingRp: 1, Corrupt: 1, DefRepl: 3,
			Lines: []string{
				"/logs/a: MISSING block blk_1073741825_1001 len=1048576",
				"/logs/a: Under replicated blk_1073741824_1000. Target Replicas is 3 but found 2 live replica(s).",
			},
		},
	}
	for name, r := range cases {
		var b bytes.Buffer
		r.Write(&b, "alice", "127.0.0.1:9000", start, 7*time.Millisecond)
		golden := filepath.Join("testdata", name+".txt")
		if *update {
			if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (run with -update to create it)", err)
		}
		if !bytes.Equal(b.Bytes(), want) {
			t.Errorf("%s report differs from %s:\n%s", name, golden, b.String())
		}
	}
	if !cases["healthy"].Healthy() || cases["corrupt"].Healthy() {
		t.Error("Healthy() disagrees with the missing blocks")
	}
}
