// Package dev is `cairn dev`: a whole cluster on this machine in one
// command — metad, N blockds (over R racks) and a mount, each a child
// process of the same binary, stopped and unmounted together on Ctrl-C. A
// daemon that exits is reported and the others go on; `cairn dev status`
// and `cairn dev restart NAME` talk to the running cairn dev through its
// control socket (control.go). super.go runs the processes, failure.go
// explains a daemon that does not come up.
package dev

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"

	"cairn/internal/daemon"
	"cairn/mount"
)

// options are the flags of `cairn dev`.
type options struct {
	dir       string
	blockds   int
	racks     int
	mnt       string
	listen    string
	httpAddr  string
	blockSize string
}

// Main is the `cairn dev` command: `cairn dev [flags]` runs a cluster,
// `cairn dev status` and `cairn dev restart NAME` talk to one running.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && (args[0] == "status" || args[0] == "restart") {
		return control(args[0], args[1:], stdout, stderr)
	}
	fl := flag.NewFlagSet("cairn dev", flag.ContinueOnError)
	fl.SetOutput(stderr)
	var o options
	fl.StringVar(&o.dir, "dir", "cairn-dev", "directory for the cluster's data and logs")
	fl.IntVar(&o.blockds, "blockds", 3, "number of blockds")
	fl.IntVar(&o.racks, "racks", 0, "spread the blockds over this many racks, /rack1.../rackR, in turn (0: no --rack, every blockd on metad's default rack)")
	fl.StringVar(&o.mnt, "mount", "", "mount the namespace here (empty: no mount)")
	fl.StringVar(&o.listen, "metad", "127.0.0.1:9000", "metad RPC address (port 0: any free port)")
	fl.StringVar(&o.httpAddr, "metad-http", "127.0.0.1:9870", "metad HTTP address (port 0: any free port)")
	fl.StringVar(&o.blockSize, "block-size", "", "default block size in bytes (empty: metad's default)")
	fl.Usage = func() {
		fmt.Fprintf(stderr, `Usage: cairn dev [--dir DIR] [--blockds 3] [--racks R] [--mount DIR]
       cairn dev status [--dir DIR]
       cairn dev restart metad|blockdN|mount [--dir DIR]

Starts metad, N blockds and a mount on this machine; Ctrl-C stops them all.
A daemon that exits is reported and the others keep running; status shows
each daemon, restart stops one (if it runs) and starts it again.

`)
		fl.PrintDefaults()
	}
	if _, code, ok := daemon.ParseFlags(fl, args, 0, stderr); !ok {
		return code
	}
	if o.blockds < 1 || o.blockds > 64 {
		return daemon.Usage(stderr, "cairn dev", "--blockds must be 1..64")
	}
	if o.racks < 0 || o.racks > o.blockds {
		return daemon.Usage(stderr, "cairn dev", "--racks must be 0..--blockds")
	}
	if o.blockSize != "" {
		if _, err := strconv.ParseInt(o.blockSize, 10, 64); err != nil {
			return daemon.Usage(stderr, "cairn dev", fmt.Sprintf("--block-size %q: not a number of bytes", o.blockSize))
		}
	}
	var mu sync.Mutex
	out, errw := &lockedWriter{mu: &mu, w: stdout}, &lockedWriter{mu: &mu, w: stderr}
	if err := run(ctx, out, errw, o); err != nil {
		fmt.Fprintf(errw, "cairn dev: %v\n", err)
		return 1
	}
	return 0
}

// control is `cairn dev status|restart`: a client of the control socket.
func control(op string, args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("cairn dev "+op, flag.ContinueOnError)
	fl.SetOutput(stderr)
	dir := fl.String("dir", "cairn-dev", "the directory of the running cairn dev")
	want := 0
	if op == "restart" {
		want = 1
	}
	pos, code, ok := daemon.ParseFlags(fl, args, want, stderr)
	if !ok {
		return code
	}
	req := request{op: op}
	if op == "restart" {
		req.name = pos[0]
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		fmt.Fprintf(stderr, "cairn dev %s: %v\n", op, err)
		return 1
	}
	resp, err := call(abs, req)
	if err != nil {
		fmt.Fprintf(stderr, "cairn dev %s: %v\n", op, err)
		return 1
	}
	if !resp.OK {
		fmt.Fprintf(stderr, "cairn dev %s: %s\n", op, resp.Text)
		return 1
	}
	fmt.Fprint(stdout, resp.Text)
	return 0
}

// lockedWriter serializes the writes of the goroutines that report.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func run(ctx context.Context, stdout, stderr io.Writer, o options) error {
	dir, err := filepath.Abs(o.dir)
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
	mnt := o.mnt
	if mnt != "" {
		if mnt, err = filepath.Abs(mnt); err != nil {
			return err
		}
		if err := os.MkdirAll(mnt, 0o755); err != nil {
			return err
		}
	}
	ctl, err := listenControl(dir)
	if err != nil {
		return err
	}
	ctx, stop := daemon.SignalContext(ctx)
	defer stop()

	s := &supervisor{dir: dir, self: self, out: stdout, errw: stderr, starting: true}
	defer func() {
		closeControl(dir, ctl)
		s.shutdown()
		if mnt != "" && mount.FUSEMounts(mnt) > 0 {
			_ = exec.Command("fusermount3", "-u", "-z", mnt).Run()
		}
		fmt.Fprintln(stdout, "cairn dev: stopped")
	}()
	go s.serve(ctx, ctl)

	c := &devCluster{dir: dir, mnt: mnt, o: o}
	s.members = c.members(s)
	for _, m := range s.members {
		if m.name == "blockd1" {
			// The blockds need metad's CA for their join tokens.
			if c.dc, err = devCertsSetup(dir, c.metadDir()); err != nil {
				return err
			}
		}
		if _, err := s.up(ctx, m); err != nil {
			if ctx.Err() != nil {
				fmt.Fprintln(stdout, "\ncairn dev: stopping")
				return nil
			}
			return err
		}
		s.mu.Lock()
		info := m.info
		s.mu.Unlock()
		fmt.Fprintf(stdout, "%-9s %s\n", m.name, info)
	}
	s.mu.Lock()
	s.starting = false
	s.mu.Unlock()
	fmt.Fprintf(stdout, "logs      %s\ncerts     %s (admin), %s (mount)\n\ncairn dev is up: try  cp /etc/hosts %s/  and  CAIRN_METAD=%s CAIRN_CERTS=%s cairn fsck /\n"+
		"A daemon that exits is reported here; the others keep running.\n  cairn dev status --dir %s          every daemon\n  cairn dev restart NAME --dir %s    start one again (metad, blockd1, ..., mount)\nPress Ctrl-C to stop everything.\n",
		filepath.Join(dir, "logs"), c.dc.admin, c.dc.mount, orDefault(mnt, "MOUNTPOINT"), c.metadAddrs["rpc"], c.dc.admin, showPath(dir), showPath(dir))
	<-ctx.Done()
	fmt.Fprintln(stdout, "\ncairn dev: stopping")
	return nil
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
