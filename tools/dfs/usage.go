package dfs

import (
	"fmt"
	"strconv"
	"strings"
)

// count is -count [-q] [-h] [-v] [-u], as Hadoop's Count and
// ContentSummary.toString: "%12s %12s %18s " then the path; with -q the
// quota columns "%12s %15s %15s %15s " first (cairn has no quotas: none,
// inf, none, inf).
func (s *shell) count(args []string) error {
	o, err := parse(args, 1, -1, words("q h v u e x"))
	if err != nil {
		return err
	}
	size := func(n int64) string {
		if o.has("h") {
			return humanSize(n)
		}
		return strconv.FormatInt(n, 10)
	}
	// -u is QuotaUsage's columns alone (the quotas and their use, no
	// content summary).
	quotaOnly := o.has("u")
	if o.has("v") {
		if o.has("q") || quotaOnly {
			fmt.Fprintf(s.out, "%12s %15s %15s %15s ", "QUOTA", "REM_QUOTA", "SPACE_QUOTA", "REM_SPACE_QUOTA")
		}
		if !quotaOnly {
			fmt.Fprintf(s.out, "%12s %12s %18s ", "DIR_COUNT", "FILE_COUNT", "CONTENT_SIZE")
		}
		fmt.Fprintln(s.out, "PATHNAME")
	}
	for _, a := range o.args {
		items, err := s.expand(a)
		if err != nil {
			s.fail(err)
			continue
		}
		for _, it := range items {
			cs, err := s.ns().ContentSummary(s.ctx, it.abs)
			if err != nil {
				s.fail(perr(it.disp, err))
				continue
			}
			var b strings.Builder
			if o.has("q") || quotaOnly {
				fmt.Fprintf(&b, "%12s %15s %15s %15s ", "none", "inf", "none", "inf")
			}
			if !quotaOnly {
				fmt.Fprintf(&b, "%12s %12s %18s ", size(cs.Dirs), size(cs.Files), size(cs.Length))
			}
			b.WriteString(it.disp)
			fmt.Fprintln(s.out, b.String())
		}
	}
	return nil
}

// table is FsUsage's TableBuilder: columns as wide as their widest cell,
// two spaces apart, left-aligned unless right, the last unpadded.
type table struct {
	rows  [][]string
	right map[int]bool
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) String() string {
	if len(t.rows) == 0 {
		return ""
	}
	n := len(t.rows[0])
	w := make([]int, n)
	for _, r := range t.rows {
		for i, c := range r {
			w[i] = max(w[i], len(c))
		}
	}
	var b strings.Builder
	for _, r := range t.rows {
		for i, c := range r {
			if i > 0 {
				b.WriteString("  ")
			}
			switch {
			case t.right[i]:
				fmt.Fprintf(&b, "%*s", w[i], c)
			case i != n-1:
				fmt.Fprintf(&b, "%-*s", w[i], c)
			default:
				b.WriteString(c)
			}
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// du is -du [-s] [-h] [-v] [-x], as Hadoop's FsUsage.Du: per entry (one
// level into a directory, or the argument itself with -s) its length,
// its space with every replica, and its path.
func (s *shell) du(args []string) error {
	o, err := parse(args, 0, -1, words("s h v x"))
	if err != nil {
		return err
	}
	size := func(n int64) string {
		if o.has("h") {
			return humanSize(n)
		}
		return strconv.FormatInt(n, 10)
	}
	t := &table{}
	if o.has("v") {
		t.add("SIZE", "DISK_SPACE_CONSUMED_WITH_ALL_REPLICAS", "FULL_PATH_NAME")
	}
	paths := o.args
	if len(paths) == 0 {
		paths = []string{"."}
	}
	row := func(it item) {
		cs, err := s.ns().ContentSummary(s.ctx, it.abs)
		if err != nil {
			s.fail(perr(it.disp, err))
			return
		}
		t.add(size(cs.Length), size(cs.SpaceConsumed), it.disp)
	}
	for _, a := range paths {
		items, err := s.expand(a)
		if err != nil {
			s.fail(err)
			continue
		}
		for _, it := range items {
			if o.has("s") || !it.fi.IsDir() {
				row(it)
				continue
			}
			es, err := s.cl.ReadDir(s.ctx, it.abs)
			if err != nil {
				s.fail(perr(it.disp, err))
				continue
			}
			for _, e := range es {
				row(item{disp: child(it.disp, e.Name), abs: joinAbs(it.abs, e.Name), fi: e})
			}
		}
	}
	fmt.Fprint(s.out, t.String())
	return nil
}

func joinAbs(dir, name string) string {
	if dir == "/" {
		return "/" + name
	}
	return dir + "/" + name
}

// df is -df [-h], as Hadoop's FsUsage.Df: the cluster's capacity, used
// and available bytes and the use in percent, under the URI of metad.
func (s *shell) df(args []string) error {
	o, err := parse(args, 0, -1, words("h"))
	if err != nil {
		return err
	}
	if _, err := s.client(); err != nil {
		return err
	}
	size := func(n int64) string {
		if o.has("h") {
			return humanSize(n)
		}
		return strconv.FormatInt(n, 10)
	}
	st, err := s.ns().Statfs(s.ctx)
	if err != nil {
		return err
	}
	pct := "0%"
	if st.Capacity > 0 {
		pct = formatHalfUp(float64(st.Used)*100/float64(st.Capacity), 0) + "%"
	}
	t := &table{right: map[int]bool{1: true, 2: true, 3: true, 4: true}}
	t.add("Filesystem", "Size", "Used", "Available", "Use%")
	n := len(o.args)
	if n == 0 {
		n = 1
	}
	for range n {
		t.add("cairn://"+s.addr, size(st.Capacity), size(st.Used), size(st.Remaining), pct)
	}
	fmt.Fprint(s.out, t.String())
	return nil
}
