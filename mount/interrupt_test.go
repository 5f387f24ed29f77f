package mount

import (
	"cairn"
	"context"
	"errors"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// gatedBackend holds Mkdir until the test releases it, and then answers as
// a remote call whose caller was cancelled would: the change is made (metad
// had it), but a cancelled context gets its error back.
type gatedBackend struct {
	*memBackend
	entered, release chan struct{}
}

func (g gatedBackend) Mkdir(ctx context.Context, path string, perm os.FileMode) error {
	close(g.entered)
	select {
	case <-g.release:
	case <-ctx.Done():
	}
	if err := g.memBackend.Mkdir(context.WithoutCancel(ctx), path, perm); err != nil {
		return err
	}
	return ctx.Err()
}

// TestInterruptDoesNotCancelMutation: a signal to a process in mkdir(2)
// makes the kernel send an INTERRUPT while the backend works on the call.
// The call must not be cancelled by it, so what mkdir returns is what
// happened: 0 and the directory exists (or EINTR and it does not).
func TestInterruptDoesNotCancelMutation(t *testing.T) {
	g := gatedBackend{memBackend: newMemBackend(), entered: make(chan struct{}), release: make(chan struct{})}
	m := mountMem(t, g, Options{Debug: true})
	p := m.path("d")

	type result struct{ err error }
	tids, done := make(chan int, 1), make(chan result, 1)
	go func() {
		// mkdir(2) on a thread of its own, to be signalled.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		tids <- unix.Gettid()
		done <- result{unix.Mkdir(p, 0o755)}
	}()
	tid := <-tids
	select {
	case <-g.entered:
	case r := <-done:
		t.Fatalf("mkdir returned %v before the backend was asked", r.err)
	}
	// SIGURG: the Go runtime's own signal, harmless to the thread; the
	// kernel sends the mount an INTERRUPT for the pending request.
	if err := unix.Tgkill(os.Getpid(), tid, unix.SIGURG); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if interrupted(m) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no INTERRUPT reached the mount within 30 s")
		}
	}
	close(g.release)
	r := <-done
	_, err := os.Lstat(p)
	exists := err == nil
	switch {
	case r.err == nil && !exists:
		t.Errorf("mkdir returned 0, but %s does not exist", p)
	case errors.Is(r.err, syscall.EINTR) && exists:
		t.Errorf("mkdir returned EINTR, but %s was made", p)
	case r.err != nil && !errors.Is(r.err, syscall.EINTR):
		t.Errorf("mkdir: %v", r.err)
	}
}

// interrupted reports whether the mount has logged an INTERRUPT request.
func interrupted(m *testMount) bool {
	for _, e := range m.logs.All() {
		if strings.Contains(e.Message, "INTERRUPT") {
			return true
		}
	}
	return false
}

// gatedStat holds Stat until the test releases it, and answers as a remote
// call would: a cancelled context gets its error back.
type gatedStat struct {
	*memBackend
	path             string
	entered, release chan struct{}
}

func (g gatedStat) Stat(ctx context.Context, path string) (cairn.FileInfo, error) {
	if path == g.path {
		close(g.entered)
		select {
		case <-g.release:
		case <-ctx.Done():
			return cairn.FileInfo{}, ctx.Err()
		}
	}
	return g.memBackend.Stat(ctx, path)
}

// TestInterruptDoesNotFailLookup: a signal to a process in lstat(2) of a
// name the kernel does not know yet (a LOOKUP) must not make lstat fail
// with EINTR, which lstat does not restart: the lookup changes nothing and
// runs to its end.
func TestInterruptDoesNotFailLookup(t *testing.T) {
	mem := newMemBackend()
	if err := mem.Mkdir(context.Background(), "/d", 0o755); err != nil {
		t.Fatal(err)
	}
	g := gatedStat{memBackend: mem, path: "/d", entered: make(chan struct{}), release: make(chan struct{})}
	m := mountMem(t, g, Options{Debug: true})
	p := m.path("d")

	tids, done := make(chan int, 1), make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		tids <- unix.Gettid()
		var st unix.Stat_t
		done <- unix.Lstat(p, &st)
	}()
	tid := <-tids
	select {
	case <-g.entered:
	case err := <-done:
		t.Fatalf("lstat returned %v before the backend was asked", err)
	}
	if err := unix.Tgkill(os.Getpid(), tid, unix.SIGURG); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); !interrupted(m); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no INTERRUPT reached the mount within 30 s")
		}
	}
	close(g.release)
	if err := <-done; err != nil {
		t.Fatalf("lstat of an existing directory, interrupted: %v, want success", err)
	}
}
