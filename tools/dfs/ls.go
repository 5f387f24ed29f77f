package dfs

import (
	"fmt"
	"io/fs"
	"math/big"
	"sort"
	"strconv"
	"strings"

	"cairn"
)

// lsState is Ls's column widths: they start at Hadoop's minimums
// (replication 3, size 10) and only grow over one invocation, as in
// Ls.adjustColumnWidths.
type lsState struct {
	maxRepl, maxLen, maxOwner, maxGroup int
}

type lsOpts struct {
	pathOnly, dirs, human, recursive, byTime, bySize, reverse, atime bool
}

// lsVerb is -ls, in the layout of Hadoop's Ls.java:
//
//	Found 2 items
//	drwxr-xr-x   - alice supergroup          0 2026-12-01 21:04 /d
//	-rw-r--r--   3 alice supergroup       1234 2026-12-01 21:04 /f
func (s *shell) lsVerb(args []string) error {
	o, err := parse(args, 0, -1, words("C d h R t S r u"))
	if err != nil {
		return err
	}
	lo := lsOpts{pathOnly: o.has("C"), dirs: o.has("d"), human: o.has("h"), reverse: o.has("r"),
		byTime: o.has("t"), atime: o.has("u")}
	lo.recursive = o.has("R") && !lo.dirs
	lo.bySize = !lo.byTime && o.has("S")
	s.ls = lsState{maxRepl: 3, maxLen: 10}
	paths := o.args
	if len(paths) == 0 {
		paths = []string{"."}
	}
	for _, a := range paths {
		items, err := s.expand(a)
		if err != nil {
			s.fail(err)
			continue
		}
		for _, it := range items {
			if !lo.dirs && it.fi.IsDir() {
				s.lsDir(it, lo)
				continue
			}
			s.lsItems(nil, []item{it}, lo)
		}
	}
	return nil
}

// lsDir lists a directory's entries (Ls.processPaths with a parent).
func (s *shell) lsDir(dir item, lo lsOpts) {
	es, err := s.cl.ReadDir(s.ctx, dir.abs)
	if err != nil {
		s.fail(perr(dir.disp, err))
		return
	}
	items := make([]item, len(es))
	for i, e := range es {
		items[i] = item{disp: child(dir.disp, e.Name), abs: cairn.Join(dir.abs, e.Name), fi: e}
	}
	s.lsItems(&dir, items, lo)
}

func (s *shell) lsItems(parent *item, items []item, lo lsOpts) {
	if parent != nil && !lo.recursive && len(items) != 0 {
		if !lo.pathOnly {
			fmt.Fprintf(s.out, "Found %d items\n", len(items))
		}
		sortItems(items, lo)
	}
	if !lo.pathOnly {
		for _, it := range items {
			s.ls.maxRepl = max(s.ls.maxRepl, len(strconv.Itoa(it.fi.Replication)))
			s.ls.maxLen = max(s.ls.maxLen, len(strconv.FormatInt(it.fi.Size, 10)))
			s.ls.maxOwner = max(s.ls.maxOwner, len(it.fi.Owner))
			s.ls.maxGroup = max(s.ls.maxGroup, len(it.fi.Group))
		}
	}
	for _, it := range items {
		if lo.pathOnly {
			fmt.Fprintln(s.out, it.disp)
		} else {
			s.lsLine(it, lo)
		}
		if lo.recursive && it.fi.IsDir() {
			s.lsDir(it, lo)
		}
	}
}

// lsLine is one entry: type and permissions, a space where Hadoop marks
// an ACL, replication ("-" unless a file), owner and group padded to the
// widest, size right-aligned to the widest, local date and time, path.
func (s *shell) lsLine(it item, lo lsOpts) {
	repl := "-"
	if it.fi.Mode.IsRegular() {
		repl = strconv.Itoa(it.fi.Replication)
	}
	t := it.fi.ModTime
	if lo.atime {
		t = it.fi.AccessTime
	}
	size := strconv.FormatInt(it.fi.Size, 10)
	if lo.human {
		size = humanSize(it.fi.Size)
	}
	var b strings.Builder
	typ := "-"
	if it.fi.IsDir() {
		typ = "d"
	}
	b.WriteString(typ)
	b.WriteString(permString(it.fi.Mode))
	b.WriteString(" ")
	fmt.Fprintf(&b, "%*s ", s.ls.maxRepl, repl)
	writeLeft(&b, it.fi.Owner, s.ls.maxOwner)
	writeLeft(&b, it.fi.Group, s.ls.maxGroup)
	fmt.Fprintf(&b, "%*s ", s.ls.maxLen, size)
	b.WriteString(t.Local().Format("2006-01-02 15:04"))
	b.WriteString(" ")
	b.WriteString(it.disp)
	fmt.Fprintln(s.out, b.String())
}

