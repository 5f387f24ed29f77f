package dfs

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"cairn/tests/cluster"
)

// The verbs that act over time, run by the real binary against one real
// cluster (three blockds, replication 1, a trash interval of 1.2 s,
// started by TestLive for its subtests):
// tail -f following another writer, setrep -w waiting for new copies,
// metad's trash emptier, the progress bar on a terminal, put from stdin.
// Every wait has a deadline; none asserts how fast anything is.

// deadline bounds each wait for something the cluster does by itself.
const deadline = 60 * time.Second

// TestLive starts the cluster its subtests share.
func TestLive(t *testing.T) {
	c := cluster.Start(t, cluster.Config{
		Blockds: 3, Replication: 1,
		MetadArgs: []string{"--trash-interval", "0.02"},
	})
	t.Run("TailFollowsAnotherWriter", func(t *testing.T) { testTailFollowsAnotherWriter(t, c) })
	t.Run("SetrepWaitsForNewCopies", func(t *testing.T) { testSetrepWaitsForNewCopies(t, c) })
	t.Run("TrashEmptier", func(t *testing.T) { testTrashEmptier(t, c) })
	t.Run("ProgressBarOnATerminal", func(t *testing.T) { testProgressBarOnATerminal(t, c) })
	t.Run("PutFromStdin", func(t *testing.T) { testPutFromStdin(t, c) })
	t.Run("InterruptedPutLeavesNothing", func(t *testing.T) { testInterruptedPut(t, c) })
}

// dfsCmd is `cairn dfs --metad ADDR ARGS...` for the test to start
// itself (stdin, a pty, a signal), with the cluster's credentials.
func dfsCmd(ctx context.Context, t *testing.T, c *cluster.Cluster, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, cluster.Binary(t), append([]string{"dfs", "--metad", c.MetadAddr()}, args...)...)
	cmd.Env = append(os.Environ(), c.ClientEnv()...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// dfsRun runs `cairn dfs ARGS...` and fails the test unless it exits 0.
func dfsRun(t *testing.T, c *cluster.Cluster, args ...string) string {
	t.Helper()
	res, err := c.RunOutput(append([]string{"dfs"}, args...)...)
	if err != nil || res.Code != 0 {
		t.Fatalf("cairn dfs %s: exit %d, %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), res.Code, err, res.Stdout, res.Stderr)
	}
	return res.Stdout
}

func testTailFollowsAnotherWriter(t *testing.T, c *cluster.Cluster) {
	local := t.TempDir()
	writeFile(t, filepath.Join(local, "first"), "first line\n")
	writeFile(t, filepath.Join(local, "more"), "appended by another writer\n")
	dfsRun(t, c, "-mkdir", "-p", "/tail")
	dfsRun(t, c, "-put", filepath.Join(local, "first"), "/tail/log")

	ctx, cancel := context.WithTimeout(context.Background(), 2*deadline)
	defer cancel()
	cmd := dfsCmd(ctx, t, c, "-tail", "-f", "-s", "100", "/tail/log")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	defer func() { _ = cmd.Process.Kill() }()

	next := func(want string) {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("tail -f exited before %q; stderr:\n%s", want, stderr.String())
			}
			if l != want {
				t.Fatalf("tail -f printed %q, want %q", l, want)
			}
		case <-time.After(deadline):
			t.Fatalf("tail -f printed no %q within %v", want, deadline)
		}
	}
	next("first line")
	// Another process appends; the follower must show it.
	dfsRun(t, c, "-appendToFile", filepath.Join(local, "more"), "/tail/log")
	next("appended by another writer")

	// Interrupted, it stops with 130, as a Hadoop client ended by ^C, and
	// says nothing.
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		if code := cmd.ProcessState.ExitCode(); code != 130 || stderr.String() != "" {
			t.Fatalf("tail -f interrupted: exit %d, stderr %q", code, stderr.String())
		}
	case <-time.After(deadline):
		t.Fatalf("tail -f still runs %v after SIGINT", deadline)
	}
}

