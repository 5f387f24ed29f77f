package webhdfs

import (
	"errors"
	"net/http"
	"testing"
)

// FuzzParseRequest: any path and query parse to a request or a
// RemoteException with a 4xx status, never a panic.
func FuzzParseRequest(f *testing.F) {
	for _, s := range [][3]string{
		{"GET", "/webhdfs/v1/", "op=LISTSTATUS"},
		{"GET", "/webhdfs/v1/a/b", "op=open&offset=3&length=10"},
		{"PUT", "/webhdfs/v1/x", "op=CREATE&overwrite=true&permission=1755&replication=2"},
		{"POST", "/webhdfs/v1/x", "op=CONCAT&sources=/a,/b"},
		{"GET", "/webhdfs/v1/../etc", "op=OPEN"},
		{"GET", "/webhdfs/v1/x", "op=%zz"},
		{"DELETE", "/webhdfsx", "op=DELETE"},
		{"PUT", "/webhdfs/v1/x", "op=SETXATTR&xattr.name=user.a&xattr.value=0x41&flag=CREATE"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, method, path, query string) {
		r, err := ParseRequest(method, path, query)
		if err != nil {
			var re *RemoteError
			if !errors.As(err, &re) || re.Status < 400 || re.Status >= 500 {
				t.Fatalf("ParseRequest(%q, %q, %q): %v is not a 4xx RemoteException", method, path, query, err)
			}
			return
		}
		if _, ok := ops[r.Op]; !ok || r.Method != method || r.Path == "" || r.Path[0] != '/' {
			t.Fatalf("ParseRequest(%q, %q, %q) = %+v", method, path, query, r)
		}
		_, _ = r.Int64("offset", 0, 0, 1<<62)
		_, _ = r.Bool("overwrite", false)
		_, _ = r.Perm(0o644)
		_, _ = r.PathParam("destination", r.Param("destination"))
		if srcs, err := r.Sources(); err == nil {
			for _, s := range srcs {
				if s == "" || s[0] != '/' {
					t.Fatalf("Sources of %q: %q is not absolute", query, s)
				}
			}
		} else if re := (*RemoteError)(nil); !errors.As(err, &re) || re.Status != http.StatusBadRequest {
			t.Fatalf("Sources: %v", err)
		}
		if _, err := decodeXattrValue(r.Param("xattr.value")); err != nil {
			var re *RemoteError
			if !errors.As(err, &re) || re.Status != http.StatusBadRequest {
				t.Fatalf("decodeXattrValue: %v", err)
			}
		}
	})
}