// writeLeft is Java's "%-Ns " (or "%s" when every value is empty).
func writeLeft(b *strings.Builder, v string, w int) {
	if w == 0 {
		b.WriteString(v)
		return
	}
	fmt.Fprintf(b, "%-*s ", w, v)
}

// sortItems orders a listing as Ls's comparators: by name, or newest
// first (-t), or largest first (-S); -r reverses.
func sortItems(items []item, lo lsOpts) {
	less := func(a, b item) int {
		switch {
		case lo.byTime:
			ta, tb := a.fi.ModTime, b.fi.ModTime
			if lo.atime {
				ta, tb = a.fi.AccessTime, b.fi.AccessTime
			}
			return tb.Compare(ta)
		case lo.bySize:
			return cmpInt(b.fi.Size, a.fi.Size)
		}
		return strings.Compare(a.abs, b.abs)
	}
	sort.SliceStable(items, func(i, j int) bool {
		c := less(items[i], items[j])
		if lo.reverse {
			c = -c
		}
		return c < 0
	})
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// permString is Hadoop's FsPermission.toString: rwx three times, the
// sticky bit as t (T without others' x).
func permString(m fs.FileMode) string {
	const rwx = "rwxrwxrwx"
	b := []byte("---------")
	for i := 0; i < 9; i++ {
		if m&(1<<uint(8-i)) != 0 {
			b[i] = rwx[i]
		}
	}
	if m&fs.ModeSticky != 0 {
		if b[8] == 'x' {
			b[8] = 't'
		} else {
			b[8] = 'T'
		}
	}
	return string(b)
}

// humanSize is Hadoop's StringUtils.TraditionalBinaryPrefix.long2String(n,
// "", 1): below 1024 the number itself; else one decimal (dropped when
// the division is exact) and a binary prefix: "1.5 K", "64 M".
func humanSize(n int64) string {
	if n < 0 {
		return "-" + humanSize(-n)
	}
	if n < 1024 {
		return strconv.FormatInt(n, 10)
	}
	const symbols = "KMGTPE"
	i := 0
	for i+1 < len(symbols) && n >= int64(1)<<(10*uint(i+2)) {
		i++
	}
	shift := uint(10 * (i + 1))
	if n&(int64(1)<<shift-1) == 0 {
		return fmt.Sprintf("%d %c", n>>shift, symbols[i])
	}
	s := formatHalfUp(float64(n)/float64(int64(1)<<shift), 1)
	if strings.HasPrefix(s, "1024") && i+1 < len(symbols) {
		i++
		s = formatHalfUp(float64(n)/float64(int64(1)<<uint(10*(i+1))), 1)
	}
	return s + " " + string(symbols[i])
}

// formatHalfUp is Java's String.format("%.Nf", v): the exact value of
// the double rounded half up (Go's %f rounds half to even).
func formatHalfUp(v float64, places int) string {
	exact := new(big.Float).SetFloat64(v).Text('f', 1100)
	dot := strings.IndexByte(exact, '.')
	if dot < 0 || len(exact)-dot-1 <= places {
		return strconv.FormatFloat(v, 'f', places, 64)
	}
	keep := exact[:dot+1+places]
	if exact[dot+1+places] >= '5' {
		r, _ := new(big.Float).SetString(keep)
		unit := new(big.Float).SetFloat64(1)
		for range places {
			unit.Quo(unit, big.NewFloat(10))
		}
		r.Add(r, unit)
		return r.Text('f', places)
	}
	return keep
}
