package dfs

import (
	"cairn"
)

// test is -test -[defswrz] PATH: nothing printed, exit 0 when the answer
// is yes, 1 when no (Hadoop's Test).
func (s *shell) test(args []string) error {
	o, err := parse(args, 1, 1, words("d e f s w r z"))
	if err != nil {
		return err
	}
	n := 0
	flag := ""
	for _, f := range words("d e f s w r z") {
		if o.has(f) {
			n++
			flag = f
		}
	}
	switch {
	case n == 0:
		return usageError{"No test flag given"}
	case n > 1:
		return usageError{"Only one test flag is allowed"}
	}
	if _, err := s.client(); err != nil {
		return err
	}
	abs := s.abs(o.args[0])
	var fi cairn.FileInfo
	switch flag {
	case "r", "w":
		want := cairn.AccessRead
		if flag == "w" {
			want = cairn.AccessWrite
		}
		fi, err = s.ns().Access(s.ctx, abs, want)
	default:
		fi, err = s.ns().Stat(s.ctx, abs)
	}
	if err != nil {
		k := cairn.KindOf(err)
		if k == cairn.KindNotExist || k == cairn.KindAccess || k == cairn.KindNotDir {
			s.errs++
			return nil
		}
		return perr(o.args[0], err)
	}
	ok := true
	switch flag {
	case "d":
		ok = fi.IsDir()
	case "f":
		ok = fi.Mode.IsRegular()
	case "s":
		ok = fi.Size > 0
	case "z":
		ok = fi.Size == 0
	}
	if !ok {
		s.errs++
	}
	return nil
}
