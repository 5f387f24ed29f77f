package dfs

import (
	"cairn"
	"fmt"
)

// rm is -rm [-f] [-r|-R] [-skipTrash] [-safely], as Hadoop's Delete.Rm:
// "Deleted PATH" for each path removed; with trash on (metad
// --trash-interval) the path moves to the trash instead.
func (s *shell) rm(args []string) error {
	o, err := parse(args, 1, -1, words("f r R skipTrash safely"))
	if err != nil {
		return err
	}
	recursive, force := o.has("r", "R"), o.has("f")
	for _, a := range o.args {
		items, err := s.expand(a)
		if err != nil {
			if force && cairn.KindOf(err) == cairn.KindNotExist || force && isNotFound(err) {
				continue
			}
			s.fail(err)
			continue
		}
		for _, it := range items {
			if it.fi.IsDir() && !recursive {
				s.fail(newPathError(it.disp, kindText[cairn.KindIsDir]))
				continue
			}
			if !o.has("skipTrash") {
				moved, err := s.moveToTrash(it)
				if err != nil {
					s.fail(err)
					continue
				}
				if moved {
					continue
				}
			}
			if err := s.ns().Delete(s.ctx, it.abs, recursive); err != nil {
				s.fail(perr(it.disp, err))
				continue
			}
			fmt.Fprintf(s.out, "Deleted %s\n", it.disp)
		}
	}
	return nil
}

// isNotFound reports whether err is the "No such file or directory" of
// an argument that named nothing.
func isNotFound(err error) bool {
	pe, ok := err.(*pathError)
	return ok && pe.msg == kindText[cairn.KindNotExist]
}

// rmdir is -rmdir [--ignore-fail-on-non-empty]: empty directories only.
func (s *shell) rmdir(args []string) error {
	ignore := false
	if len(args) > 0 && args[0] == "--ignore-fail-on-non-empty" {
		ignore, args = true, args[1:]
	}
	o, err := parse(args, 1, -1, nil)
	if err != nil {
		return err
	}
	for _, a := range o.args {
		items, err := s.expand(a)
		if err != nil {
			s.fail(err)
			continue
		}
		for _, it := range items {
			if !it.fi.IsDir() {
				s.fail(newPathError(it.disp, kindText[cairn.KindNotDir]))
				continue
			}
			err := s.ns().Delete(s.ctx, it.abs, false)
			if cairn.KindOf(err) == cairn.KindNotEmpty && ignore {
				continue
			}
			if err != nil {
				s.fail(perr(it.disp, err))
			}
		}
	}
	return nil
}
