package dfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"time"

	"cairn"
)

// mkdir is -mkdir [-p], as Hadoop's Mkdir: without -p an existing path is
// "File exists" and a missing parent is Hadoop 3's PathNotFoundException
// naming both paths ("`mkdir failed for path: /a/b. Item parent path not
// found: /a.': No such file or directory").
func (s *shell) mkdir(args []string) error {
	o, err := parse(args, 1, -1, words("p"))
	if err != nil {
		return err
	}
	if _, err := s.client(); err != nil {
		return err
	}
	for _, a := range o.args {
		abs := s.abs(a)
		fi, err := s.ns().Stat(s.ctx, abs)
		if err == nil {
			switch {
			case !fi.IsDir():
				s.fail(newPathError(a, kindText[cairn.KindNotDir]))
			case !o.has("p"):
				s.fail(newPathError(a, kindText[cairn.KindExist]))
			}
			continue
		}
		if o.has("p") {
			err = s.ns().Mkdirs(s.ctx, abs, 0o755)
		} else {
			err = s.ns().Mkdir(s.ctx, abs, 0o755)
			if cairn.KindOf(err) == cairn.KindNotExist {
				msg := fmt.Sprintf("mkdir failed for path: %s. Item parent path not found: %s.", trimSlash(a), parentDisp(a))
				s.fail(newPathError(msg, kindText[cairn.KindNotExist]))
				continue
			}
		}
		if err != nil {
			s.fail(perr(a, err))
		}
	}
	return nil
}

// parentDisp is the parent of a path as typed.
func parentDisp(p string) string { return path.Dir(trimSlash(p)) }

// trimSlash is a path as typed, as Hadoop's Path shows it: no trailing
// slash, no doubled ones.
func trimSlash(p string) string {
	scheme := ""
	if i := strings.Index(p, "://"); i > 0 {
		scheme, p = p[:i+3], p[i+3:]
	}
	for strings.Contains(p, "//") {
		p = strings.ReplaceAll(p, "//", "/")
	}
	if len(p) > 1 {
		p = strings.TrimSuffix(p, "/")
	}
	return scheme + p
}

// touchz is -touchz: an empty file; an existing one must be empty.
func (s *shell) touchz(args []string) error {
	o, err := parse(args, 1, -1, nil)
	if err != nil {
		return err
	}
	if _, err := s.client(); err != nil {
		return err
	}
	for _, a := range o.args {
		abs := s.abs(a)
		fi, err := s.ns().Stat(s.ctx, abs)
		if err == nil {
			switch {
			case fi.IsDir():
				s.fail(newPathError(a, kindText[cairn.KindIsDir]))
			case fi.Size != 0:
				s.fail(newPathError(a, "Not a zero-length file"))
			default:
				if _, err := s.ns().SetAttr(s.ctx, abs, cairn.Attr{TimesNow: true}); err != nil {
					s.fail(perr(a, err))
				}
			}
			continue
		}
		if pfi, err := s.ns().Stat(s.ctx, path.Dir(abs)); err != nil || !pfi.IsDir() {
			s.fail(newPathError(parentDisp(a), kindText[cairn.KindNotExist]))
			continue
		}
		w, err := s.cl.CreateClosed(s.ctx, abs, 0o644)
		if err == nil {
			err = w.Close()
		}
		if err != nil {
			s.fail(perr(a, err))
		}
	}
	return nil
}

// truncate is refused: cairn's files are write-once.
func (s *shell) truncate(args []string) error {
	o, err := parse(args, 2, -1, words("w"))
	if err != nil {
		return err
	}
	if _, err := strconv.ParseInt(o.args[0], 10, 64); err != nil {
		return usageError{"Illegal length: " + o.args[0]}
	}
	for _, a := range o.args[1:] {
		s.fail(newPathError(a, "Operation not permitted: cairn files are write-once (append-only) and are never cut short; write a new file instead (-put -f)"))
	}
	return nil
}

