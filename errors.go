package cairn

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Kind classifies an error so callers decide on it without matching strings.
// The mount maps each Kind to one errno (mount/errno.go).
type Kind uint8

const (
	KindOther       Kind = iota // unclassified
	KindNotExist                // no such file or directory
	KindExist                   // already exists
	KindNotDir                  // a path component is not a directory
	KindIsDir                   // a file operation on a directory
	KindNotEmpty                // directory not empty
	KindPermission              // refused by the rules: write-once, hard links...
	KindAccess                  // refused by permission bits
	KindInvalid                 // bad argument or path
	KindBusy                    // another writer holds the file
	KindRetry                   // not yet; try again shortly
	KindNamespace               // a blockd from another namespace
	KindNoSpace                 // no blockd can take the data
	KindIO                      // data could not be read or written
	KindUnavailable             // a service cannot be reached
	KindNameTooLong             // a name or path longer than the limits
	KindSafeMode                // metad is read-only (safe mode)
	KindNotLeader               // a metad of a group that is not its leader
)

var kindNames = [...]string{
	KindOther:       "error",
	KindNotExist:    "no such file or directory",
	KindExist:       "file exists",
	KindNotDir:      "not a directory",
	KindIsDir:       "is a directory",
	KindNotEmpty:    "directory not empty",
	KindPermission:  "operation not permitted",
	KindAccess:      "permission denied",
	KindInvalid:     "invalid argument",
	KindBusy:        "file busy",
	KindRetry:       "try again",
	KindNamespace:   "namespace mismatch",
	KindNoSpace:     "no space left",
	KindIO:          "input/output error",
	KindUnavailable: "service unavailable",
	KindNameTooLong: "file name too long",
	KindSafeMode:    "read-only: metad is in safe mode",
	KindNotLeader:   "not the leader of the metad group",
}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

// Sentinel errors, one per Kind: errors.Is(err, cairn.ErrNotExist) holds for
// any *Error of that Kind, however deeply wrapped.
var (
	ErrNotExist    = &Error{Kind: KindNotExist}
	ErrExist       = &Error{Kind: KindExist}
	ErrNotDir      = &Error{Kind: KindNotDir}
	ErrIsDir       = &Error{Kind: KindIsDir}
	ErrNotEmpty    = &Error{Kind: KindNotEmpty}
	ErrPermission  = &Error{Kind: KindPermission}
	ErrAccess      = &Error{Kind: KindAccess}
	ErrInvalid     = &Error{Kind: KindInvalid}
	ErrBusy        = &Error{Kind: KindBusy}
	ErrRetry       = &Error{Kind: KindRetry}
	ErrNamespace   = &Error{Kind: KindNamespace}
	ErrNoSpace     = &Error{Kind: KindNoSpace}
	ErrIO          = &Error{Kind: KindIO}
	ErrUnavailable = &Error{Kind: KindUnavailable}
	ErrNameTooLong = &Error{Kind: KindNameTooLong}
	ErrSafeMode    = &Error{Kind: KindSafeMode}
	ErrNotLeader   = &Error{Kind: KindNotLeader}
)

// Error is cairn's error: what was done (Op, e.g. "metad.Create"), on what
// (Path), what kind of failure, a detail message and the underlying error.
type Error struct {
	Op     string
	Path   string
	Kind   Kind
	Detail string
	Err    error
}

// E builds an *Error.
func E(op string, kind Kind, path, detail string) *Error {
	return &Error{Op: op, Path: path, Kind: kind, Detail: detail}
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Op != "" {
		b.WriteString(e.Op)
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Kind.String())
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Is matches a sentinel of the same Kind (a bare *Error with only Kind set).
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	if !ok {
		return false
	}
	return t.Op == "" && t.Path == "" && t.Detail == "" && t.Err == nil && t.Kind == e.Kind
}

// KindOf returns the Kind of the first *Error in err's chain, or KindOther.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		if e.Kind == KindOther && e.Err != nil {
			return KindOf(e.Err)
		}
		return e.Kind
	}
	return KindOther
}

// Path limits. A name is at most MaxNameLen bytes (NAME_MAX), a path a
// program names at most MaxPathLen (PATH_MAX), counted from where it sees
// the root (a mount of a subdirectory counts below it). The namespace
// keeps paths up to MaxNamespacePathLen (HDFS's MAX_PATH_LENGTH), so a
// mount of a subdirectory has the full MaxPathLen below it.
const (
	MaxNameLen          = 255
	MaxPathLen          = 4096
	MaxNamespacePathLen = 8000
)

// ValidatePath is the one definition of a valid path: absolute, no empty,
// "." or ".." component, no NUL, valid UTF-8, names up to MaxNameLen bytes,
// the whole up to MaxNamespacePathLen bytes. "/" is valid. A bad path gets
// a KindInvalid error naming the rule it broke, KindNameTooLong for a
// name or path too long.
func ValidatePath(p string) error {
	const op = "cairn.ValidatePath"
	bad := func(rule string) error { return &Error{Op: op, Path: quoteIfOdd(p), Kind: KindInvalid, Detail: rule} }
	long := func(rule string) error {
		return &Error{Op: op, Path: quoteIfOdd(p), Kind: KindNameTooLong, Detail: rule}
	}
	switch {
	case p == "":
		return bad("empty path")
	case len(p) > MaxNamespacePathLen:
		return long(fmt.Sprintf("path longer than %d bytes", MaxNamespacePathLen))
	case !utf8.ValidString(p):
		return bad("path is not valid UTF-8")
	case strings.IndexByte(p, 0) >= 0:
		return bad("path contains a NUL byte")
	case p[0] != '/':
		return bad("path is not absolute")
	case p == "/":
		return nil
	}
	for _, name := range strings.Split(p[1:], "/") {
		switch {
		case name == "":
			return bad("empty path component")
		case name == "." || name == "..":
			return bad(fmt.Sprintf("path component %q", name))
		case len(name) > MaxNameLen:
			return long(fmt.Sprintf("name longer than %d bytes", MaxNameLen))
		}
	}
	return nil
}

// ValidateName checks one directory entry name the way ValidatePath checks
// each component.
func ValidateName(name string) error {
	if strings.Contains(name, "/") {
		return &Error{Op: "cairn.ValidateName", Path: quoteIfOdd(name), Kind: KindInvalid, Detail: "name contains '/'"}
	}
	return ValidatePath("/" + name)
}

func quoteIfOdd(p string) string {
	if !utf8.ValidString(p) || strings.IndexByte(p, 0) >= 0 || len(p) > 256 {
		q := fmt.Sprintf("%q", p)
		if len(q) > 120 {
			q = q[:117] + "..."
		}
		return q
	}
	return p
}

// Join joins a directory path and a name.
func Join(dir, name string) string {
	if dir == "/" {
		return "/" + name
	}
	return dir + "/" + name
}

// Split splits a valid path into its parent directory and last name.
func Split(p string) (dir, name string) {
	i := strings.LastIndexByte(p, '/')
	if i <= 0 {
		return "/", p[i+1:]
	}
	return p[:i], p[i+1:]
}
