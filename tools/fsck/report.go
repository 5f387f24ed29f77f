package fsck

import (
	"fmt"
	"io"
	"time"
)

// Report is the outcome of a check.
type Report struct {
	Path      string
	Nodes     int
	Racks     int
	Dirs      int64
	Files     int64 // files validated (closed ones; open ones too with -openforwrite)
	Symlinks  int64
	Size      int64
	Blocks    int64
	MinRepl   int64 // blocks with at least one live, good replica
	OverRepl  int64
	UnderRepl int64
	MisRepl   int64 // blocks on fewer racks than the rack rule asks
	Missing   int64 // blocks with no replica at all
	Corrupt   int64 // blocks whose every replica is bad (HDFS's corrupt blocks)
	MissingSz int64
	Replicas  int64 // live, good replicas counted
	MissingRp int64 // replicas short of each file's target
	DefRepl   int
	Lines     []string // per-file, per-block and per-replica lines

	// Files being written, not validated (without -openforwrite).
	OpenFiles, OpenSize, OpenBlocks int64
	// CorruptFiles have a missing or corrupt block; CorruptSz is the size
	// of the corrupt blocks.
	CorruptFiles, CorruptSz int64
	// BadReplicas is how many replicas on live blockds are bad (corrupt,
	// stale, the wrong length, unfinished, or failed -verify).
	BadReplicas int64
	// Verified is how many replicas -verify had their blockds re-read.
	Verified int64
	// InMaintenance is how many good replicas are on blockds entering or
	// in maintenance, live or not (HDFS's InMaintenanceReplicas).
	InMaintenance int64
}

// Healthy reports whether every validated block has a live, good replica:
// none is missing and none has only bad replicas.
func (r *Report) Healthy() bool { return r.Missing == 0 && r.Corrupt == 0 }

func pct(n, of int64) string {
	if of == 0 {
		return "0.0 %"
	}
	return fmt.Sprintf("%.1f %%", 100*float64(n)/float64(of))
}

// Write prints the report in hdfs fsck's layout (NamenodeFsck): lines
// HDFS prints only when they have something to say (open files, corrupt
// files) appear only then.
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
	fmt.Fprintf(w, " Total size:\t%d B", r.Size)
	if r.OpenSize != 0 {
		fmt.Fprintf(w, " (Total open files size: %d B)", r.OpenSize)
	}
	fmt.Fprintf(w, "\n Total files:\t%d", r.Files)
	if r.OpenFiles != 0 {
		fmt.Fprintf(w, " (Files currently being written: %d)", r.OpenFiles)
	}
	fmt.Fprintf(w, "\n Total blocks (validated):\t%d (avg. block size %d B)", r.Blocks, avgBlock)
	if r.OpenBlocks != 0 {
		fmt.Fprintf(w, " (Total open file blocks (not validated): %d)", r.OpenBlocks)
	}
	fmt.Fprintln(w)
	if underMin := r.Blocks - r.MinRepl; underMin > 0 || r.CorruptFiles > 0 {
		fmt.Fprintf(w, "  ********************************\n")
		if underMin > 0 {
			fmt.Fprintf(w, "  UNDER MIN REPL'D BLOCKS:\t%d (%s)\n", underMin, pct(underMin, r.Blocks))
		}
		if r.CorruptFiles > 0 {
			fmt.Fprintf(w, "  CORRUPT FILES:\t%d\n", r.CorruptFiles)
		}
		if r.Missing > 0 {
			fmt.Fprintf(w, "  MISSING BLOCKS:\t%d\n  MISSING SIZE:\t\t%d B\n", r.Missing, r.MissingSz)
		}
		if r.CorruptFiles > 0 && r.Corrupt > 0 {
			fmt.Fprintf(w, "  CORRUPT BLOCKS: \t%d\n  CORRUPT SIZE:\t\t%d B\n", r.Corrupt, r.CorruptSz)
		}
		fmt.Fprintf(w, "  ********************************\n")
	}
	fmt.Fprintf(w, " Minimally replicated blocks:\t%d (%s)\n", r.MinRepl, pct(r.MinRepl, r.Blocks))
	fmt.Fprintf(w, " Over-replicated blocks:\t%d (%s)\n", r.OverRepl, pct(r.OverRepl, r.Blocks))
	fmt.Fprintf(w, " Under-replicated blocks:\t%d (%s)\n", r.UnderRepl, pct(r.UnderRepl, r.Blocks))
	fmt.Fprintf(w, " Mis-replicated blocks:\t\t%d (%s)\n", r.MisRepl, pct(r.MisRepl, r.Blocks))
	fmt.Fprintf(w, " Default replication factor:\t%d\n", r.DefRepl)
	fmt.Fprintf(w, " Average block replication:\t%.1f\n", avgRepl)
	fmt.Fprintf(w, " Missing blocks:\t\t%d\n", r.Missing)
	fmt.Fprintf(w, " Corrupt blocks:\t\t%d\n", r.Corrupt)
	fmt.Fprintf(w, " Missing replicas:\t\t%d (%s)\n", r.MissingRp, pct(r.MissingRp, r.Replicas+r.MissingRp))
	if r.BadReplicas > 0 {
		fmt.Fprintf(w, " Bad replicas:\t\t%d\n", r.BadReplicas)
	}
	if r.InMaintenance > 0 {
		fmt.Fprintf(w, " InMaintenanceReplicas:\t%d\n", r.InMaintenance)
	}
	if r.Verified > 0 {
		fmt.Fprintf(w, " Replicas verified:\t%d\n", r.Verified)
	}
	fmt.Fprintf(w, "FSCK ended at %s in %d milliseconds\n\n\n", started.Add(took).Format(time.UnixDate), took.Milliseconds())
	fmt.Fprintf(w, "The filesystem under path '%s' is %s\n", r.Path, status)
}
