package dfs

import (
	"path"
	"regexp"
	"strings"

	"cairn"
)

// item is one path an argument names: as shown (the user's spelling, as
// Hadoop's PathData keeps it), its absolute path, and what metad says of it.
type item struct {
	disp string
	abs  string
	fi   cairn.FileInfo
}

// hasGlob reports whether s has a character Hadoop's glob syntax gives a
// meaning: * ? [ { or the escape \.
func hasGlob(s string) bool { return strings.ContainsAny(s, "*?[{\\") }

// expand is Hadoop's PathData.expandAsGlob: the paths arg names. A
// pattern matching nothing, and a plain path that does not exist, are
// "No such file or directory" under arg's spelling.
func (s *shell) expand(arg string) ([]item, error) {
	if _, err := s.client(); err != nil {
		return nil, err
	}
	p := stripScheme(arg)
	if !hasGlob(p) {
		abs := s.abs(p)
		fi, err := s.ns().Stat(s.ctx, abs)
		if err != nil {
			return nil, perr(arg, err)
		}
		return []item{{disp: arg, abs: abs, fi: fi}}, nil
	}
	var out []item
	seen := map[string]bool{}
	for _, flat := range expandSlashBraces(p) {
		items, err := s.glob(flat)
		if err != nil {
			return nil, err
		}
		for _, it := range items {
			if !seen[it.abs] {
				seen[it.abs] = true
				out = append(out, it)
			}
		}
	}
	if len(out) == 0 {
		return nil, newPathError(arg, kindText[cairn.KindNotExist])
	}
	return out, nil
}

// glob matches a pattern with no brace holding a slash, one path
// component at a time, as Hadoop's Globber: a literal component is
// taken as it is, a pattern is matched against its directory's listing.
func (s *shell) glob(p string) ([]item, error) {
	type cand struct {
		disp, abs string
		fi        *cairn.FileInfo
	}
	cur := []cand{{disp: "", abs: s.home}}
	if strings.HasPrefix(p, "/") {
		cur = []cand{{disp: "/", abs: "/"}}
	}
	comps := strings.Split(strings.Trim(p, "/"), "/")
	for _, comp := range comps {
		if comp == "" {
			continue
		}
		var next []cand
		if !hasGlob(comp) || comp == "." || comp == ".." {
			for _, c := range cur {
				next = append(next, cand{disp: joinDisp(c.disp, comp), abs: path.Join(c.abs, comp)})
			}
			cur = next
			continue
		}
		re, err := compileGlob(comp)
		if err != nil {
			return nil, err
		}
		for _, c := range cur {
			es, err := s.cl.ReadDir(s.ctx, c.abs)
			if err != nil {
				continue // not a directory, or gone: matches nothing
			}
			for i := range es {
				if re.MatchString(es[i].Name) {
					next = append(next, cand{disp: joinDisp(c.disp, es[i].Name), abs: path.Join(c.abs, es[i].Name), fi: &es[i]})
				}
			}
		}
		cur = next
	}
	var out []item
	for _, c := range cur {
		if c.fi != nil {
			out = append(out, item{disp: c.disp, abs: c.abs, fi: *c.fi})
			continue
		}
		fi, err := s.ns().Stat(s.ctx, c.abs)
		if err != nil {
			continue
		}
		d := c.disp
		if d == "" {
			d = "."
		}
		out = append(out, item{disp: d, abs: c.abs, fi: fi})
	}
	return out, nil
}

func joinDisp(dir, name string) string {
	switch dir {
	case "":
		return name
	case "/":
		return "/" + name
	}
	return dir + "/" + name
}

// globError is Hadoop's message for a bad pattern.
type globError struct{ pattern, why string }

func (e *globError) Error() string {
	return "Illegal file pattern: " + e.why + " for glob " + e.pattern
}

