package metad

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cairn"
)

// script writes an executable shell script with body and returns its path.
func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "topology.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func racksOf(t *testing.T, m *Metad) map[string]string {
	t.Helper()
	rep, err := m.Report(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, n := range rep.Nodes {
		out[n.StorageID] = n.Rack
	}
	return out
}

// TestTopologyScriptNamesRacks: with a topology script, each blockd's rack
// is what the script prints for its address, not what the blockd claims;
// the script runs once per address however often the blockds register;
// and a client on no blockd's host is placed on its rack by the script
// too, so it reads from that rack first.
func TestTopologyScriptNamesRacks(t *testing.T) {
	calls := filepath.Join(t.TempDir(), "calls")
	m := openCfg(t, Config{Clock: newFakeClock(), TopologyScript: script(t, `echo "$@" >> `+calls+`
for ip; do
	case $ip in
	10.0.0.*) printf '/dc1/r0 ' ;;
	10.0.1.*) printf '/dc1/r1\n' ;;
	*) printf '/dc2/other ' ;;
	esac
done
`)})
	nodes := rackCluster(t, m, 2, 2) // they claim /r0 and /r1
	rackCluster(t, m, 2, 2)          // and register again
	want := map[string]string{"DS-r0-h0": "/dc1/r0", "DS-r0-h1": "/dc1/r0", "DS-r1-h0": "/dc1/r1", "DS-r1-h1": "/dc1/r1"}
	if got := racksOf(t, m); len(got) != 4 || got["DS-r0-h0"] != want["DS-r0-h0"] || got["DS-r1-h1"] != want["DS-r1-h1"] || got["DS-r1-h0"] != want["DS-r1-h0"] {
		t.Fatalf("racks %v, want the script's %v", got, want)
	}
	closedOn(t, m, "/f", []cairn.Node{nodes[0], nodes[2]})
	fb, err := m.BlockLocations(from("10.0.1.77"), cairn.FileRef{Path: "/f"})
	if err != nil {
		t.Fatal(err)
	}
	if locs := fb.Blocks[0].Locations; len(locs) != 2 || locs[0].StorageID != nodes[2].StorageID {
		t.Fatalf("a reader the script puts on /dc1/r1 got %v, want %s first", ids(locs), nodes[2].StorageID)
	}
	if _, err := m.BlockLocations(from("10.0.1.77"), cairn.FileRef{Path: "/f"}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(calls)
	if err != nil {
		t.Fatal(err)
	}
	// Four blockds, the writer of /f and the reader.
	if lines := strings.Split(strings.TrimSpace(string(b)), "\n"); len(lines) != 6 {
		t.Fatalf("the script ran %d times (%q), want once per address: 4 blockds and 2 clients", len(lines), lines)
	}
}

// TestTopologyScriptFailures: a script that fails, prints the wrong number
// of racks or an invalid path puts the blockd on the default rack.
func TestTopologyScriptFailures(t *testing.T) {
	for name, body := range map[string]string{
		"exit status": "echo /r1; exit 3\n",
		"too few":     "echo\n",
		"too many":    "echo /r1 /r2\n",
		"not a path":  "echo rack1\n",
		"empty part":  "echo /a//b\n",
	} {
		t.Run(name, func(t *testing.T) {
			m := openCfg(t, Config{Clock: newFakeClock(), TopologyScript: script(t, body)})
			rackCluster(t, m, 1)
			if got := racksOf(t, m)["DS-r0-h0"]; got != DefaultRack {
				t.Fatalf("rack %q, want %s", got, DefaultRack)
			}
		})
	}
	dir := t.TempDir()
	if _, err := Format(dir, false); err != nil {
		t.Fatal(err)
	}
	if m, err := Open(Config{Dir: dir, TopologyScript: filepath.Join(dir, "no-such-script")}); err == nil {
		m.Close()
		t.Fatal("metad opened with a topology script that does not exist")
	}
}

// TestRegisterRefusesABadRack: a blockd naming a rack that is not a valid
// path is refused with a clear error and not registered.
func TestRegisterRefusesABadRack(t *testing.T) {
	m := openCfg(t, Config{Clock: newFakeClock()})
	for _, rack := range []string{"rack1", "/a//b", "/a/", "/a b", "/\x00", "/" + strings.Repeat("x", 300)} {
		_, err := m.Register(context.Background(), cairn.Registration{Node: cairn.Node{StorageID: "DS-1", DataAddr: "10.0.0.1:9866", Rack: rack}})
		if cairn.KindOf(err) != cairn.KindInvalid {
			t.Errorf("rack %q: %v, want KindInvalid", rack, err)
		}
	}
	if got := racksOf(t, m); len(got) != 0 {
		t.Fatalf("registered %v after refusals", got)
	}
	if _, err := m.Register(context.Background(), cairn.Registration{Node: cairn.Node{StorageID: "DS-1", DataAddr: "10.0.0.1:9866"}}); err != nil {
		t.Fatal(err)
	}
	if got := racksOf(t, m)["DS-1"]; got != DefaultRack {
		t.Fatalf("a blockd naming no rack is on %q, want %s", got, DefaultRack)
	}
}

// FuzzParseScriptOutput: whatever a topology script prints, parsing it
// never panics, and what it accepts is n valid rack paths.
func FuzzParseScriptOutput(f *testing.F) {
	f.Add([]byte("/r1 /r2\n"), 2)
	f.Add([]byte("/dc1/r1\n/dc1/r2\n"), 2)
	f.Add([]byte("rack\n"), 1)
	f.Add([]byte("/a//b"), 1)
	f.Add([]byte(""), 0)
	f.Fuzz(func(t *testing.T, out []byte, n int) {
		racks, err := parseScriptOutput(out, n)
		if err != nil {
			return
		}
		if len(racks) != n {
			t.Fatalf("%d racks for %d addresses", len(racks), n)
		}
		for _, r := range racks {
			if validRack(r) != nil {
				t.Fatalf("accepted an invalid rack %q", r)
			}
		}
	})
}
