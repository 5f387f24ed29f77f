package tests

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cairn/tests/cluster"
)

// TestInterruptedCallsTellTheTruth runs tests/testdata/sigalrm.c on a real
// mount: under a SIGALRM every 0.5 ms, delivered to a handler installed
// without SA_RESTART, it makes 1,000 each of mkdir, exclusive create,
// rename and unlink, and after each call checks that the namespace shows
// what the call reported. A call that returned EINTR must have changed
// nothing, one that returned 0 must have made its change, and none may
// answer EEXIST or ENOENT for the program's own earlier work. The test
// fails on any such lie, and on any other error.
func TestInterruptedCallsTellTheTruth(t *testing.T) {
	RequireFUSE(t)
	prog := compileC(t, "sigalrm.c")
	c := cluster.Start(t, cluster.Config{Blockds: 1, Replication: 1})
	mnt := c.Mount(t)
	dir := filepath.Join(mnt, "storm")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	const n = 1000
	// A bound against a hung mount, not a measure of speed.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, dir, "1000")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	t.Logf("sigalrm %s %d:\n%s", dir, n, out)
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("sigalrm did not finish within 10 minutes; stderr:\n%s", head(stderr.String(), 4000))
	case errors.As(err, &ee):
		t.Errorf("sigalrm exited %d: calls reported what did not happen; stderr:\n%s", ee.ExitCode(), head(stderr.String(), 4000))
	case err != nil:
		t.Fatal(err)
	}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	last := ""
	for sc.Scan() {
		last = sc.Text()
	}
	if last != "lies=0 errors=0" {
		t.Errorf("sigalrm's last line is %q, want %q", last, "lies=0 errors=0")
	}
	// What is left: the directories, and no file.
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	dirs := 0
	for _, e := range es {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), "d") {
			t.Errorf("%s left in %s", e.Name(), dir)
			continue
		}
		dirs++
	}
	if dirs != n {
		t.Errorf("%d directories in %s, want %d", dirs, dir, n)
	}
}

// compileC compiles tests/testdata/NAME with cc into the test's temporary
// directory and returns the program. Without a C compiler the test skips,
// except in CI, where it fails.
func compileC(t *testing.T, name string) string {
	t.Helper()
	cc, err := exec.LookPath("cc")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("needs a C compiler (cc): %v (CI=true: may not skip)", err)
		}
		t.Skipf("needs a C compiler (cc): %v", err)
	}
	src, err := filepath.Abs(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), strings.TrimSuffix(name, ".c"))
	out, err := exec.Command(cc, "-O2", "-Wall", "-Wextra", "-Werror", "-o", bin, src).CombinedOutput()
	if err != nil {
		t.Fatalf("cc %s: %v\n%s", src, err, out)
	}
	return bin
}
