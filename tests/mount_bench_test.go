package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"cairn/tests/cluster"
)

// BenchmarkMount runs the same workloads through a go-fuse loopback mount
// of a plain directory (the FUSE ceiling of this machine) and through
// cairn mounts with replication 1 and 3, in one run, and prints each
// figure with its ratio to the loopback's (above 1: faster than the
// loopback). Every byte goes through the daemons: the loopback does not
// use FUSE passthrough.
//
//	CAIRN_BIN=bin/cairn go test -run '^$' -bench BenchmarkMount -benchtime 1x ./tests/
//
// Sizes: CAIRN_BENCH_MOUNT_MB (the dd file, MiB; default 1024),
// CAIRN_BENCH_MOUNT_FILES (create, stat, ls -l, unlink; default 10000),
// CAIRN_BENCH_MOUNT_SMALL (files of 4 KiB; default 2000);
// CAIRN_BENCH_MOUNT_TARGETS picks targets (default "loopback,rep1,rep3");
// CAIRN_BENCH_MOUNT_OPTS adds arguments to `cairn mount`.
// With CAIRN_CPUPROFILE=DIR every cairn process writes a CPU profile
// there (internal/cli). Cold figures drop the kernel's caches first
// (/proc/sys/vm/drop_caches, root only; otherwise they are warm and the
// table says so).
func BenchmarkMount(b *testing.B) {
	RequireFUSE(b)
	cfg := mountBenchConfig{
		mib:     envInt(b, "CAIRN_BENCH_MOUNT_MB", 1024),
		files:   envInt(b, "CAIRN_BENCH_MOUNT_FILES", 10000),
		small:   envInt(b, "CAIRN_BENCH_MOUNT_SMALL", 2000),
		targets: strings.Split(envString("CAIRN_BENCH_MOUNT_TARGETS", "loopback,rep1,rep3"), ","),
	}
	results := map[string]map[string]float64{}
	for _, target := range cfg.targets {
		b.Run(target, func(b *testing.B) {
			dir := mountTarget(b, target)
			results[target] = runMountWorkloads(b, dir, cfg)
		})
	}
	printMountTable(cfg, results)
}

type mountBenchConfig struct {
	mib, files, small int
	targets           []string
}

// mountTarget mounts target for b and returns the directory to work in.
func mountTarget(b *testing.B, target string) string {
	if target == "loopback" {
		return mountLoopback(b)
	}
	rep, err := strconv.Atoi(strings.TrimPrefix(target, "rep"))
	if err != nil || !strings.HasPrefix(target, "rep") {
		b.Fatalf("CAIRN_BENCH_MOUNT_TARGETS: %q is neither loopback nor repN", target)
	}
	c := cluster.Start(b, cluster.Config{Blockds: max(3, rep), Replication: rep})
	mnt := c.Mount(b, strings.Fields(os.Getenv("CAIRN_BENCH_MOUNT_OPTS"))...)
	if os.Getenv("CAIRN_CPUPROFILE") != "" {
		// Profiles are written by processes that exit cleanly: stop the
		// daemons with SIGTERM after the mount (cleanups run last first).
		b.Cleanup(func() {
			for i := range c.BlockdDataDirs() {
				c.StopBlockd(b, i)
			}
			c.StopMetad(b)
		})
	}
	return mnt
}

// The workloads, in the order they run and print.
var mountWorkloads = []struct{ key, label, unit string }{
	{"write", "dd write + fdatasync", "MB/s"},
	{"readCold", "dd read cold", "MB/s"},
	{"readAgain", "dd read again", "MB/s"},
	{"create", "create+close empty", "/s"},
	{"stat", "stat cold", "/s"},
	{"ls", "ls -l warm", "s"},
	{"unlink", "unlink", "/s"},
	{"small", "files of 4 KiB (create, write, close)", "/s"},
}

