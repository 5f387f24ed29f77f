// Package dev is `cairn dev`: a whole cluster on this machine in one
// command — metad, N blockds and a mount, each a child process of the same
// binary, stopped and unmounted together on Ctrl-C.
package dev

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"cairn/internal/daemon"
	"cairn/internal/versionfile"
	"cairn/mount"
)

type proc struct {
	name string
	cmd  *exec.Cmd
	done chan error
}

// Main is the `cairn dev` command.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("cairn dev", flag.ContinueOnError)
	fl.SetOutput(stderr)
	dir := fl.String("dir", "cairn-dev", "directory for the cluster's data and logs")
	n := fl.Int("blockds", 3, "number of blockds")
	mnt := fl.String("mount", "", "mount the namespace here (empty: no mount)")
	listen := fl.String("metad", "127.0.0.1:9000", "metad RPC address")
	httpAddr := fl.String("metad-http", "127.0.0.1:9870", "metad HTTP address")
	blockSize := fl.String("block-size", "", "default block size in bytes (empty: metad's default)")
	fl.Usage = func() {
		fmt.Fprintf(stderr, "Usage: cairn dev [--dir DIR] [--blockds 3] [--mount DIR]\n\nStarts metad, N blockds and a mount on this machine; Ctrl-C stops them all.\n\n")
		fl.PrintDefaults()
	}
	if _, code, ok := daemon.ParseFlags(fl, args, 0, stderr); !ok {
		return code
	}
	if *n < 1 || *n > 64 {
		return daemon.Usage(stderr, "cairn dev", "--blockds must be 1..64")
	}
	if err := run(ctx, stdout, *dir, *n, *mnt, *listen, *httpAddr, *blockSize); err != nil {
		fmt.Fprintf(stderr, "cairn dev: %v\n", err)
		return 1
	}
	return 0
}

func run(ctx context.Context, stdout io.Writer, dir string, n int, mnt, listen, httpAddr, blockSize string) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	ctx, stop := daemon.SignalContext(ctx)
	defer stop()

	var procs []*proc
	defer func() {
		// Stop in reverse order: the mount first, metad last.
		for i := len(procs) - 1; i >= 0; i-- {
			p := procs[i]
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
				_ = p.cmd.Process.Kill()
				<-p.done
			}
		}
		if mnt != "" {
			_ = exec.Command("fusermount3", "-u", "-z", mnt).Run()
		}
		fmt.Fprintln(stdout, "cairn dev: stopped")
	}()
	start := func(name string, args ...string) (*proc, error) {
		logf, err := os.OpenFile(filepath.Join(dir, "logs", name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return nil, err
		}
		cmd := exec.Command(self, args...)
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM, Setpgid: true}
		if err := cmd.Start(); err != nil {
			_ = logf.Close()
			return nil, fmt.Errorf("start %s: %w", name, err)
		}
		p := &proc{name: name, cmd: cmd, done: make(chan error, 1)}
		go func() { p.done <- cmd.Wait(); _ = logf.Close() }()
		procs = append(procs, p)
		return p, nil
	}

	metadDir := filepath.Join(dir, "metad")
	// Every blockd of a dev cluster starts with metad: once they have
	// reported, safe mode need not wait the 30 s extension a cluster of
	// many machines does.
	margs := []string{"metad", "--data", metadDir, "--listen", listen, "--http", httpAddr, "--addr-file", filepath.Join(dir, "metad.addr"),
		"--safemode-extension", "0s"}
	if _, err := versionfile.Read(metadDir); errors.Is(err, os.ErrNotExist) {
		margs = append(margs, "--format")
	}
	if blockSize != "" {
		if _, err := strconv.ParseInt(blockSize, 10, 64); err != nil {
			return fmt.Errorf("--block-size %q: %w", blockSize, err)
		}
		margs = append(margs, "--block-size", blockSize)
	}
	_ = os.Remove(filepath.Join(dir, "metad.addr"))
	mp, err := start("metad", margs...)
	if err != nil {
		return err
	}
	var maddr map[string]string
	if err := waitFile(ctx, filepath.Join(dir, "metad.addr"), mp, &maddr); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "metad     rpc %s  http https://%s  data %s\n", maddr["rpc"], maddr["http"], metadDir)
	dc, err := devCertsSetup(dir, metadDir)
	if err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("blockd%d", i+1)
		addrFile := filepath.Join(dir, name+".addr")
		_ = os.Remove(addrFile)
		tok, err := dc.joinToken()
		if err != nil {
			return err
		}
		bp, err := start(name, "blockd", "--data", filepath.Join(dir, name), "--metad", maddr["rpc"],
			"--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--addr-file", addrFile, "--join", tok)
		if err != nil {
			return err
		}
		var baddr map[string]string
		if err := waitFile(ctx, addrFile, bp, &baddr); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%-9s data %s  http https://%s  dir %s\n", name, baddr["data"], baddr["http"], filepath.Join(dir, name))
	}
	if mnt != "" {
		mnt, err = filepath.Abs(mnt)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(mnt, 0o755); err != nil {
			return err
		}
		mp, err := start("mount", "mount", maddr["rpc"], mnt, "--foreground", "-o", "certs="+dc.mount)
		if err != nil {
			return err
		}
		if err := waitMounted(ctx, mnt, mp); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "mount     %s\n", mnt)
	}
	fmt.Fprintf(stdout, "logs      %s\ncerts     %s (admin), %s (mount)\n\ncairn dev is up: try  cp /etc/hosts %s/  and  CAIRN_METAD=%s CAIRN_CERTS=%s cairn fsck /\nPress Ctrl-C to stop everything.\n",
		filepath.Join(dir, "logs"), dc.admin, dc.mount, orDefault(mnt, "MOUNTPOINT"), maddr["rpc"], dc.admin)
	cases := make(chan *proc, len(procs))
	for _, p := range procs {
		go func(p *proc) {
			err := <-p.done
			p.done <- err
			cases <- p
		}(p)
	}
	select {
	case <-ctx.Done():
		fmt.Fprintln(stdout, "\ncairn dev: stopping")
		return nil
	case p := <-cases:
		err := <-p.done
		p.done <- err
		return fmt.Errorf("%s exited (%v); see %s", p.name, err, filepath.Join(dir, "logs", p.name+".log"))
	}
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// waitFile waits for a daemon's address file, failing if the daemon exits.
func waitFile(ctx context.Context, path string, p *proc, v any) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		if b, err := os.ReadFile(path); err == nil {
			return json.Unmarshal(b, v)
		}
		select {
		case err := <-p.done:
			p.done <- err
			return fmt.Errorf("%s exited before it was ready (%v); see its log", p.name, err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after 60 s; see its log", p.name)
		}
	}
}

func waitMounted(ctx context.Context, dir string, p *proc) error {
	deadline := time.Now().Add(30 * time.Second)
	for mount.FUSEMounts(dir) == 0 {
		select {
		case err := <-p.done:
			p.done <- err
			return fmt.Errorf("mount exited before it was ready (%v); see its log", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return errors.New("mount not ready after 30 s; see its log")
		}
	}
	return nil
}
