package tests

// Maintenance (metad/maintenance.go): blockds switched off for a while
// without their replicas being copied elsewhere.

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"cairn"
	"cairn/client"
	"cairn/tests/cluster"
)

// goodHolders lists, for each block of each file, the storage IDs of its
// good replicas, live or not, sorted; and the live ones.
func goodHolders(t *testing.T, cl *client.Client, files map[string][]byte) (all, live map[string][]string) {
	t.Helper()
	all, live = map[string][]string{}, map[string][]string{}
	for p := range files {
		fr, err := cl.NS.ReplicaReport(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		for i, b := range fr.Blocks {
			k := fmt.Sprintf("%s#%d", p, i)
			all[k], live[k] = []string{}, []string{}
			for _, r := range b.Replicas {
				if r.Good {
					all[k] = append(all[k], r.StorageID)
					if r.Live {
						live[k] = append(live[k], r.StorageID)
					}
				}
			}
			sort.Strings(all[k])
			sort.Strings(live[k])
		}
	}
	return all, live
}

// nodeState is metad's report of blockd id: its admin state and whether
// it is live.
func nodeState(t *testing.T, cl *client.Client, id string) (string, bool) {
	t.Helper()
	rep, err := cl.NS.Report(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range rep.Nodes {
		if n.StorageID == id {
			return n.AdminState, n.Live
		}
	}
	t.Fatalf("metad does not know blockd %s", id)
	return "", false
}

func readsBack(t *testing.T, cl *client.Client, files map[string][]byte, when string) {
	t.Helper()
	for p, want := range files {
		got, err := readAll(asMe(), cl, p)
		if err != nil || string(got) != string(want) {
			t.Fatalf("%s: %s reads back %d bytes, %v; want its %d bytes", when, p, len(got), err, len(want))
		}
	}
}

// TestMaintenanceSwitchedOff: five blockds. Two holders B and C of one
// block X go into maintenance (admin -maintenance), are In maintenance,
// and are killed: past the dead interval and many replication rounds no
// replica of any block was made, every file reads back byte for byte,
// and fsck is HEALTHY, counting the replicas in maintenance. Then X's
// third holder V goes into maintenance too: X, whose other replicas are
// all on switched-off blockds, is copied once (the maintenance minimum)
// before V is In maintenance, so V killed too, X still reads back.
// Restarted and recommissioned, every block is back to three replicas
// (X's extra one trimmed), nothing lost.
func TestMaintenanceSwitchedOff(t *testing.T) {
	const dead = 2 * time.Second
	c := cluster.Start(t, cluster.Config{Blockds: 5, BlockSize: 256 << 10, Replication: 3, DeadAfter: dead})
	cl := volClient(t, c)
	files := map[string][]byte{}
	for i := range 8 {
		p := fmt.Sprintf("/m%d", i)
		files[p] = randomBytes(2*(256<<10)+1000*i, uint64(70+i))
		putFile(t, cl, p, files[p])
	}
	before, _ := goodHolders(t, cl, files)
	var x string
	for k, h := range before {
		if len(h) != 3 {
			t.Fatalf("block %s has replicas on %v before any maintenance, want three", k, h)
		}
		if x == "" || k < x {
			x = k
		}
	}
	b, cc, v := c.BlockdIndex(before[x][0]), c.BlockdIndex(before[x][1]), c.BlockdIndex(before[x][2])
	t.Logf("block %s on blockds %d, %d, %d: %d and %d go into maintenance first, then %d", x, b, cc, v, b, cc, v)

	for _, i := range []int{b, cc} {
		out, code := c.Run(t, "admin", "-maintenance", c.BlockdAddr(i), "-expire", "1h")
		if code != 0 || !strings.Contains(out, "Decommission Status : ") || !strings.Contains(out, "Maintenance expires: ") {
			t.Fatalf("admin -maintenance %s: exit %d:\n%s", c.BlockdAddr(i), code, out)
		}
	}
	for _, i := range []int{b, cc} {
		id := c.BlockdStorageID(i)
		waitFor(t, time.Minute, fmt.Sprintf("blockd %d in maintenance", i), func() bool {
			st, _ := nodeState(t, cl, id)
			return st == cairn.AdminInMaintenance
		})
	}
	report, _ := c.Run(t, "admin", "-report")
	if !strings.Contains(report, "Decommission Status : "+cairn.AdminInMaintenance+"\nMaintenance expires: ") {
		t.Fatalf("admin -report does not show a blockd In maintenance with its expiry:\n%s", report)
	}
	inMaint, _ := goodHolders(t, cl, files)
	c.KillBlockd(t, b)
	c.KillBlockd(t, cc)
	for _, i := range []int{b, cc} {
		id := c.BlockdStorageID(i)
		waitFor(t, time.Minute, fmt.Sprintf("blockd %d dead", i), func() bool {
			_, live := nodeState(t, cl, id)
			return !live
		})
	}
	// Many replication rounds (one a heartbeat, 200 ms) after both are
	// dead: a copy would be scheduled in the first and land within one
	// more heartbeat.
	time.Sleep(10 * 200 * time.Millisecond)
	after, _ := goodHolders(t, cl, files)
	for k, h := range after {
		if strings.Join(h, ",") != strings.Join(inMaint[k], ",") {
			t.Fatalf("block %s: replicas on %v with two blockds in maintenance off, were on %v: a copy was made", k, h, inMaint[k])
		}
	}
	readsBack(t, cl, files, "two blockds in maintenance off")
	out, code := c.Run(t, "fsck", "/")
	if code != 0 || !strings.Contains(out, "is HEALTHY") || !strings.Contains(out, " InMaintenanceReplicas:\t") || !strings.Contains(out, " Missing blocks:\t\t0\n") {
		t.Fatalf("fsck / with two blockds in maintenance off: exit %d, want HEALTHY with replicas in maintenance:\n%s", code, out)
	}

	// V too: X's only live replica is on it, so X is copied first.
	vid := c.BlockdStorageID(v)
	if out, code := c.Run(t, "admin", "-maintenance", vid); code != 0 {
		t.Fatalf("admin -maintenance %s: exit %d:\n%s", vid, code, out)
	}
	waitFor(t, time.Minute, "the third holder in maintenance", func() bool {
		st, _ := nodeState(t, cl, vid)
		return st == cairn.AdminInMaintenance
	})
	_, live := goodHolders(t, cl, files)
	copied := 0
	for _, id := range live[x] {
		if id != vid {
			copied++
		}
	}
	if copied < 1 {
		t.Fatalf("block %s: live replicas on %v once %s is In maintenance, want one elsewhere", x, live[x], vid)
	}
	c.KillBlockd(t, v)
	readsBack(t, cl, files, "three blockds in maintenance off")

	// Back, then recommissioned: three replicas each again.
	for _, i := range []int{b, cc, v} {
		c.StartBlockd(t, i)
	}
	for _, i := range []int{b, cc, v} {
		if out, code := c.Run(t, "admin", "-recommission", c.BlockdStorageID(i)); code != 0 || !strings.Contains(out, cairn.AdminNormal) {
			t.Fatalf("admin -recommission: exit %d:\n%s", code, out)
		}
	}
	waitFor(t, 2*time.Minute, "every block at three live replicas", func() bool {
		all, live := goodHolders(t, cl, files)
		for k := range all {
			if len(all[k]) != 3 || len(live[k]) != 3 {
				return false
			}
		}
		return true
	})
	readsBack(t, cl, files, "recommissioned")
	if out, code := c.Run(t, "fsck", "/"); code != 0 || !strings.Contains(out, "is HEALTHY") {
		t.Fatalf("fsck / recommissioned: exit %d\n%s", code, out)
	}
}
