package dfs

import (
	"fmt"
	"regexp"
	"strings"

	"path"
)

// find is -find PATH... EXPRESSION..., with the expressions of Hadoop's
// Find people use: -name and -iname (a glob on the last path element),
// -print and -print0, joined by -a (and); default -print.
func (s *shell) find(args []string) error {
	var paths []string
	i := 0
	for ; i < len(args) && !strings.HasPrefix(args[i], "-"); i++ {
		paths = append(paths, args[i])
	}
	if len(paths) == 0 {
		paths = []string{"."}
	}
	var tests []*regexp.Regexp
	sep := "\n"
	for ; i < len(args); i++ {
		switch args[i] {
		case "-name", "-iname":
			if i+1 >= len(args) {
				return usageError{"Not enough arguments: expected 1 but got 0"}
			}
			pat := args[i+1]
			if args[i] == "-iname" {
				pat = strings.ToLower(pat)
			}
			re, err := compileGlob(pat)
			if err != nil {
				return usageError{err.Error()}
			}
			if args[i] == "-iname" {
				re = regexp.MustCompile("(?i)" + re.String())
			}
			tests = append(tests, re)
			i++
		case "-print":
			sep = "\n"
		case "-print0":
			sep = "\x00"
		case "-a", "-and":
		default:
			return usageError{"Unexpected argument: " + args[i]}
		}
	}
	s.walk(paths, true, func(it item) error {
		name := path.Base(it.abs)
		for _, re := range tests {
			if !re.MatchString(name) {
				return nil
			}
		}
		fmt.Fprint(s.out, it.disp, sep)
		return nil
	})
	return nil
}