// compileGlob turns one path component's pattern into a regular
// expression, as Hadoop's GlobPattern does: * any run of characters, ?
// one character, [abc] [a-z] [^a] [!a] a class, {a,b} alternatives (they
// may nest), \ quotes the next character.
func compileGlob(glob string) (*regexp.Regexp, error) {
	var b strings.Builder
	b.WriteString("^(?s:")
	depth := 0
	inClass := false
	for i := 0; i < len(glob); i++ {
		c := glob[i]
		switch {
		case c == '\\':
			i++
			if i >= len(glob) {
				return nil, &globError{glob, "Missing escaped character"}
			}
			b.WriteString(regexp.QuoteMeta(glob[i : i+1]))
			continue
		case inClass:
			switch c {
			case ']':
				inClass = false
				b.WriteByte(']')
			case '[', '&', '~', '|':
				b.WriteByte('\\')
				b.WriteByte(c)
			default:
				b.WriteByte(c)
			}
			continue
		}
		switch c {
		case '*':
			b.WriteString(".*")
		case '?':
			b.WriteString(".")
		case '[':
			inClass = true
			b.WriteByte('[')
			if i+1 < len(glob) && (glob[i+1] == '^' || glob[i+1] == '!') {
				b.WriteByte('^')
				i++
			}
			if i+1 < len(glob) && glob[i+1] == ']' {
				b.WriteString(`\]`)
				i++
			}
		case '{':
			depth++
			b.WriteString("(?:")
		case ',':
			if depth > 0 {
				b.WriteByte('|')
			} else {
				b.WriteByte(',')
			}
		case '}':
			if depth == 0 {
				b.WriteString(`\}`)
				continue
			}
			depth--
			b.WriteByte(')')
		default:
			b.WriteString(regexp.QuoteMeta(glob[i : i+1]))
		}
	}
	if inClass {
		return nil, &globError{glob, "Unclosed character class"}
	}
	if depth > 0 {
		return nil, &globError{glob, "Unclosed group"}
	}
	b.WriteString(")$")
	re, err := regexp.Compile(b.String())
	if err != nil {
		return nil, &globError{glob, err.Error()}
	}
	return re, nil
}

// maxBraceExpansions bounds expandSlashBraces: a pattern such as
// {a,b}/{a,b}/... must not grow without end.
const maxBraceExpansions = 1024

// expandSlashBraces is Hadoop's GlobExpander: a brace group whose
// alternatives hold a slash is expanded into whole patterns (the other
// groups stay for compileGlob, which matches within one component).
func expandSlashBraces(p string) []string {
	out := []string{}
	todo := []string{p}
	for len(todo) > 0 && len(out)+len(todo) <= maxBraceExpansions {
		q := todo[0]
		todo = todo[1:]
		open, alts, close, ok := slashGroup(q)
		if !ok {
			out = append(out, q)
			continue
		}
		for _, a := range alts {
			todo = append(todo, q[:open]+a+q[close+1:])
		}
	}
	return append(out, todo...)
}

// slashGroup finds the first outermost brace group of p with a slash in
// it: its bounds and its alternatives (split at top-level commas).
func slashGroup(p string) (open int, alts []string, close int, ok bool) {
	depth, start := 0, -1
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '\\':
			i++
		case '{':
			if depth == 0 {
				start = i
			}
			depth++
		case '}':
			if depth == 0 {
				continue
			}
			depth--
			if depth == 0 {
				body := p[start+1 : i]
				if strings.Contains(body, "/") {
					return start, splitAlts(body), i, true
				}
			}
		}
	}
	return 0, nil, 0, false
}

func splitAlts(body string) []string {
	var alts []string
	depth, last := 0, 0
	for i := 0; i < len(body); i++ {
		switch body[i] {
		case '\\':
			i++
		case '{':
			depth++
		case '}':
			depth--
		case ',':
			if depth == 0 {
				alts = append(alts, body[last:i])
				last = i + 1
			}
		}
	}
	return append(alts, body[last:])
}
