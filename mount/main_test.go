package mount

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"cairn"
	"cairn/client"
)

// childEnv makes this test binary act as `cairn mount` over an in-memory
// backend, so Main's detaching and signal handling run for real.
const childEnv = "CAIRN_MOUNT_TEST_CHILD"

// mmapChildEnv makes this test binary map its descriptor 3 ("shared:N":
// MAP_SHARED, PROT_READ; "private:N": MAP_PRIVATE, PROT_READ|PROT_WRITE,
// written to after reading) and copy the N mapped bytes to stdout. A
// page of the mount is touched only outside the process serving it: a
// thread in a page fault cannot be stopped by the Go runtime, which may
// then never run the goroutine that would answer it.
const mmapChildEnv = "CAIRN_MOUNT_TEST_MMAP"

func TestMain(m *testing.M) {
	if spec := os.Getenv(mmapChildEnv); spec != "" {
		os.Exit(mmapChild(spec))
	}
	if os.Getenv(childEnv) == "1" && len(os.Args) > 1 && os.Args[1] == "mount" {
		b := newMemBackend()
		b.put("/sub/hello", []byte("hello"))
		os.Setenv("CAIRN_INSECURE", "1") // no metad: no certificate
		dialBackend = func(addr string, _ client.Options) (Backend, func() error, error) {
			if strings.HasPrefix(addr, "down:") {
				return downBackend{b}, func() error { return nil }, nil
			}
			return b, func() error { return nil }, nil
		}
		os.Exit(Main(context.Background(), os.Args[2:]))
	}
	os.Exit(m.Run())
}

func mmapChild(spec string) int {
	kind, size, _ := strings.Cut(spec, ":")
	n, err := strconv.Atoi(size)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	prot, flags := unix.PROT_READ, unix.MAP_SHARED
	if kind == "private" {
		prot, flags = unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE
	}
	mem, err := unix.Mmap(3, 0, n, prot, flags)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	os.Stdout.Write(mem)
	if kind == "private" {
		copy(mem, "XXXX")
	}
	return 0
}

// mapped returns the first n bytes of f as a mapping of it shows them
// (mmapChildEnv), or fails the test.
func mapped(t *testing.T, f *os.File, kind string, n int) []byte {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s:%d", mmapChildEnv, kind, n))
	cmd.ExtraFiles = []*os.File{f}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s mapping of %s: %v %s", kind, f.Name(), err, stderr.String())
	}
	return out
}

// downBackend is a cluster whose metad does not answer.
type downBackend struct{ *memBackend }

func (downBackend) Stat(ctx context.Context, path string) (cairn.FileInfo, error) {
	return cairn.FileInfo{}, cairn.E("test.Stat", cairn.KindUnavailable, path, "connection refused")
}

