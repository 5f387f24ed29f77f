// Package balancer is `cairn balancer`, HDFS's Balancer: it moves replicas
// from blockds used more than the cluster's mean to blockds used less,
// until every blockd's use (used over capacity) is within -threshold
// percentage points of the mean, keeping the placement rules. metad plans
// each iteration and runs its moves (metad/balancer.go); this command
// drives the iterations, prints HDFS's progress lines, and stops them.
// It needs an admin certificate.
//
// Exit codes, HDFS's ExitStatus as a process's exit status: 0 the cluster
// is balanced; 1 still in progress when -iterations ran out; 254 (-2) no
// block can be moved; 253 (-3) no block was moved for -idle-iterations
// iterations; 252 (-4) an error talking to metad (including its refusal:
// no admin certificate, safe mode); 251 (-5) bad arguments; 250 (-6)
// interrupted (SIGINT, SIGTERM). Stopped at any time, it leaves at worst
// an extra replica, which metad trims.
//
// One balancer runs at a time: metad serves the first to ask and refuses
// another while the first keeps asking (every -poll, pauses included) and
// until it ends; the second prints HDFS's "Another Balancer is running..
// Exiting ..." and exits 252 (HDFS's IO_EXCEPTION), changing nothing. A
// balancer killed without a word frees its place after metad's
// --balancer-lease.
package balancer

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"time"

	"cairn"
	"cairn/blockd"
	"cairn/client"
	"cairn/internal/daemon"
)

// Exit statuses, HDFS's ExitStatus.
const (
	ExitSuccess        = 0
	ExitInProgress     = 1
	ExitNoMoveBlock    = 254 // -2
	ExitNoMoveProgress = 253 // -3
	ExitIOException    = 252 // -4
	ExitIllegalArgs    = 251 // -5
	ExitInterrupted    = 250 // -6
)

// Header is the first line of the progress table, HDFS's.
const Header = "Time Stamp               Iteration#  Bytes Already Moved  Bytes Left To Move  Bytes Being Moved"

// Lines the balancer ends with, HDFS's.
const (
	BalancedLine   = "The cluster is balanced. Exiting..."
	NoMoveLine     = "No block can be moved. Exiting..."
	NoProgressLine = "No block has been moved for %d iterations. Exiting..."
	// AnotherLine: HDFS's IOException("Another Balancer is running.")
	// printed as its Balancer prints an exception, without Java's class
	// name.
	AnotherLine = "Another Balancer is running..  Exiting ..."
)

// options are the command's flags.
type options struct {
	threshold      float64
	bandwidth      int64
	iterations     int
	idleIterations int
	pause          time.Duration
	poll           time.Duration
	id             string
}

// Main is the `cairn balancer` command.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("cairn balancer", flag.ContinueOnError)
	fl.SetOutput(stderr)
	metad := fl.String("metad", "", "metad RPC address (default $CAIRN_METAD or 127.0.0.1:9000)")
	var o options
	fl.Float64Var(&o.threshold, "threshold", 10, "percentage points of use (used / capacity) a blockd may differ from the cluster's mean, from 1 to 100")
	bw := fl.String("bandwidth", "10m", "bytes a second each blockd sends the balancer's copies at, all together (e.g. 10m; 0: no limit); HDFS's dfs.datanode.balance.bandwidthPerSec")
	fl.IntVar(&o.iterations, "iterations", 0, "stop after this many iterations, balanced or not (0: until balanced)")
	fl.IntVar(&o.idleIterations, "idle-iterations", 5, "stop after this many iterations in a row that moved nothing")
	fl.DurationVar(&o.pause, "pause", 9*time.Second, "pause between iterations, so blockds report their new use (HDFS: two heartbeats and a replication interval)")
	fl.DurationVar(&o.poll, "poll", 500*time.Millisecond, "how often to ask metad how an iteration's moves are doing")
	fl.StringVar(&o.id, "id", "", "this balancer's name, for metad's one-at-a-time rule (default HOST:PID:RANDOM)")
	fl.Usage = func() {
		fmt.Fprintf(stderr, "Usage: cairn balancer [--metad HOST:PORT] [-threshold 10] [-bandwidth 10m] [-iterations N]\n\n"+
			"Moves replicas from blockds used more than the cluster's mean to those used less, until each is within the threshold, as HDFS's balancer does.\n"+
			"Needs an admin certificate; one balancer runs at a time. Exit status: 0 balanced, 1 -iterations ran out, 254 no block can be moved,\n"+
			"253 no progress, 252 an error from metad (or another balancer is running), 251 bad arguments, 250 interrupted.\n\n")
		fl.PrintDefaults()
	}
	if _, code, ok := daemon.ParseFlags(fl, args, 0, stderr); !ok {
		if code == 2 {
			return ExitIllegalArgs
		}
		return code
	}
	var err error
	if o.bandwidth, err = blockd.ParseBytes(*bw); err != nil {
		fmt.Fprintf(stderr, "cairn balancer: -bandwidth: %v\n", err)
		return ExitIllegalArgs
	}
	if math.IsNaN(o.threshold) || o.threshold < 1 || o.threshold > 100 {
		fmt.Fprintf(stderr, "cairn balancer: Expecting a number in the range of [1.0, 100.0]: %s\n", strconv.FormatFloat(o.threshold, 'g', -1, 64))
		return ExitIllegalArgs
	}
	if o.iterations < 0 || o.idleIterations < 1 || o.pause < 0 || o.poll <= 0 {
		fmt.Fprintln(stderr, "cairn balancer: -iterations must be >= 0, -idle-iterations >= 1, -pause >= 0 and -poll > 0")
		return ExitIllegalArgs
	}
	if o.id == "" {
		o.id = defaultID()
	}
	c, err := client.Dial(client.MetadAddr(*metad), client.Options{})
	if err != nil {
		fmt.Fprintf(stderr, "cairn balancer: %v\n", err)
		return ExitIOException
	}
	defer c.Close()
	ctx, cancel := daemon.SignalContext(ctx)
	defer cancel()
	start := time.Now()
	code := run(ctx, c.NS, o, stdout)
	fmt.Fprintf(stdout, "%-24s Balancing took %s\n", stamp(time.Now()), took(time.Since(start)))
	return code
}

