// Package fsck checks the integrity of a subtree of the namespace: for every
// file, every block and each replica the blockds report of it, judged
// against metad's record (stamp, length, state, corruption found), and on
// demand re-read by its blockd (-verify); reported in the layout of
// `hdfs fsck`.
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
	// OpenForWrite validates and lists files being written too (hdfs
	// fsck -openforwrite); without it they are only counted.
	OpenForWrite bool
	// Verify has every blockd holding a replica re-read it against its
	// .meta (VERIFY_BLOCK); a replica that fails, or cannot be verified,
	// does not count.
	Verify bool
	// Parallel bounds the replicas verified at once (default 8; at most 2
	// on one blockd).
	Parallel int
	// Progress, when set (a terminal), gets a progress line of -verify,
	// rewritten in place with \r.
	Progress io.Writer
}

// fileCheck is one file to validate with what metad reports of it.
type fileCheck struct {
	path string
	fi   cairn.FileInfo
	fr   cairn.FileReplicas
	// unverified: -verify could not have these replicas (block index,
	// replica index) verified, and why.
	unverified map[[2]int]string
}

// Check walks path (a file or a directory tree): for each file, metad's
// record of its blocks and every replica reported of them
// (Namespace.ReplicaReport), judged block by block; with o.Verify, every
// replica on a live blockd is also re-read by its blockd.
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
	// The walk first, in the order the report lists, then the checks.
	var lines []func() // per entry: appends its lines to r.Lines
	var files []*fileCheck
	stack := []item{{path, root}}
	for len(stack) > 0 {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		switch {
		case it.fi.IsDir():
			r.Dirs++
			if o.Files {
				p := it.path
				lines = append(lines, func() { r.Lines = append(r.Lines, fmt.Sprintf("%s <dir>", p)) })
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
		case !it.fi.Mode.IsRegular():
			// fifos, sockets, device nodes: metadata only
		default:
			fr, err := c.NS.ReplicaReport(ctx, it.path)
			if cairn.KindOf(err) == cairn.KindNotExist {
				continue // deleted during the walk
			}
			if err != nil {
				return nil, err
			}
			if fr.Writing && !o.OpenForWrite {
				r.OpenFiles++
				r.OpenSize += fr.Size
				r.OpenBlocks += int64(len(fr.Blocks))
				continue
			}
			f := &fileCheck{path: it.path, fi: it.fi, fr: fr}
			files = append(files, f)
			lines = append(lines, func() { r.checkFile(f, o) })
		}
	}
	if o.Verify {
		if err := r.verify(ctx, c, files, o); err != nil {
			return nil, err
		}
	}
	for _, l := range lines {
		l()
	}
	return r, nil
}

// checkFile validates one file's blocks against their replicas.
func (r *Report) checkFile(f *fileCheck, o Options) {
	fr := f.fr
	r.Files++
	r.Size += fr.Size
	want := fr.Replication
	if want == 0 {
		want = f.fi.Replication
	}
	var lines []string
	var missing, missingSz, corrupt, corruptSz int64
	under, mis := false, false
	for i, b := range fr.Blocks {
		r.Blocks++
		live, bad, unverified := 0, 0, 0
		// away: good replicas on blockds in maintenance that are switched
		// off: not copied elsewhere, and back when the blockd is.
		away := 0
		racks := map[string]bool{}
		for ri, rep := range b.Replicas {
			if rep.Maintenance && rep.Good {
				r.InMaintenance++
			}
			if !rep.Live {
				if rep.Maintenance && rep.Good {
					away++
				}
				continue
			}
			if why, ok := f.unverified[[2]int{i, ri}]; ok && rep.Corrupt == "" {
				unverified++
				lines = append(lines, fmt.Sprintf("%s: could not verify the replica of %s on %s (%s): %s", f.path, b.Block, rep.DataAddr, rep.StorageID, why))
				continue
			}
			switch {
			case counts(b, rep):
				live++
				racks[rep.Rack] = true
			case rep.Corrupt != "":
				bad++
				lines = append(lines, fmt.Sprintf("%s: bad replica of %s on %s (%s), %s len=%d at stamp %d: %s",
					f.path, b.Block, rep.DataAddr, rep.StorageID, rep.State, rep.Len, rep.GenStamp, rep.Corrupt))
			}
		}
		r.BadReplicas += int64(bad)
		r.Replicas += int64(live)
		switch {
		case live == 0 && away > 0:
			// Its replicas are on blockds in maintenance, switched off:
			// neither missing nor corrupt (HDFS's fsck counts them as in
			// maintenance).
		case live == 0 && (bad > 0 || unverified > 0):
			corrupt++
			corruptSz += b.Len
			why := "every replica is bad"
			if unverified > 0 {
				why = fmt.Sprintf("no good replica (%d bad, %d could not be verified)", bad, unverified)
			}
			lines = append(lines, fmt.Sprintf("%s: CORRUPT block %s len=%d: %s", f.path, b.Block, b.Len, why))
		case live == 0 && b.UnderConstruction && b.Len == 0:
			// Being written, nothing acknowledged yet: nothing is missing.
		case live == 0:
			missing++
			missingSz += b.Len
			lines = append(lines, fmt.Sprintf("%s: MISSING block %s len=%d", f.path, b.Block, b.Len))
		case b.UnderConstruction:
			// Its pipeline settles its replicas: not counted as under- or
			// over-replicated.
		case live+away < want:
			under = true
			r.UnderRepl++
			r.MissingRp += int64(want - live - away)
			lines = append(lines, fmt.Sprintf("%s: Under replicated %s. Target Replicas is %d but found %d live replica(s).", f.path, b.Block, want, live))
		case live > want:
			r.OverRepl++
		}
		if live > 0 && away == 0 && !b.UnderConstruction && misplaced(len(racks), want, r.Racks) {
			mis = true
			r.MisRepl++
			lines = append(lines, fmt.Sprintf("%s: Replica placement policy is violated for %s. Block should be additionally replicated on %d more rack(s). Total number of racks in the cluster: %d",
				f.path, b.Block, min(2, want)-len(racks), r.Racks))
		}
		if live+away > 0 {
			r.MinRepl++
		}
		if o.Blocks {
			lines = append(lines, blockLine(i, b, live, o))
		}
	}
	r.Missing += missing
	r.MissingSz += missingSz
	r.Corrupt += corrupt
	r.CorruptSz += corruptSz
	if missing > 0 || corrupt > 0 {
		r.CorruptFiles++
	}
	if o.Files || (o.OpenForWrite && fr.Writing) {
		status := "OK"
		switch {
		case missing > 0 && corrupt > 0:
			status = fmt.Sprintf("MISSING %d blocks of total size %d B, CORRUPT %d blocks of total size %d B", missing, missingSz, corrupt, corruptSz)
		case missing > 0:
			status = fmt.Sprintf("MISSING %d blocks of total size %d B", missing, missingSz)
		case corrupt > 0:
			status = fmt.Sprintf("CORRUPT %d blocks of total size %d B", corrupt, corruptSz)
		case under:
			status = "Under replicated"
		case mis:
			status = "Mis-replicated"
		}
		writing := ""
		if fr.Writing {
			writing = ", OPENFORWRITE"
		}
		r.Lines = append(r.Lines, fmt.Sprintf("%s %d bytes, replicated: replication=%d, %d block(s)%s:  %s", f.path, fr.Size, want, len(fr.Blocks), writing, status))
	}
	r.Lines = append(r.Lines, lines...)
}