func testSetrepWaitsForNewCopies(t *testing.T, c *cluster.Cluster) {
	local := t.TempDir()
	big := make([]byte, 200000)
	for i := range big {
		big[i] = byte(i * 13 % 251)
	}
	writeFile(t, filepath.Join(local, "f"), string(big))
	dfsRun(t, c, "-mkdir", "-p", "/setrep")
	// Two blocks, one replica each.
	dfsRun(t, c, "-D", "dfs.blocksize=131072", "-put", filepath.Join(local, "f"), "/setrep/f")
	if got := dfsRun(t, c, "-stat", "%r", "/setrep/f"); got != "1\n" {
		t.Fatalf("replication before setrep: %q", got)
	}

	out := dfsRun(t, c, "-setrep", "-w", "2", "/setrep/f")
	if !regexp.MustCompile(`^Replication 2 set: /setrep/f\nWaiting for /setrep/f \.* done\n$`).MatchString(out) {
		t.Fatalf("setrep -w printed:\n%s", out)
	}
	// Done means done: every block has two good replicas now.
	fsck := dfsFsck(t, c, "/setrep/f")
	if strings.Count(fsck, "Live_repl=2") != 2 || strings.Contains(fsck, "Live_repl=1") {
		t.Fatalf("after setrep -w 2, fsck shows:\n%s", fsck)
	}
	// du's second column counts every replica.
	if got := dfsRun(t, c, "-du", "/setrep/f"); got != "200000  400000  /setrep/f\n" {
		t.Fatalf("du after setrep 2: %q", got)
	}
}

// dfsFsck is `cairn fsck PATH -files -blocks` (block lines say Live_repl=N).
func dfsFsck(t *testing.T, c *cluster.Cluster, p string) string {
	t.Helper()
	res, err := c.RunOutput("fsck", p, "-files", "-blocks")
	if err != nil {
		t.Fatalf("cairn fsck: %v", err)
	}
	return res.Stdout
}

func testTrashEmptier(t *testing.T, c *cluster.Cluster) {
	me, _ := currentUser(t)
	root := "/user/" + me + "/.Trash"
	dfsRun(t, c, "-mkdir", "-p", "/user/"+me, "/emptier")
	dfsRun(t, c, "-touchz", "/emptier/gone")
	res, err := c.RunOutput("dfs", "-rm", "/emptier/gone")
	if err != nil || res.Code != 0 || res.Stdout != "" || !strings.Contains(res.Stderr, "INFO fs.TrashPolicyDefault: Moved: 'cairn://") {
		t.Fatalf("rm with trash on: exit %d, %v\nstdout:\n%s\nstderr:\n%s", res.Code, err, res.Stdout, res.Stderr)
	}

	// metad's emptier turns Current into a checkpoint...
	checkpoint := regexp.MustCompile(`^` + regexp.QuoteMeta(root) + `/\d{12}$`)
	var cp string
	waitFor(t, "the emptier to checkpoint "+root+"/Current", func() bool {
		for _, l := range strings.Split(strings.TrimSpace(dfsRun(t, c, "-ls", "-C", root)), "\n") {
			if checkpoint.MatchString(l) {
				cp = l
			}
		}
		return cp != ""
	})
	if out := dfsRun(t, c, "-ls", "-C", "-R", cp); !strings.Contains(out, cp+"/emptier/gone") {
		t.Fatalf("checkpoint %s holds:\n%s", cp, out)
	}
	// ...and deletes it once it is older than the interval.
	waitFor(t, "the emptier to delete "+cp, func() bool {
		res, err := c.RunOutput("dfs", "-test", "-e", cp)
		return err == nil && res.Code == 1
	})
}

