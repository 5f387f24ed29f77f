package webhdfs

import (
	"io/fs"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"cairn"
)

// Prefix is the path under which the API is served.
const Prefix = "/webhdfs/v1"

// opSpec is what an operation is: its HTTP method and whether its bytes
// go through a datanode (a redirect from metad).
type opSpec struct {
	method string
	data   bool
}

// ops are the operations served, by upper-case name (names are matched
// without regard to case, as Hadoop's enums are).
var ops = map[string]opSpec{
	"OPEN": {http.MethodGet, true}, "GETFILESTATUS": {http.MethodGet, false}, "LISTSTATUS": {http.MethodGet, false},
	"LISTSTATUS_BATCH": {http.MethodGet, false}, "GETCONTENTSUMMARY": {http.MethodGet, false},
	"GETFILECHECKSUM": {http.MethodGet, true}, "GETHOMEDIRECTORY": {http.MethodGet, false},
	"GETFILEBLOCKLOCATIONS": {http.MethodGet, false}, "GETXATTRS": {http.MethodGet, false},
	"LISTXATTRS": {http.MethodGet, false}, "CHECKACCESS": {http.MethodGet, false},
	"GETDELEGATIONTOKEN": {http.MethodGet, false},

	"CREATE": {http.MethodPut, true}, "MKDIRS": {http.MethodPut, false}, "RENAME": {http.MethodPut, false},
	"SETREPLICATION": {http.MethodPut, false}, "SETOWNER": {http.MethodPut, false},
	"SETPERMISSION": {http.MethodPut, false}, "SETTIMES": {http.MethodPut, false},
	"SETXATTR": {http.MethodPut, false}, "REMOVEXATTR": {http.MethodPut, false},
	"CREATESYMLINK": {http.MethodPut, false}, "RENEWDELEGATIONTOKEN": {http.MethodPut, false},
	"CANCELDELEGATIONTOKEN": {http.MethodPut, false},

	"APPEND": {http.MethodPost, true}, "CONCAT": {http.MethodPost, false}, "TRUNCATE": {http.MethodPost, false},

	"DELETE": {http.MethodDelete, false},
}

// Request is a parsed WebHDFS request: its operation, the path it names
// and its parameters.
type Request struct {
	Op     string // upper case, one of ops
	Method string
	Path   string // absolute, valid (cairn.ValidatePath)
	params url.Values
}

// Data reports whether the operation's bytes go through a datanode.
func (r *Request) Data() bool { return ops[r.Op].data }

// ParseRequest parses a request's method, URL path (decoded, starting
// with Prefix) and raw query. Bad input is a *RemoteError (400 for a
// malformed request, IllegalArgumentException as Hadoop answers one).
func ParseRequest(method, path, rawQuery string) (*Request, error) {
	rest, ok := strings.CutPrefix(path, Prefix)
	if !ok || (rest != "" && rest[0] != '/') {
		return nil, excIllegal("not a WebHDFS path (%s/PATH): %q", Prefix, path)
	}
	if rest == "" {
		rest = "/"
	}
	if len(rest) > 1 {
		rest = strings.TrimSuffix(rest, "/")
	}
	if err := cairn.ValidatePath(rest); err != nil {
		return nil, excInvalidPath("Invalid path name %s: %v", strconv.Quote(rest), err)
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return nil, excIllegal("malformed query: %v", err)
	}
	params := url.Values{}
	for k, vs := range q {
		lk := strings.ToLower(k)
		params[lk] = append(params[lk], vs...)
	}
	opv := params.Get("op")
	if opv == "" {
		return nil, excIllegal("the op parameter is missing (e.g. ?op=LISTSTATUS)")
	}
	op := strings.ToUpper(opv)
	spec, ok := ops[op]
	if !ok {
		return nil, excIllegal("Invalid value for webhdfs parameter \"op\": No enum constant for %s", strconv.Quote(opv))
	}
	if spec.method != method {
		return nil, excIllegal("Invalid value for webhdfs parameter \"op\": %s is a %s operation, not %s", op, spec.method, method)
	}
	r := &Request{Op: op, Method: method, Path: rest, params: params}
	if err := r.check(); err != nil {
		return nil, err
	}
	return r, nil
}

// check parses the common parameters once, so that a malformed one is
// refused (400) before anything is done or redirected.
func (r *Request) check() error {
	for _, n := range []struct {
		name   string
		lo, hi int64
	}{{"offset", 0, 1 << 62}, {"length", 0, 1 << 62}, {"buffersize", 1, 1 << 31}, {"replication", 1, 512},
		{"blocksize", 1 << 20, 1 << 40}, {"modificationtime", -1, 1 << 50}, {"accesstime", -1, 1 << 50}} {
		if _, err := r.Int64(n.name, 0, n.lo, n.hi); err != nil {
			return err
		}
	}
	for _, b := range []string{"overwrite", "recursive", "noredirect", "createparent", "data"} {
		if _, err := r.Bool(b, false); err != nil {
			return err
		}
	}
	_, err := r.Perm(0)
	return err
}

// Param is the parameter's value ("" when absent); names are matched
// without regard to case.
func (r *Request) Param(name string) string { return r.params.Get(strings.ToLower(name)) }

// Params are all the values of a parameter given several times.
func (r *Request) Params(name string) []string { return r.params[strings.ToLower(name)] }

// Has reports whether the parameter is given.
func (r *Request) Has(name string) bool { _, ok := r.params[strings.ToLower(name)]; return ok }

// Int64 parses a number parameter, def when absent, within [lo, hi].
func (r *Request) Int64(name string, def, lo, hi int64) (int64, error) {
	v := r.Param(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < lo || n > hi {
		return 0, excIllegal("Invalid value for webhdfs parameter %q: %q (a number from %d to %d)", name, v, lo, hi)
	}
	return n, nil
}

// Bool parses a boolean parameter (true/false, any case), def when absent.
func (r *Request) Bool(name string, def bool) (bool, error) {
	v := r.Param(name)
	switch strings.ToLower(v) {
	case "":
		return def, nil
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, excIllegal("Invalid value for webhdfs parameter %q: %q (true or false)", name, v)
}

// Perm parses the permission parameter, octal 0 to 1777, def when absent.
func (r *Request) Perm(def fs.FileMode) (fs.FileMode, error) {
	v := r.Param("permission")
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseUint(v, 8, 32)
	if err != nil || n > 0o1777 {
		return 0, excIllegal("Invalid value for webhdfs parameter \"permission\": %q (octal, 0 to 1777)", v)
	}
	m := fs.FileMode(n & 0o777)
	if n&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m, nil
}

// Sources parses CONCAT's sources parameter: paths separated by commas,
// each absolute and valid.
func (r *Request) Sources() ([]string, error) {
	v := r.Param("sources")
	if v == "" {
		return nil, excIllegal("the sources parameter is missing")
	}
	var out []string
	for _, p := range strings.Split(v, ",") {
		p, err := r.PathParam("sources", p)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// PathParam parses a parameter naming another path (destination,
// sources): absolute and valid.
func (r *Request) PathParam(name, v string) (string, error) {
	if v == "" {
		return "", excIllegal("the %s parameter is missing", name)
	}
	if len(v) > 1 {
		v = strings.TrimSuffix(v, "/")
	}
	if err := cairn.ValidatePath(v); err != nil {
		return "", excInvalidPath("Invalid value for webhdfs parameter %q: %v", name, err)
	}
	return v, nil
}
