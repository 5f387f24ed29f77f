package webhdfs

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"cairn/trust"
)

// TestRouteBeforeServeMux: a path a ServeMux would clean reaches the API
// as it was sent and is refused (400), where a ServeMux alone answers a
// redirect to another path, which a client following it would act on.
func TestRouteBeforeServeMux(t *testing.T) {
	h, ns := testHandler(NameNode)
	mux := http.NewServeMux()
	mux.Handle(Prefix+"/", h)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	for _, target := range []string{"/webhdfs/v1/d/x/..?op=MKDIRS", "/webhdfs/v1/d/./e?op=MKDIRS", "/webhdfs/v1//d?op=MKDIRS"} {
		if rec := do(mux, "PUT", target); rec.Code/100 != 3 {
			t.Fatalf("the ServeMux alone no longer redirects %s (%d): this test shows nothing", target, rec.Code)
		}
		rec := do(Route(h, mux), "PUT", target)
		var re struct{ RemoteException struct{ Exception string } }
		if rec.Code != 400 || json.Unmarshal(rec.Body.Bytes(), &re) != nil || re.RemoteException.Exception != "InvalidPathException" {
			t.Errorf("PUT %s: %d %s, want 400 InvalidPathException", target, rec.Code, rec.Body)
		}
	}
	if len(ns.mkdirs) != 0 {
		t.Fatalf("a refused MKDIRS made %v", ns.mkdirs)
	}
	if rec := do(Route(h, mux), "GET", "/healthz"); rec.Code != 200 || rec.Body.String() != "ok" {
		t.Fatalf("/healthz through Route: %d %s", rec.Code, rec.Body)
	}
}

// TestBodyStall: a body whose client stops sending fails the handler's
// read once BodyTimeout passes with nothing, on a real connection; one
// that keeps flowing is read whole however long it takes in all.
func TestBodyStall(t *testing.T) {
	h := &Handler{BodyTimeout: time.Second}
	got := make(chan error, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, h.body(w, r))
		if err == nil && n != r.ContentLength {
			err = fmt.Errorf("read %d of %d bytes", n, r.ContentLength)
		}
		got <- err
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)

	// Flowing: 20 chunks, each well within the timeout, twice it in all.
	c, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n")
	for range 20 {
		time.Sleep(100 * time.Millisecond)
		_, _ = c.Write([]byte("a"))
	}
	if err := <-got; err != nil {
		t.Fatalf("a flowing body: %v", err)
	}

	// Stalled: part of the body, then nothing.
	s, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fmt.Fprintf(s, "PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
	select {
	case err := <-got:
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("a stalled body: %v, want a timeout", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the handler still waits for a stalled body")
	}
}

// FuzzCallerOf: any query and Authorization header, on an insecure
// cluster or a secure one with any peer, give a caller or a 4xx
// RemoteException, never a panic; a user certificate or token is always
// its own user, and only an admin or a mount names another.
func FuzzCallerOf(f *testing.F) {
	f.Add("user.name=alice", "", "", "", false)
	f.Add("doas=root", "Bearer cairndt1.AAAA", "user", "alice", true)
	f.Add("user.name=bob&doas=root", "", "admin", "ops", true)
	f.Add("delegation=x", "", "mount", "host1", true)
	f.Add("user.name=a%2Fb", "", "", "", false)
	f.Add("", "", "blockd", "s1", true)
	f.Fuzz(func(t *testing.T, query, auth, role, name string, secure bool) {
		q, err := ParseRequest(http.MethodGet, Prefix+"/", "op=GETHOMEDIRECTORY&"+query)
		if err != nil {
			return
		}
		r := &http.Request{Method: http.MethodGet, URL: &url.URL{Path: Prefix + "/", RawQuery: query}, Header: http.Header{}}
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		ctx := t.Context()
		if role != "" {
			ctx = trust.WithPeer(ctx, trust.Peer{Role: trust.Role(role), Name: name})
		}
		c, err := CallerOf(r.WithContext(ctx), q, secure)
		if err != nil {
			var re *RemoteError
			if !errors.As(err, &re) || re.Status < 400 || re.Status >= 500 {
				t.Fatalf("CallerOf: %v is not a 4xx RemoteException", err)
			}
			return
		}
		if c.User == "" {
			t.Fatalf("CallerOf: no user: %+v", c)
		}
		named := q.Param("doas")
		if named == "" {
			named = q.Param("user.name")
		}
		switch {
		case !secure && named != "" && c.User != named, !secure && named == "" && c.User != AnonymousUser:
			t.Fatalf("insecure, named %q: caller %q", named, c.User)
		case secure && role == "":
			t.Fatalf("secure without a peer: caller %+v", c)
		case secure && trust.Role(role) == trust.RoleUser && c.User != name:
			t.Fatalf("user certificate %q acts as %q", name, c.User)
		case secure && trust.Role(role) != trust.RoleUser && trust.Role(role) != trust.RoleAdmin && trust.Role(role) != trust.RoleMount:
			t.Fatalf("a %s certificate acts as %q", role, c.User)
		}
	})
}
