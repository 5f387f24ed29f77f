package cluster

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// buildTimeout bounds `go build ./cmd/cairn`; a cold module cache makes the
// first build slow.
const buildTimeout = 10 * time.Minute

// built is the binary this test binary built, once, when CAIRN_BIN is unset.
var built struct {
	once sync.Once
	dir  string // temporary directory holding it; removed by Main
	path string
	err  error
}

// Binary returns the absolute path of the cairn binary under test: $CAIRN_BIN
// when set, else a binary built from ./cmd/cairn of the enclosing module,
// once per test binary, into a temporary directory.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("CAIRN_BIN"); p != "" {
		abs, err := filepath.Abs(p)
		if err == nil {
			_, err = os.Stat(abs)
		}
		if err != nil {
			t.Fatalf("CAIRN_BIN=%s: %v", p, err)
		}
		return abs
	}
	built.once.Do(func() { built.path, built.err = build() })
	if built.err != nil {
		t.Fatalf("building cairn: %v", built.err)
	}
	return built.path
}

// Main runs the tests of a package and then removes the binary Binary built
// for them, if any. Use it from TestMain: os.Exit(cluster.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	return code
}

func build() (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "cairn-bin-")
	if err != nil {
		return "", err
	}
	built.dir = dir
	bin := filepath.Join(dir, "cairn")
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	// go test puts $GOROOT/bin first on PATH, so this is the go that
	// built the test.
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/cairn")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build -o %s ./cmd/cairn in %s: %v\n%s", bin, root, err, out)
	}
	return bin, nil
}

// moduleRoot returns the directory of the go.mod of module cairn, found from
// the working directory (a test runs in its package's directory) upwards.
func moduleRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if isCairnModule(filepath.Join(dir, "go.mod")) {
			return dir, nil
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("no go.mod of module cairn in %s or above", wd)
		}
	}
}

func isCairnModule(gomod string) bool {
	f, err := os.Open(gomod)
	if err != nil {
		return false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if mod, ok := strings.CutPrefix(strings.TrimSpace(s.Text()), "module "); ok {
			return strings.Trim(strings.TrimSpace(mod), `"`) == "cairn"
		}
	}
	return false
}
