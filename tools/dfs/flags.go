package dfs

import (
	"fmt"
	"strings"
)

// opts is a verb's parsed command line, as Hadoop's CommandFormat parses
// it: single-letter-or-word options each in its own argument ("-r -f",
// not "-rf"), some taking a value, up to the first argument that is not
// an option ("-" alone is an argument; "--" ends the options).
type opts struct {
	set  map[string]bool
	vals map[string]string
	args []string
}

// parse reads args for a verb taking the options in bools and, with a
// value, in valued; min and max bound the arguments left (max < 0: any).
func parse(args []string, min, max int, bools []string, valued ...string) (*opts, error) {
	o := &opts{set: map[string]bool{}, vals: map[string]string{}}
	known := map[string]bool{}
	for _, b := range bools {
		known[b] = true
	}
	withVal := map[string]bool{}
	for _, v := range valued {
		withVal[v] = true
	}
	i := 0
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			i++
			break
		}
		if len(a) < 2 || a[0] != '-' {
			break
		}
		name := a[1:]
		switch {
		case known[name]:
			o.set[name] = true
		case withVal[name]:
			if i+1 >= len(args) {
				return nil, usageError{fmt.Sprintf("Missing argument for option %s", a)}
			}
			o.set[name] = true
			o.vals[name] = args[i+1]
			i++
		default:
			return nil, usageError{"Illegal option " + a}
		}
	}
	o.args = args[i:]
	if len(o.args) < min {
		return nil, usageError{fmt.Sprintf("Not enough arguments: expected %d but got %d", min, len(o.args))}
	}
	if max >= 0 && len(o.args) > max {
		return nil, usageError{fmt.Sprintf("Too many arguments: expected %d but got %d", max, len(o.args))}
	}
	return o, nil
}

func (o *opts) has(names ...string) bool {
	for _, n := range names {
		if o.set[n] {
			return true
		}
	}
	return false
}

// words splits a flag list written as one string.
func words(s string) []string { return strings.Fields(s) }
