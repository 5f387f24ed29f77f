package dfs

import (
	"errors"
	"fmt"

	"cairn"
)

// concat is -concat TARGET SRC SRC...: Hadoop's Concat. The sources'
// blocks move to the end of the target at metad and the sources go
// (cairn.Paths.Concat); nothing is printed. Like Hadoop it asks for two
// sources at least and for files that exist, and shows a refusal's
// reason as metad gives it.
func (s *shell) concat(args []string) error {
	o, err := parse(args, 0, -1, nil)
	if err != nil {
		return err
	}
	var paths []item
	for _, a := range o.args {
		items, err := s.expand(a)
		if err != nil {
			if !isNotFound(err) {
				return err
			}
			items = []item{{disp: a}} // fi.Mode 0 with no abs: does not exist
		}
		paths = append(paths, items...)
	}
	if len(paths) < 1 {
		return hadoopMsg("Target path not specified.")
	}
	if len(paths) < 3 {
		return hadoopMsg("The number of source paths is less than 2.")
	}
	if t := paths[0]; t.abs == "" || !t.fi.Mode.IsRegular() {
		return hadoopMsg(fmt.Sprintf("Target path %s does not exist or is not file.", t.disp))
	}
	var srcs []string
	for _, p := range paths[1:] {
		if p.abs == "" || !p.fi.Mode.IsRegular() {
			return hadoopMsg(fmt.Sprintf("%s does not exist or is not file.", p.disp))
		}
		srcs = append(srcs, p.abs)
	}
	err = s.ns().Concat(s.ctx, paths[0].abs, srcs)
	var ce *cairn.Error
	if errors.As(err, &ce) && ce.Kind == cairn.KindInvalid && ce.Detail != "" {
		return hadoopMsg(ce.Detail)
	}
	if err != nil {
		return perr(paths[0].disp, err)
	}
	return nil
}