// waitFor polls cond until it holds, failing the test after deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("waited %v for %s", deadline, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func testProgressBarOnATerminal(t *testing.T, c *cluster.Cluster) {
	script, err := exec.LookPath("script")
	if err != nil {
		t.Skip("no script(1) (util-linux) to give the command a terminal")
	}
	local := t.TempDir()
	big := make([]byte, 1<<20)
	writeFile(t, filepath.Join(local, "big.bin"), string(big))
	dfsRun(t, c, "-mkdir", "-p", "/progress")

	// script runs the command on a new pty: stderr is a terminal there.
	term := func(args ...string) string {
		t.Helper()
		line := []string{cluster.Binary(t), "dfs", "--metad", c.MetadAddr()}
		line = append(line, args...)
		ctx, cancel := context.WithTimeout(context.Background(), 2*deadline)
		defer cancel()
		cmd := exec.CommandContext(ctx, script, "-qefc", shellQuote(line), "/dev/null")
		cmd.Env = append(os.Environ(), c.ClientEnv()...)
		cmd.Stdin = strings.NewReader("")
		cmd.WaitDelay = 5 * time.Second
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("script %s: %v\n%s", strings.Join(line, " "), err, out)
		}
		return string(out)
	}
	for _, tc := range []struct{ verb, args, want string }{
		{"put", "-put LOCAL/big.bin /progress/big.bin", "put: big.bin 100% [==============================] 1 M/1 M"},
		{"get", "-get /progress/big.bin LOCAL/back.bin", "get: big.bin 100% [==============================] 1 M/1 M"},
	} {
		out := term(strings.Fields(strings.ReplaceAll(tc.args, "LOCAL", local))...)
		if !strings.Contains(out, "\r"+tc.want) {
			t.Errorf("%s on a terminal drew no finished bar %q:\n%q", tc.verb, tc.want, out)
		}
	}
	// Piped, the same copy draws nothing.
	res, err := c.RunOutput("dfs", "-put", "-f", filepath.Join(local, "big.bin"), "/progress/big.bin")
	if err != nil || res.Code != 0 || res.Stdout != "" || res.Stderr != "" {
		t.Fatalf("put piped: exit %d, %v, stdout %q, stderr %q", res.Code, err, res.Stdout, res.Stderr)
	}
}

// shellQuote joins args into one sh command line.
func shellQuote(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

func testPutFromStdin(t *testing.T, c *cluster.Cluster) {
	dfsRun(t, c, "-mkdir", "-p", "/stdin")
	put := func(args ...string) (string, int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*deadline)
		defer cancel()
		cmd := dfsCmd(ctx, t, c, args...)
		cmd.Stdin = strings.NewReader("from standard input\n")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Fatalf("cairn dfs %s: %v", strings.Join(args, " "), err)
		}
		return string(out) + stderr.String(), cmd.ProcessState.ExitCode()
	}
	if out, code := put("-put", "-", "/stdin/a"); code != 0 || out != "" {
		t.Fatalf("put - /stdin/a: exit %d, %q", code, out)
	}
	if got := dfsRun(t, c, "-cat", "/stdin/a"); got != "from standard input\n" {
		t.Fatalf("put - wrote %q", got)
	}
	// An existing file is refused without -f, as any put.
	if out, code := put("-put", "-", "/stdin/a"); code != 1 || out != "put: `/stdin/a': File exists\n" {
		t.Fatalf("put - onto a file: exit %d, %q", code, out)
	}
	// Onto a directory, Hadoop's Put names the new file "-"
	// (CommandWithDestination.getTargetPath of the source "-").
	if out, code := put("-put", "-", "/stdin"); code != 0 || out != "" {
		t.Fatalf("put - onto a directory: exit %d, %q", code, out)
	}
	if got := dfsRun(t, c, "-cat", "/stdin/-"); got != "from standard input\n" {
		t.Fatalf("put - /stdin wrote %q to /stdin/-", got)
	}
	if out, code := put("-appendToFile", "-", "/stdin/a"); code != 0 || out != "" {
		t.Fatalf("appendToFile -: exit %d, %q", code, out)
	}
	if got := dfsRun(t, c, "-cat", "/stdin/a"); got != "from standard input\nfrom standard input\n" {
		t.Fatalf("appendToFile - made %q", got)
	}
}

// An interrupted put removes its PATH._COPYING_ (Hadoop's deleteOnExit)
// and exits 130 without a word.
func testInterruptedPut(t *testing.T, c *cluster.Cluster) {
	dfsRun(t, c, "-mkdir", "-p", "/intr")
	ctx, cancel := context.WithTimeout(context.Background(), 2*deadline)
	defer cancel()
	cmd := dfsCmd(ctx, t, c, "-put", "-", "/intr/f")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = in.Close() }()
	if _, err := in.Write(make([]byte, 200000)); err != nil {
		t.Fatal(err)
	}
	// The copy is under way once its temporary file exists.
	waitFor(t, "/intr/f._COPYING_ to appear", func() bool {
		res, err := c.RunOutput("dfs", "-test", "-e", "/intr/f._COPYING_")
		return err == nil && res.Code == 0
	})
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 130 || stdout.String() != "" || stderr.String() != "" {
		t.Fatalf("put interrupted: exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
	if got := dfsRun(t, c, "-ls", "-C", "/intr"); got != "" {
		t.Fatalf("an interrupted put left:\n%s", got)
	}
}
