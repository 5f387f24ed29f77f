package tests

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"cairn/tests/cluster"
)

// TestExecNotHeldByPendingFsync: a program holding a file on the mount
// open for writing starts a child (a shell running a command, make, a
// logger's rotation script). The child's copy of the descriptor is closed
// at its exec (close-on-exec), and the kernel sends the mount a flush for
// it. That flush is not the writer's close and ends nothing: it must be
// answered at once, not after the program's fsync, which waits on a
// metad that does not answer (SIGSTOP here; a failover, a metad group
// with no leader yet) for as long as the client's retries last. Before,
// the exec waited for that fsync: up to the client's 30 s of retries per
// pending call, even when the child was the very metad the fsync waited
// for (TestMetadGroupChaos restarting a group it had SIGKILLed whole,
// while its workers wrote through the mount: 30 to 60 s per restart).
func TestExecNotHeldByPendingFsync(t *testing.T) {
	RequireFUSE(t)
	c := cluster.Start(t, cluster.Config{Blockds: 1, Replication: 1})
	mnt := c.Mount(t)
	path := filepath.Join(mnt, "log")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := bytes.Repeat([]byte("line of a log\n"), 300)
	half := len(want) / 2
	if _, err := f.Write(want[:half]); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(want[half:]); err != nil {
		t.Fatal(err)
	}

	pid := c.MetadPID()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	}
	defer resume()
	syncDone := make(chan error, 1)
	go func() { syncDone <- f.Sync() }()
	// The fsync reaches metad, which does not answer: it stays pending.
	time.Sleep(time.Second)
	select {
	case err := <-syncDone:
		t.Fatalf("fsync returned while metad was stopped: %v", err)
	default:
	}

	execDone := make(chan error, 1)
	go func() { execDone <- exec.Command("true").Run() }()
	// A bound against the old wait, well inside the client's 30 s of
	// retries, not a measure of speed.
	select {
	case err := <-execDone:
		if err != nil {
			t.Fatalf("the child failed: %v", err)
		}
	case err := <-syncDone:
		t.Fatalf("the fsync returned (%v) before the child's exec did: the exec waited for it", err)
	case <-time.After(15 * time.Second):
		t.Fatal("the child's exec still waits 15 s on, behind the fsync pending on the mount")
	}
	select {
	case err := <-syncDone:
		t.Fatalf("fsync returned while metad was stopped: %v", err)
	default:
	}

	// metad answers again: the fsync and the close go through, and the
	// file holds every byte.
	resume()
	if err := <-syncDone; err != nil {
		t.Fatalf("fsync after metad resumed: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read back %d bytes, want the %d written", len(got), len(want))
	}
}
