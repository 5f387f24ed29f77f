package tests

// Decommissioning a host while clients read and write (metad/decommission.go).

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"cairn"
	"cairn/client"
	"cairn/tests/cluster"
)

// adminState is what metad's report says of blockd id's decommission.
func (rc *rackCluster) adminState(t *testing.T, id string) string {
	t.Helper()
	rep, err := rc.cli.NS.Report(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range rep.Nodes {
		if n.StorageID == id {
			return n.AdminState
		}
	}
	t.Fatalf("metad does not know blockd %s", id)
	return ""
}

func readAll(ctx context.Context, c *client.Client, path string) ([]byte, error) {
	r, err := c.Open(ctx, path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(io.NewSectionReader(r, 0, r.Size()))
}

// TestDecommissionWhileServing: six blockds on two racks. While a client
// writes new files and reads every file back, `cairn admin -decommission`
// retires the blockd holding the most replicas: no write or read fails,
// new blocks avoid it, admin -report shows it "Decommission in progress"
// and then "Decommissioned", and by then every block of every file has
// three good replicas on two racks without it. Switched off, nothing is
// lost: every byte reads back and fsck is HEALTHY.
func TestDecommissionWhileServing(t *testing.T) {
	rc := startRackCluster(t, []string{"/r1", "/r1", "/r1", "/r2", "/r2", "/r2"}, []string{""}, false,
		cluster.Config{BlockSize: 1 << 20, Replication: 3})
	files := map[string][]byte{}
	var mu sync.Mutex
	for i := range 6 {
		p := fmt.Sprintf("/before%d", i)
		data := randomBytes(3<<20+1000*i, uint64(10+i))
		putFile(t, rc.cli, p, data)
		files[p] = data
	}
	// The victim: the blockd holding the most replicas.
	count := map[string]int{}
	for p := range files {
		_, addrs := rc.replicas(t, p)
		for _, a := range addrs {
			for _, addr := range a {
				count[addr]++
			}
		}
	}
	victimAddr := ""
	for a, n := range count {
		if victimAddr == "" || n > count[victimAddr] {
			victimAddr = a
		}
	}
	victim := rc.BlockdOf(victimAddr)
	vid := rc.BlockdStorageID(victim)

	// A client writes new files and reads every file back, until stopped.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var failures []string
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			p := fmt.Sprintf("/during%d", i)
			data := randomBytes(1<<20+512*i, uint64(100+i))
			err := func() error {
				w, err := rc.cli.Create(asMe(), p, 0o644)
				if err != nil {
					return err
				}
				if _, err := w.Write(data); err != nil {
					_ = w.Close()
					return err
				}
				return w.Close()
			}()
			mu.Lock()
			if err != nil {
				failures = append(failures, fmt.Sprintf("write %s: %v", p, err))
			} else {
				files[p] = data
			}
			snapshot := make(map[string][]byte, len(files))
			for k, v := range files {
				snapshot[k] = v
			}
			mu.Unlock()
			for q, want := range snapshot {
				got, err := readAll(asMe(), rc.cli, q)
				if err != nil || !bytes.Equal(got, want) {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("read %s: %d bytes, %v", q, len(got), err))
					mu.Unlock()
				}
			}
		}
	}()
	t.Cleanup(func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	})

	out, code := rc.Run(t, "admin", "-decommission", victimAddr)
	if code != 0 || !strings.Contains(out, "Decommission Status : "+cairn.AdminDecommissioning) {
		t.Fatalf("admin -decommission %s: exit %d:\n%s", victimAddr, code, out)
	}
	report, _ := rc.Run(t, "admin", "-report")
	if st := rc.adminState(t, vid); st != cairn.AdminDecommissioning && st != cairn.AdminDecommissioned {
		t.Fatalf("after admin -decommission: %q\n%s", st, report)
	}
	waitFor(t, 3*time.Minute, "blockd"+fmt.Sprint(victim)+" decommissioned", func() bool {
		return rc.adminState(t, vid) == cairn.AdminDecommissioned
	})
	close(stop)
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d client calls failed while decommissioning, the first: %s", len(failures), failures[0])
	}
	report, _ = rc.Run(t, "admin", "-report")
	if !strings.Contains(report, "Name: "+victimAddr+" ("+vid+")\nRack: ") || !strings.Contains(report, "Decommission Status : "+cairn.AdminDecommissioned+"\n") {
		t.Fatalf("admin -report does not show %s Decommissioned:\n%s", victimAddr, report)
	}
	written := 0
	for p := range files {
		if strings.HasPrefix(p, "/during") {
			written++
		}
		racks, addrs := rc.replicas(t, p)
		for i, r := range racks {
			others := 0
			for _, a := range addrs[i] {
				if a != victimAddr {
					others++
				}
			}
			if others < 3 || r["/r1"] < 1 || r["/r2"] < 1 {
				t.Fatalf("block %d of %s: good replicas on %v (racks %v): want three on two racks without the decommissioned %s", i, p, addrs[i], r, victimAddr)
			}
		}
	}
	if written == 0 {
		t.Fatalf("no file was written while decommissioning")
	}

	// Switched off, nothing is lost.
	rc.KillBlockd(t, victim)
	for p, want := range files {
		got, err := readAll(asMe(), rc.cli, p)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s with the decommissioned blockd off: %d bytes, %v", p, len(got), err)
		}
	}
	if out, code := rc.Run(t, "fsck", "/"); code != 0 || !strings.Contains(out, "is HEALTHY") {
		t.Fatalf("fsck / with the decommissioned blockd off: exit %d\n%s", code, out)
	}
}
