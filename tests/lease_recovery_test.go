package tests

import (
	"testing"
	"time"

	"cairn"
	"cairn/client"
	"cairn/tests/cluster"
)

// leaseCluster is a cluster whose metad recovers abandoned files within
// seconds and whose blockds send full block reports every second, so a
// report that would delete replicas comes soon after a recovery.
func leaseCluster(t *testing.T, blockds int) *cluster.Cluster {
	return cluster.Start(t, cluster.Config{
		Blockds: blockds, Replication: blockds, BlockSize: 4 << 20,
		MetadArgs:  []string{"--lease-soft-limit", "1s", "--lease-hard-limit", "2s"},
		BlockdArgs: []string{"--block-report-interval", "1s"},
	})
}

// abandon makes cl's writers look dead to metad: the client stops renewing
// and never calls again, as a killed process would.
func abandon(t *testing.T, cl *client.Client) {
	t.Helper()
	if err := cl.Close(); err != nil {
		t.Logf("close of the abandoned client: %v", err)
	}
}

// waitFileClosed waits until metad has closed path after recovering its lease.
func waitFileClosed(t *testing.T, cl *client.Client, path string) cairn.FileInfo {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		fi, err := cl.NS.Stat(asMe(), path)
		if err != nil {
			t.Fatalf("stat %s: %v", path, err)
		}
		if !fi.Writing {
			return fi
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is still open for writing a minute after its writer died", path)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// readAfterReports reads path back after the blockds sent full block
// reports (which is where a wrong decision deletes replicas) and checks
// fsck.
func readAfterReports(t *testing.T, c *cluster.Cluster, cl *client.Client, path string, want []byte) {
	t.Helper()
	time.Sleep(3 * time.Second) // three full reports from every blockd
	readBack(t, cl, path, want)
	if out, code := c.Run(t, "fsck", path, "-files", "-blocks"); code != 0 {
		t.Fatalf("fsck %s: exit %d\n%s", path, code, out)
	}
}

// TestAppendDiesBeforeWriting: a healthy closed file, one Append whose
// writer dies before writing a byte, and lease recovery: the file is as it
// was. (It was lost: Append stored a new stamp no replica had, recovery
// closed the file at it, and the next block report deleted every replica.)
func TestAppendDiesBeforeWriting(t *testing.T) {
	c := leaseCluster(t, 3)
	cl := dial(t, c)
	data := randomBytes(1<<20, 21)
	putFile(t, cl, "/f", data)

	dead := dial(t, c)
	if _, err := dead.Append(asMe(), "/f"); err != nil {
		t.Fatal(err)
	}
	abandon(t, dead)
	if fi := waitFileClosed(t, cl, "/f"); fi.Size != int64(len(data)) {
		t.Fatalf("after recovery the file holds %d bytes, want %d", fi.Size, len(data))
	}
	readAfterReports(t, c, cl, "/f", data)

	// And it can be appended to again.
	w, err := cl.Append(asMe(), "/f")
	if err != nil {
		t.Fatal(err)
	}
	more := randomBytes(1000, 22)
	if _, err := w.Write(more); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	readBack(t, cl, "/f", append(data, more...))
}

// TestAppendDiesAfterSync: an appender that synced some bytes and died
// keeps them: recovery finds the replicas at the append's stamp.
func TestAppendDiesAfterSync(t *testing.T) {
	c := leaseCluster(t, 3)
	cl := dial(t, c)
	data := randomBytes(1<<20+300, 23)
	putFile(t, cl, "/f", data)

	dead := dial(t, c)
	w, err := dead.Append(asMe(), "/f")
	if err != nil {
		t.Fatal(err)
	}
	more := randomBytes(200<<10+7, 24)
	if _, err := w.Write(more); err != nil {
		t.Fatal(err)
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	abandon(t, dead)
	want := append(data, more...)
	if fi := waitFileClosed(t, cl, "/f"); fi.Size != int64(len(want)) {
		t.Fatalf("after recovery the file holds %d bytes, want %d (every synced byte)", fi.Size, len(want))
	}
	readAfterReports(t, c, cl, "/f", want)
}

// TestSyncedThenWriterDies: 5 MiB written and hsynced, the writer dies,
// metad recovers the file: every synced byte reads back, also after every
// blockd restarts. (The file was lost: replicas being written were never
// finalized, full reports left them out, and after a restart they were
// dropped as of the wrong length.)
func TestSyncedThenWriterDies(t *testing.T) {
	c := leaseCluster(t, 3)
	cl := dial(t, c)
	dead := dial(t, c)
	w, err := dead.Create(asMe(), "/open", 0o644)
	if err != nil {
		t.Fatal(err)
	}
	data := randomBytes(5<<20+1234, 25) // two blocks, the last one partial
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	abandon(t, dead)
	if fi := waitFileClosed(t, cl, "/open"); fi.Size != int64(len(data)) {
		t.Fatalf("after recovery the file holds %d bytes, want %d", fi.Size, len(data))
	}
	readAfterReports(t, c, cl, "/open", data)
	for i := range 3 {
		c.KillBlockd(t, i)
		c.StartBlockd(t, i)
	}
	readAfterReports(t, c, cl, "/open", data)
}