func runMountWorkloads(b *testing.B, dir string, cfg mountBenchConfig) map[string]float64 {
	r := map[string]float64{}
	mb := float64(cfg.mib) * (1 << 20) / 1e6
	big := filepath.Join(dir, "big")
	d := timed(b, func() {
		benchRun(b, "dd", "if=/dev/zero", "of="+big, "bs=1M", fmt.Sprintf("count=%d", cfg.mib), "conv=fdatasync")
	})
	r["write"] = mb / d.Seconds()
	benchDropCaches(b)
	r["readCold"] = mb / timed(b, func() { benchRun(b, "dd", "if="+big, "of=/dev/null", "bs=1M") }).Seconds()
	r["readAgain"] = mb / timed(b, func() { benchRun(b, "dd", "if="+big, "of=/dev/null", "bs=1M") }).Seconds()
	if err := os.Remove(big); err != nil {
		b.Fatal(err)
	}

	many := filepath.Join(dir, "many")
	if err := os.Mkdir(many, 0o755); err != nil {
		b.Fatal(err)
	}
	names := make([]string, cfg.files)
	for i := range names {
		names[i] = filepath.Join(many, fmt.Sprintf("f%06d", i))
	}
	r["create"] = perSecond(cfg.files, timed(b, func() {
		for _, p := range names {
			f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
			if err == nil {
				err = f.Close()
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	}))
	benchDropCaches(b)
	r["stat"] = perSecond(cfg.files, timed(b, func() {
		for _, p := range names {
			if _, err := os.Lstat(p); err != nil {
				b.Fatal(err)
			}
		}
	}))
	benchRun(b, "ls", "-l", many) // warms the caches
	r["ls"] = timed(b, func() { benchRun(b, "ls", "-l", many) }).Seconds()
	r["unlink"] = perSecond(cfg.files, timed(b, func() {
		for _, p := range names {
			if err := os.Remove(p); err != nil {
				b.Fatal(err)
			}
		}
	}))

	small := filepath.Join(dir, "small")
	if err := os.Mkdir(small, 0o755); err != nil {
		b.Fatal(err)
	}
	page := make([]byte, 4096)
	for i := range page {
		page[i] = byte(i * 7)
	}
	r["small"] = perSecond(cfg.small, timed(b, func() {
		for i := range cfg.small {
			f, err := os.OpenFile(filepath.Join(small, fmt.Sprintf("s%06d", i)), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
			if err != nil {
				b.Fatal(err)
			}
			_, err = f.Write(page)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	}))
	for _, w := range mountWorkloads {
		b.Logf("%-40s %12.1f %s", w.label, r[w.key], w.unit)
	}
	return r
}

// printMountTable prints every target's figures with its ratio to the
// loopback. For ls -l, a time, the ratio is the loopback's time over the
// target's, so above 1 is faster there too.
func printMountTable(cfg mountBenchConfig, results map[string]map[string]float64) {
	var sb strings.Builder
	fmt.Fprintf(&sb, "\nmount benchmark: dd %d MiB, %d files, %d files of 4 KiB%s\n",
		cfg.mib, cfg.files, cfg.small, map[bool]string{true: "", false: " (caches NOT dropped: not root)"}[os.Geteuid() == 0])
	fmt.Fprintf(&sb, "%-40s", "workload")
	for _, t := range cfg.targets {
		fmt.Fprintf(&sb, " %22s", t)
	}
	sb.WriteString("\n")
	base := results["loopback"]
	for _, w := range mountWorkloads {
		fmt.Fprintf(&sb, "%-40s", w.label+" ("+w.unit+")")
		for _, t := range cfg.targets {
			v, ok := results[t][w.key]
			switch {
			case !ok:
				fmt.Fprintf(&sb, " %22s", "-")
			case t == "loopback" || base == nil || base[w.key] == 0 || v == 0:
				fmt.Fprintf(&sb, " %22s", fmtFigure(v))
			default:
				ratio := v / base[w.key]
				if w.unit == "s" {
					ratio = base[w.key] / v
				}
				fmt.Fprintf(&sb, " %22s", fmt.Sprintf("%s (%.2f)", fmtFigure(v), ratio))
			}
		}
		sb.WriteString("\n")
	}
	fmt.Print(sb.String())
}

func fmtFigure(v float64) string {
	if v < 10 {
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}

func timed(b *testing.B, f func()) time.Duration {
	b.Helper()
	start := time.Now()
	f()
	return time.Since(start)
}

func perSecond(n int, d time.Duration) float64 { return float64(n) / d.Seconds() }

// benchRun runs a command, its output discarded, and fails b if it fails.
func benchRun(b *testing.B, name string, args ...string) {
	b.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		b.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, lastBytes(out, 2000))
	}
}

func lastBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// benchDropCaches writes dirty pages out and drops the page cache, dentries
// and inodes, so the next reads and lookups go to the filesystem.
func benchDropCaches(b *testing.B) {
	b.Helper()
	if os.Geteuid() != 0 {
		return
	}
	benchRun(b, "sync")
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0); err != nil {
		b.Fatalf("dropping caches: %v", err)
	}
}

func envInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}

func envString(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