// misplaced reports whether a block wanting want replicas, whose good
// replicas are on replicaRacks racks, breaks the rack rule in a cluster
// of clusterRacks racks (HDFS's BlockPlacementStatusDefault, as metad
// judges it): it should be on at least min(2, want) racks, or on every
// rack when there are fewer.
func misplaced(replicaRacks, want, clusterRacks int) bool {
	if clusterRacks <= 1 {
		return false
	}
	return replicaRacks < min(2, want) && replicaRacks < clusterRacks
}

// counts reports whether replica rep counts as a live copy of block b: a
// good replica on a live blockd or, for the block being written, any
// replica there at its stamp or newer that is not marked corrupt.
func counts(b cairn.BlockReplicas, rep cairn.ReplicaInfo) bool {
	if !rep.Live || rep.Corrupt != "" {
		return false
	}
	return rep.Good || (b.UnderConstruction && rep.GenStamp >= b.GenStamp)
}

// blockLine is a block's line of -blocks: "0. blk_1_2 len=5 Live_repl=3",
// with -locations or -racks each replica (and, for one that does not
// count, its state).
func blockLine(i int, b cairn.BlockReplicas, live int, o Options) string {
	l := fmt.Sprintf("%d. %s len=%d Live_repl=%d", i, b.Block, b.Len, live)
	if !o.Locations && !o.Racks {
		return l
	}
	var locs []string
	for _, rep := range b.Replicas {
		s := fmt.Sprintf("DatanodeInfoWithStorage[%s,%s,DISK]", rep.DataAddr, rep.StorageID)
		if o.Racks {
			s = rep.Rack + "/" + s
		}
		switch {
		case !rep.Live && rep.Maintenance:
			s += "(DEAD, IN MAINTENANCE)"
		case !rep.Live:
			s += "(DEAD)"
		case rep.Corrupt != "":
			s += "(CORRUPT)"
		case rep.State != cairn.ReplicaFinalized || !counts(b, rep):
			s += fmt.Sprintf("(%s len=%d)", rep.State, rep.Len)
		case rep.Stale:
			s += "(STALE_NODE)"
		case rep.Maintenance:
			s += "(MAINTENANCE)"
		}
		locs = append(locs, s)
	}
	return l + " [" + strings.Join(locs, ", ") + "]"
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
	fl.BoolVar(&o.OpenForWrite, "openforwrite", false, "check and list files being written too (OPENFORWRITE)")
	fl.BoolVar(&o.Verify, "verify", false, "have every blockd re-read its replicas under PATH against their checksums")
	fl.IntVar(&o.Parallel, "verify-parallel", defaultParallel, "with -verify: replicas verified at once")
	fl.Usage = func() {
		fmt.Fprintf(stderr, "Usage: cairn fsck PATH [-files [-blocks [-locations | -racks]]] [-openforwrite] [-verify]\n\n"+
			"Checks every block under PATH has a live, good replica, each replica against metad's record,\n"+
			"and with -verify against its checksums; exit 0 HEALTHY, 1 CORRUPT.\n\n")
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
	if o.Verify && isTerminal(stdout) {
		o.Progress = stdout
	}
	start := time.Now()
	timeout := 10 * time.Minute
	if o.Verify {
		timeout = 24 * time.Hour // replicas are read whole, at the blockds' pace
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
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
