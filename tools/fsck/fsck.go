// Package fsck checks the integrity of a subtree of the namespace: for every
// file, every block and how many live replicas metad knows of, reported in
// the layout of `hdfs fsck`.
package fsck

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"
	"time"

	"cairn"
	"cairn/client"
	"cairn/internal/daemon"
)

// Options choose what the report lists beyond its summary.
type Options struct {
	Files, Blocks, Locations, Racks bool
}

// Report is the outcome of a check.
type Report struct {
	Path      string
	Nodes     int
	Racks     int
	Dirs      int64
	Files     int64
	Symlinks  int64
	Size      int64
	Blocks    int64
	MinRepl   int64 // blocks with at least one live replica
	OverRepl  int64
	UnderRepl int64
	Missing   int64 // blocks with no live replica
	Corrupt   int64 // blocks with a replica known bad
	MissingSz int64
	Replicas  int64 // live replicas counted
	MissingRp int64 // replicas short of each file's target
	DefRepl   int
	Lines     []string // per-file and per-block lines, as the options ask
}

// Healthy reports whether every block has a live replica.
func (r *Report) Healthy() bool { return r.Missing == 0 }

// Check walks path (a file or a directory tree).
func Check(ctx context.Context, c *client.Client, path string, o Options) (*Report, error) {
	cr, err := c.NS.Report(ctx)
	if err != nil {
		return nil, err
	}
	r := &Report{Path: path, DefRepl: cr.DefaultReplication}
	racks := map[string]bool{}
	for _, n := range cr.Nodes {
		if n.Live {
			r.Nodes++
			racks[n.Rack] = true
		}
	}
	r.Racks = len(racks)
	root, err := c.NS.Stat(ctx, path)
	if err != nil {
		return nil, err
	}
	type item struct {
		path string
		fi   cairn.FileInfo
	}
	stack := []item{{path, root}}
	for len(stack) > 0 {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		switch {
		case it.fi.IsDir():
			r.Dirs++
			if o.Files {
				r.Lines = append(r.Lines, fmt.Sprintf("%s <dir>", it.path))
			}
			es, err := c.ReadDir(ctx, it.path)
			if err != nil {
				return nil, err
			}
			for i := len(es) - 1; i >= 0; i-- {
				stack = append(stack, item{cairn.Join(it.path, es[i].Name), es[i]})
			}
		case it.fi.Mode&os.ModeSymlink != 0:
			r.Symlinks++
		default:
			if err := r.checkFile(ctx, c, it.path, it.fi, o); err != nil {
				return nil, err
			}
		}
	}
	return r, nil
}

func (r *Report) checkFile(ctx context.Context, c *client.Client, path string, fi cairn.FileInfo, o Options) error {
	fb, err := c.NS.BlockLocations(ctx, cairn.FileRef{Path: path})
	if err != nil {
		return err
	}
	r.Files++
	r.Size += fb.Size
	want := fi.Replication
	var lines []string
	var missing, missingSz int64
	under := false
	for i, b := range fb.Blocks {
		r.Blocks++
		live := len(b.Locations)
		r.Replicas += int64(live)
		if b.Corrupt > 0 {
			r.Corrupt++
			lines = append(lines, fmt.Sprintf("%s: CORRUPT %d replica(s) of block %s", path, b.Corrupt, b.Block))
		}
		switch {
		case live == 0:
			missing++
			missingSz += b.Len
			lines = append(lines, fmt.Sprintf("%s: MISSING block %s len=%d", path, b.Block, b.Len))
		case live < want:
			under = true
			r.UnderRepl++
			r.MissingRp += int64(want - live)
			lines = append(lines, fmt.Sprintf("%s: Under replicated %s. Target Replicas is %d but found %d live replica(s).", path, b.Block, want, live))
		case live > want:
			r.OverRepl++
		}
		if live > 0 {
			r.MinRepl++
		}
		if o.Blocks {
			l := fmt.Sprintf("%d. %s len=%d Live_repl=%d", i, b.Block, b.Len, live)
			if o.Locations || o.Racks {
				var locs []string
				for _, n := range b.Locations {
					s := fmt.Sprintf("DatanodeInfoWithStorage[%s,%s,DISK]", n.DataAddr, n.StorageID)
					if o.Racks {
						s = n.Rack + "/" + s
					}
					locs = append(locs, s)
				}
				l += " [" + strings.Join(locs, ", ") + "]"
			}
			lines = append(lines, l)
		}
	}
	r.Missing += missing
	r.MissingSz += missingSz
	if o.Files {
		status := "OK"
		switch {
		case missing > 0:
			status = fmt.Sprintf("MISSING %d blocks of total size %d B", missing, missingSz)
		case under:
			status = "Under replicated"
		}
		writing := ""
		if fb.Writing {
			writing = " [open for writing]"
		}
		r.Lines = append(r.Lines, fmt.Sprintf("%s %d bytes, replicated: replication=%d, %d block(s)%s:  %s", path, fb.Size, want, len(fb.Blocks), writing, status))
	}
	if o.Files || o.Blocks || missing > 0 || under {
		r.Lines = append(r.Lines, lines...)
	}
	return nil
}

func pct(n, of int64) string {
	if of == 0 {
		return "0.0 %"
	}
	return fmt.Sprintf("%.1f %%", 100*float64(n)/float64(of))
}