func TestParseArgs(t *testing.T) {
	for _, c := range []struct {
		args []string
		want config
	}{
		{
			[]string{"h:9000/a/b/", "/mnt", "-o", "ro,allow_other,_netdev,x-systemd.automount,noauto", "--debug"},
			config{source: "h:9000/a/b/", addr: "h:9000", root: "/a/b", mountpoint: "/mnt", debug: true,
				opts:    Options{ReadOnly: true, AllowOther: true},
				rawOpts: []string{"ro", "allow_other", "_netdev", "x-systemd.automount", "noauto"}},
		},
		{
			[]string{"--foreground", "10.0.0.1:9000", "-o", "nosuid", "/mnt", "-o", "nonempty,default_permissions,log=/tmp/l"},
			config{source: "10.0.0.1:9000", addr: "10.0.0.1:9000", root: "/", mountpoint: "/mnt", foreground: true, nonempty: true, logFile: "/tmp/l",
				opts:    Options{KernelOptions: []string{"nosuid"}, DefaultPermissions: true},
				rawOpts: []string{"nosuid", "nonempty", "default_permissions", "log=/tmp/l"}},
		},
		{ // as mount(8) calls mount.cairn
			[]string{"h:9000", "/mnt", "-n", "-o", "rw,defaults,users"},
			config{source: "h:9000", addr: "h:9000", root: "/", mountpoint: "/mnt", rawOpts: []string{"rw", "defaults", "users"}},
		},
		{
			[]string{"h:9000", "/mnt", "-o", "ack_timeout=3s,setup_timeout=1500ms,read_timeout=2s"},
			config{source: "h:9000", addr: "h:9000", root: "/", mountpoint: "/mnt",
				client:  client.Options{AckTimeout: 3 * time.Second, SetupTimeout: 1500 * time.Millisecond, ReadTimeout: 2 * time.Second},
				rawOpts: []string{"ack_timeout=3s", "setup_timeout=1500ms", "read_timeout=2s"}},
		},
		{ // a metad group
			[]string{"a:9000,b:9000,c:9000/x", "/mnt"},
			config{source: "a:9000,b:9000,c:9000/x", addr: "a:9000,b:9000,c:9000", root: "/x", mountpoint: "/mnt"},
		},
		{
			[]string{"h:9000", "/mnt", "-o", "metrics=127.0.0.1:0"},
			config{source: "h:9000", addr: "h:9000", root: "/", mountpoint: "/mnt", metrics: "127.0.0.1:0", rawOpts: []string{"metrics=127.0.0.1:0"}},
		},
		{
			[]string{"h:9000", "/mnt", "--metrics", ":9547"},
			config{source: "h:9000", addr: "h:9000", root: "/", mountpoint: "/mnt", metrics: ":9547"},
		},
		{
			[]string{"-s", "h:9000", "/mnt", "-o", "whatever", "-f"},
			config{source: "h:9000", addr: "h:9000", root: "/", mountpoint: "/mnt", fake: true, rawOpts: []string{"whatever"}},
		},
	} {
		got, err := parseArgs(c.args, &bytes.Buffer{})
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("parseArgs(%q) =\n%+v, %v; want\n%+v", c.args, got, err, c.want)
		}
	}
	for _, args := range [][]string{
		{},
		{"h:9000"},
		{"h:9000", "/mnt", "extra"},
		{"h", "/mnt"},
		{"h:9000,", "/mnt"},
		{"h:9000,b", "/mnt"},
		{"h:9000/../x", "/mnt"},
		{"h:9000", "/mnt", "-o", "bogus"},
		{"h:9000", "/mnt", "-o", "ack_timeout=soon"},
		{"h:9000", "/mnt", "-o", "read_timeout=0s"},
		{"h:9000", "/mnt", "-o", "setup_timeout"},
		{"h:9000", "/mnt", "--bogus"},
		{"h:9000", "/mnt", "-o", "metrics=9547"},
		{"h:9000", "/mnt", "--metrics", "nohostport"},
	} {
		if _, err := parseArgs(args, &bytes.Buffer{}); err == nil {
			t.Errorf("parseArgs(%q) accepted", args)
		}
	}
}

func TestMainChecks(t *testing.T) {
	full := t.TempDir()
	os.WriteFile(filepath.Join(full, "x"), nil, 0o644)
	for _, c := range []struct {
		args []string
		want int
	}{
		{[]string{"-h"}, 0},
		{[]string{"h:9000"}, 2},
		{[]string{"h:9000", "/mnt", "-o", "bogus"}, 2},
		{[]string{"h:9000", filepath.Join(full, "missing")}, 1},
		{[]string{"h:9000", filepath.Join(full, "x")}, 1},
		{[]string{"h:9000", full}, 1},
		{[]string{"h:9000", full, "-o", "nonempty", "-f"}, 0},
		{[]string{"h:9000", t.TempDir(), "-f"}, 0},
	} {
		if got := Main(context.Background(), c.args); got != c.want {
			t.Errorf("Main(%q) = %d, want %d", c.args, got, c.want)
		}
	}
}

