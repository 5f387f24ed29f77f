package webui

import (
	"fmt"
	"net/url"
	"strconv"

	"cairn"
)

// The UI's query strings are outside input: each parser takes the raw
// query, refuses what it does not understand with an error for a 400
// page, and returns only valid values.

// maxIndex bounds a page's starting row.
const maxIndex = 1 << 30

// browseQuery is /browse's query string.
type browseQuery struct {
	Path  string // the directory or file shown (cairn.ValidatePath); "/" when absent
	After string // a directory's entries are shown after this name ("": from the first)
	From  int    // a file's blocks are shown from this index
}

// parseBrowse parses /browse's raw query string.
func parseBrowse(raw string) (browseQuery, error) {
	vals, err := parseQuery(raw, "path", "after", "from")
	if err != nil {
		return browseQuery{}, err
	}
	q := browseQuery{Path: "/"}
	if p, ok := vals["path"]; ok {
		if err := cairn.ValidatePath(p); err != nil {
			return browseQuery{}, fmt.Errorf("path: %w", err)
		}
		q.Path = p
	}
	if a, ok := vals["after"]; ok && a != "" {
		if err := cairn.ValidateName(a); err != nil {
			return browseQuery{}, fmt.Errorf("after: %w", err)
		}
		q.After = a
	}
	if q.From, err = parseIndex(vals, "from"); err != nil {
		return browseQuery{}, err
	}
	return q, nil
}

// parseFrom parses a list page's raw query string: "from", the first row
// shown (0 when absent).
func parseFrom(raw string) (int, error) {
	vals, err := parseQuery(raw, "from")
	if err != nil {
		return 0, err
	}
	return parseIndex(vals, "from")
}

// parseQuery parses raw, refusing a malformed query, a parameter other
// than those known, and a parameter given twice.
func parseQuery(raw string, known ...string) (map[string]string, error) {
	vals, err := url.ParseQuery(raw)
	if err != nil {
		return nil, fmt.Errorf("malformed query string: %w", err)
	}
	out := make(map[string]string, len(vals))
	for k, vs := range vals {
		ok := false
		for _, n := range known {
			ok = ok || k == n
		}
		switch {
		case !ok:
			return nil, fmt.Errorf("unknown parameter %q", k)
		case len(vs) != 1:
			return nil, fmt.Errorf("parameter %q given %d times", k, len(vs))
		}
		out[k] = vs[0]
	}
	return out, nil
}

// parseIndex is the row index named name in vals: 0 when absent, else a
// decimal in [0, maxIndex].
func parseIndex(vals map[string]string, name string) (int, error) {
	s, ok := vals[name]
	if !ok {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > maxIndex {
		return 0, fmt.Errorf("%s: %q is not a row number (0 to %d)", name, s, maxIndex)
	}
	return n, nil
}

// browseURL is the link to /browse that parseBrowse reads back as q.
func browseURL(q browseQuery) string {
	v := url.Values{}
	v.Set("path", q.Path)
	if q.After != "" {
		v.Set("after", q.After)
	}
	if q.From > 0 {
		v.Set("from", strconv.Itoa(q.From))
	}
	return "/browse?" + v.Encode()
}

// downloadURL is WebHDFS's OPEN of the file at valid path p: each name
// escaped, so that '?', '#' and '%' in names stay names.
func downloadURL(p string) string {
	u := url.URL{Path: "/webhdfs/v1" + p, RawQuery: "op=OPEN"}
	return u.String()
}