// Write prints the report in hdfs fsck's layout.
func (r *Report) Write(w io.Writer, who, addr string, started time.Time, took time.Duration) {
	fmt.Fprintf(w, "Connecting to metad at %s\n", addr)
	fmt.Fprintf(w, "FSCK started by %s for path %s at %s\n", who, r.Path, started.Format(time.UnixDate))
	for _, l := range r.Lines {
		fmt.Fprintln(w, l)
	}
	status := "HEALTHY"
	if !r.Healthy() {
		status = "CORRUPT"
	}
	avgBlock := int64(0)
	if r.Blocks > 0 {
		avgBlock = r.Size / r.Blocks
	}
	avgRepl := 0.0
	if r.Blocks > 0 {
		avgRepl = float64(r.Replicas) / float64(r.Blocks)
	}
	fmt.Fprintf(w, "\nStatus: %s\n", status)
	fmt.Fprintf(w, " Number of data-nodes:\t%d\n", r.Nodes)
	fmt.Fprintf(w, " Number of racks:\t\t%d\n", r.Racks)
	fmt.Fprintf(w, " Total dirs:\t\t\t%d\n", r.Dirs)
	fmt.Fprintf(w, " Total symlinks:\t\t%d\n", r.Symlinks)
	fmt.Fprintf(w, "\nReplicated Blocks:\n")
	fmt.Fprintf(w, " Total size:\t%d B\n", r.Size)
	fmt.Fprintf(w, " Total files:\t%d\n", r.Files)
	fmt.Fprintf(w, " Total blocks (validated):\t%d (avg. block size %d B)\n", r.Blocks, avgBlock)
	if r.Missing > 0 {
		fmt.Fprintf(w, "  ********************************\n  UNDER MIN REPL'D BLOCKS:\t%d (%s)\n  MISSING BLOCKS:\t%d\n  MISSING SIZE:\t\t%d B\n  ********************************\n",
			r.Missing, pct(r.Missing, r.Blocks), r.Missing, r.MissingSz)
	}
	fmt.Fprintf(w, " Minimally replicated blocks:\t%d (%s)\n", r.MinRepl, pct(r.MinRepl, r.Blocks))
	fmt.Fprintf(w, " Over-replicated blocks:\t%d (%s)\n", r.OverRepl, pct(r.OverRepl, r.Blocks))
	fmt.Fprintf(w, " Under-replicated blocks:\t%d (%s)\n", r.UnderRepl, pct(r.UnderRepl, r.Blocks))
	fmt.Fprintf(w, " Mis-replicated blocks:\t\t0 (0.0 %%)\n")
	fmt.Fprintf(w, " Default replication factor:\t%d\n", r.DefRepl)
	fmt.Fprintf(w, " Average block replication:\t%.1f\n", avgRepl)
	fmt.Fprintf(w, " Missing blocks:\t\t%d\n", r.Missing)
	fmt.Fprintf(w, " Corrupt blocks:\t\t%d\n", r.Corrupt)
	fmt.Fprintf(w, " Missing replicas:\t\t%d (%s)\n", r.MissingRp, pct(r.MissingRp, r.Replicas+r.MissingRp))
	fmt.Fprintf(w, "FSCK ended at %s in %d milliseconds\n\n\n", started.Add(took).Format(time.UnixDate), took.Milliseconds())
	fmt.Fprintf(w, "The filesystem under path '%s' is %s\n", r.Path, status)
}

// Main is the `cairn fsck` command: exit 0 healthy, 1 corrupt, 2 usage or
// other errors.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("cairn fsck", flag.ContinueOnError)
	fl.SetOutput(stderr)
	metad := fl.String("metad", "", "metad address (default $CAIRN_METAD or 127.0.0.1:9000)")
	var o Options
	fl.BoolVar(&o.Files, "files", false, "print each file checked")
	fl.BoolVar(&o.Blocks, "blocks", false, "print each block")
	fl.BoolVar(&o.Locations, "locations", false, "print each block's replicas")
	fl.BoolVar(&o.Racks, "racks", false, "print each replica's rack")
	fl.Usage = func() {
		fmt.Fprintf(stderr, "Usage: cairn fsck PATH [-files [-blocks [-locations | -racks]]]\n\nChecks every block under PATH has live replicas; exit 0 HEALTHY, 1 CORRUPT.\n\n")
		fl.PrintDefaults()
	}
	pos, code, ok := daemon.ParseFlags(fl, args, 1, stderr)
	if !ok {
		return code
	}
	if err := cairn.ValidatePath(pos[0]); err != nil {
		fmt.Fprintf(stderr, "cairn fsck: %v\n", err)
		return 2
	}
	addr := client.MetadAddr(*metad)
	c, err := client.Dial(addr, client.Options{})
	if err != nil {
		fmt.Fprintf(stderr, "cairn fsck: %v\n", err)
		return 2
	}
	defer c.Close()
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	rep, err := Check(ctx, c, pos[0], o)
	if err != nil {
		fmt.Fprintf(stderr, "cairn fsck: %v\n", err)
		return 2
	}
	who := "unknown"
	if u, err := user.Current(); err == nil {
		who = u.Username
	}
	rep.Write(stdout, who, addr, start, time.Since(start))
	if !rep.Healthy() {
		return 1
	}
	return 0
}
