package dfs

import (
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"time"
)

// stat is -stat [-R] [FORMAT] PATH..., as Hadoop's Stat: FORMAT (default
// %y; a first argument is the format when it holds a %) per path, one
// line each; -R goes down directories.
func (s *shell) stat(args []string) error {
	o, err := parse(args, 1, -1, words("R"))
	if err != nil {
		return err
	}
	format, paths := "%y", o.args
	if strings.Contains(paths[0], "%") {
		format, paths = paths[0], paths[1:]
		if len(paths) == 0 {
			return usageError{"Not enough arguments: expected 1 but got 0"}
		}
	}
	if _, err := s.client(); err != nil {
		return err
	}
	s.walk(paths, o.has("R"), func(it item) error {
		fmt.Fprintln(s.out, formatStat(format, it))
		return nil
	})
	return nil
}

// statDirectives are the % letters -stat knows.
const statDirectives = "aAbFgnoruxXyY"

// parseStatFormat splits a -stat format into literal text and
// directives ("%b"), as Stat.java reads it: %% is a percent sign, an
// unknown %c is the character c, a % at the end is dropped.
func parseStatFormat(f string) []string {
	var parts []string
	lit := strings.Builder{}
	for i := 0; i < len(f); i++ {
		if f[i] != '%' {
			lit.WriteByte(f[i])
			continue
		}
		if i+1 >= len(f) {
			break // "this silently drops a trailing %"
		}
		i++
		if f[i] == '%' {
			lit.WriteByte('%')
			continue
		}
		if strings.IndexByte(statDirectives, f[i]) < 0 {
			lit.WriteByte(f[i])
			continue
		}
		if lit.Len() > 0 {
			parts = append(parts, lit.String())
			lit.Reset()
		}
		parts = append(parts, "%"+string(f[i]))
	}
	if lit.Len() > 0 {
		parts = append(parts, lit.String())
	}
	return parts
}

// formatStat expands the directives of Stat.java for one entry: %a and
// %A the permissions in octal and as rwx, %b the length, %F the type,
// %g the group, %n the name, %o the block size, %r the replication, %u
// the owner, %x %y the access and modification dates in UTC
// ("yyyy-MM-dd HH:mm:ss"), %X %Y them in milliseconds since the epoch.
func formatStat(format string, it item) string {
	parts := parseStatFormat(format)
	fi := it.fi
	utc := func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") }
	var b strings.Builder
	for _, p := range parts {
		if len(p) != 2 || p[0] != '%' || strings.IndexByte(statDirectives, p[1]) < 0 {
			b.WriteString(p)
			continue
		}
		switch p[1] {
		case 'a':
			perm := fi.Mode.Perm()
			if fi.Mode&fs.ModeSticky != 0 {
				perm |= 0o1000
			}
			b.WriteString(strconv.FormatUint(uint64(perm), 8))
		case 'A':
			b.WriteString(permString(fi.Mode))
		case 'b':
			b.WriteString(strconv.FormatInt(fi.Size, 10))
		case 'F':
			switch {
			case fi.IsDir():
				b.WriteString("directory")
			case fi.Mode&fs.ModeSymlink != 0:
				b.WriteString("symlink")
			case fi.Mode.IsRegular():
				b.WriteString("regular file")
			default:
				b.WriteString("special file")
			}
		case 'g':
			b.WriteString(fi.Group)
		case 'n':
			b.WriteString(statName(it))
		case 'o':
			b.WriteString(strconv.FormatInt(fi.BlockSize, 10))
		case 'r':
			b.WriteString(strconv.Itoa(fi.Replication))
		case 'u':
			b.WriteString(fi.Owner)
		case 'x':
			b.WriteString(utc(fi.AccessTime))
		case 'X':
			b.WriteString(strconv.FormatInt(fi.AccessTime.UnixMilli(), 10))
		case 'y':
			b.WriteString(utc(fi.ModTime))
		case 'Y':
			b.WriteString(strconv.FormatInt(fi.ModTime.UnixMilli(), 10))
		}
	}
	return b.String()
}

// statName is %n: the last element of the path (Path.getName).
func statName(it item) string {
	if it.abs == "/" {
		return ""
	}
	return path.Base(it.abs)
}