// waitMounts waits until dir has n FUSE mounts.
func waitMounts(t *testing.T, dir string, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); FUSEMounts(dir) != n; {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d FUSE mounts, want %d", dir, FUSEMounts(dir), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func unmountAtEnd(t *testing.T, dir string) {
	t.Cleanup(func() {
		if FUSEMounts(dir) > 0 {
			exec.Command("fusermount3", "-u", "-z", dir).Run()
		}
	})
}

func TestMainBackground(t *testing.T) {
	requireFUSE(t)
	t.Setenv(childEnv, "1")
	dir := t.TempDir()
	unmountAtEnd(t, dir)
	if code := Main(context.Background(), []string{"mem:9000/sub", dir, "-o", "_netdev"}); code != 0 {
		t.Fatalf("Main = %d", code)
	}
	if n := FUSEMounts(dir); n != 1 {
		t.Fatalf("Main returned with %d mounts at %s", n, dir)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "hello")); err != nil || string(got) != "hello" {
		t.Errorf("read through the detached mount: %q %v", got, err)
	}
	// Unmounted from outside, the detached process ends by itself. The
	// kernel releases the file just read a moment after close(2), and
	// until then the mount is busy.
	for try := 0; ; try++ {
		out, err := exec.Command("fusermount3", "-u", dir).CombinedOutput()
		if err == nil {
			break
		}
		if try == 50 {
			t.Fatalf("fusermount3 -u: %v %s", err, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitMounts(t, dir, 0)
}

func TestMainBackgroundFailure(t *testing.T) {
	t.Setenv(childEnv, "1")
	dir := t.TempDir()
	unmountAtEnd(t, dir)
	cfg, err := parseArgs([]string{"down:9000", dir}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.checkMountpoint(); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	if code := background(context.Background(), cfg, &stderr); code != 1 {
		t.Errorf("background = %d, want 1", code)
	}
	if !strings.Contains(stderr.String(), "metad down:9000") || !strings.Contains(stderr.String(), "connection refused") {
		t.Errorf("stderr: %q", stderr.String())
	}
}

func TestMainForegroundSignal(t *testing.T) {
	requireFUSE(t)
	dir := t.TempDir()
	unmountAtEnd(t, dir)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "mount", "mem:9000", dir, "--foreground")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitMounts(t, dir, 1)
	if _, err := os.Stat(filepath.Join(dir, "sub", "hello")); err != nil {
		t.Error(err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("still running 10 s after SIGTERM\n%s", stderr.String())
	}
	if n := FUSEMounts(dir); n != 0 {
		t.Errorf("%d mounts left at %s", n, dir)
	}
	if !strings.Contains(stderr.String(), "mounted") || !strings.Contains(stderr.String(), "unmounted") {
		t.Errorf("log: %s", stderr.String())
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	if got := unescapeMountinfo(`/tmp/a\040b\134c\011`); got != "/tmp/a b\\c\t" {
		t.Errorf("got %q", got)
	}
}

func TestCountFUSEMounts(t *testing.T) {
	const mountinfo = `22 1 0:21 / /proc rw,nosuid shared:5 - proc proc rw
97 29 0:52 / /tmp/a\040b/mnt rw,nosuid,nodev,relatime shared:53 - fuse.cairn cairn rw,user_id=0,group_id=0
98 29 0:53 / /tmp/plain rw,relatime - fuse cairn rw
99 29 0:54 / /tmp/tmpfs rw,relatime - tmpfs tmpfs rw
100 29 0:55 / /tmp/blk rw,relatime - fuseblk dev rw
`
	for mnt, want := range map[string]int{
		"/tmp/a b/mnt": 1,
		"/tmp/plain":   1,
		"/tmp/tmpfs":   0,
		"/tmp/blk":     0,
		"/proc":        0,
		"/nowhere":     0,
	} {
		if got := countFUSEMounts([]byte(mountinfo), mnt); got != want {
			t.Errorf("countFUSEMounts(%q) = %d, want %d", mnt, got, want)
		}
	}
}