// walk runs fn on each item and, with recursive, on everything under
// the directories among them, parents first.
func (s *shell) walk(args []string, recursive bool, fn func(it item) error) {
	var visit func(it item)
	visit = func(it item) {
		if err := fn(it); err != nil {
			s.fail(err)
		}
		if !recursive || !it.fi.IsDir() {
			return
		}
		es, err := s.cl.ReadDir(s.ctx, it.abs)
		if err != nil {
			s.fail(perr(it.disp, err))
			return
		}
		for _, e := range es {
			visit(item{disp: child(it.disp, e.Name), abs: cairn.Join(it.abs, e.Name), fi: e})
		}
	}
	for _, a := range args {
		items, err := s.expand(a)
		if err != nil {
			s.fail(err)
			continue
		}
		for _, it := range items {
			visit(it)
		}
	}
}

// chmod is -chmod [-R] MODE PATH...: octal, or symbolic as chmod(1)
// ([ugoa]*[+-=][rwxXt]*, comma separated), as Hadoop's ChmodParser.
func (s *shell) chmod(args []string) error {
	o, err := parse(args, 2, -1, words("R"))
	if err != nil {
		return err
	}
	mode := o.args[0]
	if _, err := applyMode(mode, 0, false); err != nil {
		return usageError{"chmod : mode '" + mode + "' does not match the expected pattern."}
	}
	s.walk(o.args[1:], o.has("R"), func(it item) error {
		m, _ := applyMode(mode, it.fi.Mode, it.fi.IsDir())
		perm := m & (fs.ModePerm | fs.ModeSticky | fs.ModeSetuid | fs.ModeSetgid)
		if _, err := s.ns().SetAttr(s.ctx, it.abs, cairn.Attr{Perm: &perm}); err != nil {
			return perr(it.disp, err)
		}
		return nil
	})
	return nil
}

// applyMode applies a chmod mode to old.
func applyMode(mode string, old fs.FileMode, isDir bool) (fs.FileMode, error) {
	if mode == "" {
		return 0, fmt.Errorf("empty mode")
	}
	if strings.Trim(mode, "01234567") == "" {
		if len(mode) > 4 {
			return 0, fmt.Errorf("bad octal mode")
		}
		n, _ := strconv.ParseUint(mode, 8, 32)
		m := fs.FileMode(n & 0o777)
		if n&0o1000 != 0 {
			m |= fs.ModeSticky
		}
		return m, nil
	}
	m := old & (fs.ModePerm | fs.ModeSticky)
	for _, clause := range strings.Split(mode, ",") {
		i := 0
		var who fs.FileMode
		for i < len(clause) && strings.IndexByte("ugoa", clause[i]) >= 0 {
			switch clause[i] {
			case 'u':
				who |= 0o700
			case 'g':
				who |= 0o070
			case 'o':
				who |= 0o007
			case 'a':
				who |= 0o777
			}
			i++
		}
		if who == 0 {
			who = 0o777
		}
		if i >= len(clause) || strings.IndexByte("+-=", clause[i]) < 0 {
			return 0, fmt.Errorf("bad symbolic mode %q", clause)
		}
		op := clause[i]
		i++
		var bits fs.FileMode
		sticky := false
		for ; i < len(clause); i++ {
			switch clause[i] {
			case 'r':
				bits |= 0o444
			case 'w':
				bits |= 0o222
			case 'x':
				bits |= 0o111
			case 'X':
				if isDir || old&0o111 != 0 {
					bits |= 0o111
				}
			case 't':
				sticky = true
			default:
				return 0, fmt.Errorf("bad symbolic mode %q", clause)
			}
		}
		bits &= who
		switch op {
		case '+':
			m |= bits
			if sticky {
				m |= fs.ModeSticky
			}
		case '-':
			m &^= bits
			if sticky {
				m &^= fs.ModeSticky
			}
		case '=':
			m = m&^who | bits
			if sticky {
				m |= fs.ModeSticky
			}
		}
	}
	return m, nil
}

// chown is -chown [-R] [OWNER][:[GROUP]] PATH...
func (s *shell) chown(args []string) error {
	o, err := parse(args, 2, -1, words("R"))
	if err != nil {
		return err
	}
	owner, group, _ := strings.Cut(o.args[0], ":")
	if owner == "" && group == "" || strings.ContainsAny(o.args[0], " \t/") {
		return usageError{"'" + o.args[0] + "' does not match expected pattern for [owner][:group]."}
	}
	return s.setOwner(o.args[1:], o.has("R"), owner, group)
}