// defaultID names this balancer: its host, process and a random number.
func defaultID() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s:%d:%08x", host, os.Getpid(), rand.Uint32())
}

// run drives the iterations until the cluster is balanced, nothing can
// move, or ctx ends; on the way out it drops the moves not yet sent and
// lets another balancer run (BalanceStop), unless metad refused it as a
// second balancer.
func run(ctx context.Context, admin cairn.Admin, o options, w io.Writer) int {
	fmt.Fprintln(w, Header)
	req := cairn.BalanceRequest{Threshold: o.threshold, Bandwidth: o.bandwidth, ID: o.id}
	status := func(a cairn.BalanceAction) (cairn.BalanceStatus, error) {
		req.Action = a
		return admin.Balance(ctx, req)
	}
	refused := false
	defer func() {
		if !refused {
			stopMoves(admin, req)
		}
	}()
	fail := func(err error) int {
		if errors.Is(err, cairn.ErrBusy) {
			refused = true
			fmt.Fprintln(w, AnotherLine)
			return ExitIOException
		}
		if ctx.Err() != nil {
			fmt.Fprintf(w, "%v.  Exiting ...\n", context.Cause(ctx))
			return ExitInterrupted
		}
		fmt.Fprintf(w, "%v.  Exiting ...\n", err)
		if errors.Is(err, cairn.ErrInvalid) {
			return ExitIllegalArgs
		}
		return ExitIOException
	}
	first, err := status(cairn.BalanceStatusOnly)
	if err != nil {
		return fail(err)
	}
	base, idle := first.BytesMoved, 0
	for iter := 0; ; iter++ {
		st, err := status(cairn.BalanceSchedule)
		if err != nil {
			return fail(err)
		}
		if st.BytesLeftToMove == 0 && st.MovesPending == 0 {
			fmt.Fprintln(w, BalancedLine)
			progress(w, iter, st.BytesMoved-base, 0, 0)
			return ExitSuccess
		}
		if st.MovesScheduled == 0 && st.MovesPending == 0 {
			fmt.Fprintln(w, NoMoveLine)
			progress(w, iter, st.BytesMoved-base, st.BytesLeftToMove, 0)
			return ExitNoMoveBlock
		}
		progress(w, iter, st.BytesMoved-base, st.BytesLeftToMove, st.BytesBeingMoved)
		movedBefore := st.BytesMoved
		// Wait for the iteration's moves, asking now and then.
		for st.MovesPending > 0 {
			if err := sleep(ctx, o.poll); err != nil {
				return fail(err)
			}
			if st, err = status(cairn.BalanceStatusOnly); err != nil {
				return fail(err)
			}
		}
		if st.BytesMoved == movedBefore {
			if idle++; idle >= o.idleIterations {
				fmt.Fprintf(w, NoProgressLine+"\n", idle)
				return ExitNoMoveProgress
			}
		} else {
			idle = 0
		}
		if o.iterations > 0 && iter+1 >= o.iterations {
			fmt.Fprintf(w, "Stopped after %d iterations, %s left to move.\n", iter+1, byteDesc(st.BytesLeftToMove))
			return ExitInProgress
		}
		// The pause asks metad every -poll too: that keeps this
		// balancer's lease.
		for left := o.pause; left > 0; left -= o.poll {
			if err := sleep(ctx, min(left, o.poll)); err != nil {
				return fail(err)
			}
			if _, err := status(cairn.BalanceStatusOnly); err != nil {
				return fail(err)
			}
		}
	}
}

// stopMoves asks metad to drop the moves not yet sent and to let another
// balancer run; the balancer is going, whatever the answer.
func stopMoves(admin cairn.Admin, req cairn.BalanceRequest) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req.Action = cairn.BalanceStop
	_, _ = admin.Balance(ctx, req)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// progress prints one line of the table, as HDFS's Balancer.Result.print.
func progress(w io.Writer, iter int, moved, left, being int64) {
	fmt.Fprintf(w, "%-24s %10d  %19s  %18s  %17s\n", stamp(time.Now()), iter, byteDesc(moved), byteDesc(left), byteDesc(being))
}

// stamp is a time as Java's default date-time format shows it.
func stamp(t time.Time) string { return t.Format("Jan 2, 2006 3:04:05 PM") }

// byteDesc is HDFS's StringUtils.byteDesc: "0 B", "512 B", "1.5 KB",
// "10.01 MB" (powers of 1024, two decimals at most).
func byteDesc(n int64) string {
	if n < 1024 {
		return strconv.FormatInt(n, 10) + " B"
	}
	v, units := float64(n), []string{"KB", "MB", "GB", "TB", "PB", "EB"}
	i := -1
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	return strconv.FormatFloat(math.Round(v*100)/100, 'f', -1, 64) + " " + units[i]
}

// took is an elapsed time as HDFS's Balancer prints it.
func took(d time.Duration) string {
	switch {
	case d < time.Second:
		return fmt.Sprintf("%d milliseconds", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.4g seconds", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%.4g minutes", d.Minutes())
	}
	return fmt.Sprintf("%.4g hours", d.Hours())
}