// chgrp is -chgrp [-R] GROUP PATH...
func (s *shell) chgrp(args []string) error {
	o, err := parse(args, 2, -1, words("R"))
	if err != nil {
		return err
	}
	if o.args[0] == "" || strings.ContainsAny(o.args[0], " \t/:") {
		return usageError{"'" + o.args[0] + "' does not match expected pattern for group"}
	}
	return s.setOwner(o.args[1:], o.has("R"), "", o.args[0])
}

func (s *shell) setOwner(paths []string, recursive bool, owner, group string) error {
	a := cairn.Attr{}
	if owner != "" {
		a.Owner = &owner
	}
	if group != "" {
		a.Group = &group
	}
	s.walk(paths, recursive, func(it item) error {
		if _, err := s.ns().SetAttr(s.ctx, it.abs, a); err != nil {
			return perr(it.disp, err)
		}
		return nil
	})
	return nil
}

// setrepPoll is how often setrep -w looks at the replicas (Hadoop: 10 s).
const setrepPoll = time.Second

// setrep is -setrep [-R] [-w] REP PATH..., as Hadoop's SetReplication:
// "Replication N set: PATH" per file, every file under a directory; with
// -w, "Waiting for PATH ..." and a dot per look until every block has
// REP live replicas, then " done".
func (s *shell) setrep(args []string) error {
	o, err := parse(args, 2, -1, words("R w"))
	if err != nil {
		return err
	}
	rep, err := parseReplication(o.args[0], s.errw)
	if err != nil {
		return err
	}
	var wait []item
	s.walk(o.args[1:], true, func(it item) error {
		if it.fi.Mode&fs.ModeSymlink != 0 {
			return newPathError(it.disp, "Symlinks unsupported")
		}
		if !it.fi.Mode.IsRegular() {
			return nil
		}
		if _, err := s.ns().SetAttr(s.ctx, it.abs, cairn.Attr{Replication: &rep}); err != nil {
			return perr(it.disp, err)
		}
		fmt.Fprintf(s.out, "Replication %d set: %s\n", rep, it.disp)
		if o.has("w") {
			wait = append(wait, it)
		}
		return nil
	})
	for _, it := range wait {
		if err := s.waitReplication(it, rep); err != nil {
			return err
		}
	}
	return nil
}

// parseReplication reads setrep's REP as SetReplication does, with
// Java's Short.parseShort: a word that is not a number warns and fails
// with parseShort's message, a number below 1 fails.
func parseReplication(v string, errw io.Writer) (int, error) {
	n, err := strconv.ParseInt(v, 10, 16)
	var ne *strconv.NumError
	switch {
	case errors.As(err, &ne) && ne.Err == strconv.ErrRange:
		fmt.Fprintln(errw, "setrep: Illegal replication, a positive integer expected")
		return 0, usageError{fmt.Sprintf("Value out of range. Value:%q Radix:10", v)}
	case err != nil:
		fmt.Fprintln(errw, "setrep: Illegal replication, a positive integer expected")
		return 0, usageError{fmt.Sprintf("For input string: %q", v)}
	case n < 1:
		return 0, usageError{"replication must be >= 1"}
	}
	return int(n), nil
}

func (s *shell) waitReplication(it item, rep int) error {
	fmt.Fprintf(s.out, "Waiting for %s ...", it.disp)
	warned := false
	for {
		fr, err := s.ns().ReplicaReport(s.ctx, it.abs)
		if err != nil {
			fmt.Fprintln(s.out)
			return perr(it.disp, err)
		}
		done := true
		for _, b := range fr.Blocks {
			live := 0
			for _, r := range b.Replicas {
				if r.Live && r.Good {
					live++
				}
			}
			if live != rep {
				if !warned && live > rep {
					fmt.Fprintf(s.out, "\nWARNING: the waiting time may be long for DECREASING the number of replications.\n")
					warned = true
				}
				done = false
				break
			}
		}
		if done {
			break
		}
		fmt.Fprint(s.out, ".")
		select {
		case <-s.ctx.Done():
			fmt.Fprintln(s.out)
			return s.ctx.Err()
		case <-time.After(setrepPoll):
		}
	}
	fmt.Fprintln(s.out, " done")
	return nil
}
