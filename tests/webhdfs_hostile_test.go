package tests

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"cairn/tests/cluster"
	"cairn/trust"
)

// TestWebHDFSHostile attacks WebHDFS at metad, at a blockd and through
// `cairn httpfs` on one secure cluster, as an outsider would: callers
// without a credential or with a token that may not do what they ask,
// paths a ServeMux would have cleaned into other paths, an oversized
// header, uploads that stall, and many clients at once through the
// gateway.
func TestWebHDFSHostile(t *testing.T) {
	c := cluster.Start(t, cluster.Config{Blockds: 1, Replication: 1,
		// A blockd's WebHDFS cuts a stalled upload off after its idle
		// timeout; the gateway after --body-timeout.
		BlockdArgs: []string{"--idle-timeout", "5s"}})
	// /w is everyone's; /g is bob's and the group daemon's (a group of
	// metad's host, which the host's user daemon is in).
	for _, args := range [][]string{{"-mkdir", "-p", "/w", "/root-only", "/g"}, {"-chmod", "777", "/w"},
		{"-chown", "bob:daemon", "/g"}, {"-chmod", "770", "/g"}} {
		if _, code := c.Run(t, append([]string{"dfs"}, args...)...); code != 0 {
			t.Fatalf("cairn dfs %v: exit %d", args, code)
		}
	}
	dir := t.TempDir()
	c.IssueCert(t, trust.Peer{Role: trust.RoleUser, Name: "alice"}, dir)
	alice := newWHClient(trust.ClientConfig(trust.NewHolder(mustLoadCreds(t, dir)), trust.RoleMetad, trust.RoleBlockd, trust.RoleAdmin, trust.RoleMount))
	anon := newWHClient(&tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}) //nolint:gosec // an outsider, who checks nothing
	metad := "https://" + c.MetadHTTPAddr()
	gw := "https://" + c.StartHTTPFS(t, "--body-timeout", "2s")
	tok := alice.token(t, metad)
	ddir := t.TempDir()
	c.IssueCert(t, trust.Peer{Role: trust.RoleUser, Name: "daemon"}, ddir)
	daemon := newWHClient(trust.ClientConfig(trust.NewHolder(mustLoadCreds(t, ddir)), trust.RoleMetad, trust.RoleAdmin, trust.RoleMount))

	t.Run("credentials", func(t *testing.T) { whHostileCredentials(t, alice, anon, metad, gw, tok) })
	t.Run("groups", func(t *testing.T) {
		// The gateway's caller has its groups, as at metad: daemon lists
		// /g by its group through either.
		for _, base := range []string{metad, gw} {
			if code, body, _ := daemon.do(t, "GET", base+"/webhdfs/v1/g?op=LISTSTATUS", nil); code != 200 {
				t.Errorf("%s: daemon's LISTSTATUS of /g (group daemon, 770): HTTP %d %s", base, code, body)
			}
		}
	})
	t.Run("paths", func(t *testing.T) { whHostilePaths(t, alice, metad, gw) })
	t.Run("header", func(t *testing.T) { whHostileHeader(t, alice, metad, gw) })
	t.Run("stalled-upload", func(t *testing.T) { whHostileStall(t, alice, metad, gw) })
	t.Run("stalled-download", func(t *testing.T) { whHostileStalledReader(t, alice, gw) })
	t.Run("parallel-httpfs", func(t *testing.T) { whHostileParallel(t, alice, gw) })
}

// TestWebHDFSHostileInsecure: on an --insecure cluster (Hadoop's simple
// authentication, user.name believed) the same paths are refused, the
// same header is too large and the same stalled uploads are cut off.
func TestWebHDFSHostileInsecure(t *testing.T) {
	c := cluster.Start(t, cluster.Config{Blockds: 1, Replication: 1, Insecure: true, BlockdArgs: []string{"--idle-timeout", "5s"}})
	if _, code := c.Run(t, "dfs", "-mkdir", "-p", "/w"); code != 0 {
		t.Fatal("mkdir /w")
	}
	if _, code := c.Run(t, "dfs", "-chmod", "777", "/w"); code != 0 {
		t.Fatal("chmod 777 /w")
	}
	alice := newWHClient(nil)
	alice.hc.Transport = userName{"alice", alice.hc.Transport}
	metad := "http://" + c.MetadHTTPAddr()
	gw := "http://" + c.StartHTTPFS(t, "--body-timeout", "2s")
	t.Run("paths", func(t *testing.T) { whHostilePaths(t, alice, metad, gw) })
	t.Run("header", func(t *testing.T) { whHostileHeader(t, alice, metad, gw) })
	t.Run("stalled-upload", func(t *testing.T) { whHostileStall(t, alice, metad, gw) })
}

// userName adds Hadoop's simple authentication, user.name, to each
// request that names no user.
type userName struct {
	user string
	next http.RoundTripper
}

func (u userName) RoundTrip(r *http.Request) (*http.Response, error) {
	if q := r.URL.Query(); q.Get("user.name") == "" {
		r = r.Clone(r.Context())
		q.Set("user.name", u.user)
		r.URL.RawQuery = q.Encode()
	}
	return u.next.RoundTrip(r)
}

// whClient is an HTTP client that follows no redirect by itself; conf
// nil: plain HTTP.
type whClient struct {
	hc   *http.Client
	conf *tls.Config
}

func newWHClient(conf *tls.Config) whClient {
	return whClient{conf: conf, hc: &http.Client{
		Timeout:       60 * time.Second,
		Transport:     &http.Transport{TLSClientConfig: conf},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// dial opens a raw connection to addr, as the client's requests go,
// with a small receive buffer (which a client that stops reading fills).
func (w whClient) dial(addr string) (net.Conn, error) {
	d := &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 64<<10) }); err != nil {
			return err
		}
		return serr
	}}
	if w.conf == nil {
		return d.Dial("tcp", addr)
	}
	return tls.DialWithDialer(d, "tcp", addr, w.conf)
}

// do makes one request and returns its status, body and Location.
func (w whClient) do(t *testing.T, method, u string, body io.Reader, hdr ...string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := w.hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", method, u, err)
	}
	return resp.StatusCode, string(b), resp.Header.Get("Location")
}

// token is a delegation token got with the client's certificate.
func (w whClient) token(t *testing.T, base string) string {
	t.Helper()
	code, body, _ := w.do(t, "GET", base+"/webhdfs/v1/?op=GETDELEGATIONTOKEN", nil)
	var tk struct{ Token struct{ URLString string } }
	if code != 200 || json.Unmarshal([]byte(body), &tk) != nil || tk.Token.URLString == "" {
		t.Fatalf("GETDELEGATIONTOKEN: HTTP %d %s", code, body)
	}
	return tk.Token.URLString
}

// wantRemote checks an answer is a RemoteException of exc with status.
func wantRemote(t *testing.T, what string, code int, body string, status int, exc string) {
	t.Helper()
	var re struct{ RemoteException struct{ Exception string } }
	if code != status || json.Unmarshal([]byte(body), &re) != nil || re.RemoteException.Exception != exc {
		t.Errorf("%s: HTTP %d %s, want %d %s", what, code, body, status, exc)
	}
}

// status is a path's FileStatus by the client (404: not found).
func (w whClient) status(t *testing.T, base, path string) (int, struct {
	Length int64
	Owner  string
	Type   string
}) {
	t.Helper()
	code, body, _ := w.do(t, "GET", base+"/webhdfs/v1"+path+"?op=GETFILESTATUS", nil)
	var st struct {
		FileStatus struct {
			Length int64
			Owner  string
			Type   string
		}
	}
	if code == 200 && json.Unmarshal([]byte(body), &st) != nil {
		t.Fatalf("GETFILESTATUS %s: %s", path, body)
	}
	return code, st.FileStatus
}

// whHostileCredentials: nobody acts without a certificate or a working
// token (a SecurityException in JSON, which clients parse, everywhere);
// a token renews nothing; a user certificate gets no token or
// rights of another user; the gateway acts as its caller, not as itself.
func whHostileCredentials(t *testing.T, alice, anon whClient, metad, gw, tok string) {
	// No credential, with or without a name.
	for _, base := range []string{metad, gw} {
		for _, q := range []string{"", "&user.name=root", "&doas=root"} {
			code, body, _ := anon.do(t, "PUT", base+"/webhdfs/v1/w/anon?op=MKDIRS"+q, nil)
			wantRemote(t, base+": MKDIRS without a credential"+q, code, body, 401, "SecurityException")
		}
	}
	// A blockd's port: its address from a redirect, then without a token.
	code, body, loc := alice.do(t, "PUT", metad+"/webhdfs/v1/w/x?op=CREATE&noredirect=true", nil)
	var nr struct{ Location string }
	if code != 200 || json.Unmarshal([]byte(body), &nr) != nil {
		t.Fatalf("CREATE noredirect: HTTP %d %s %s", code, body, loc)
	}
	bu, err := url.Parse(nr.Location)
	if err != nil {
		t.Fatal(err)
	}
	blockd := "https://" + bu.Host
	for _, q := range []string{"", "&user.name=root", "&doas=root", "&delegation=cairndt1.AAAA"} {
		code, body, _ := anon.do(t, "PUT", blockd+"/webhdfs/v1/w/anon?op=CREATE&overwrite=true"+q, strings.NewReader("x"))
		wantRemote(t, "a blockd's CREATE without a working token"+q, code, body, 401, "SecurityException")
	}
	// A token is its owner only: not root, not another user.
	for _, base := range []string{metad, gw, blockd} {
		code, body, _ := anon.do(t, "PUT", base+"/webhdfs/v1/root-only/t?op=MKDIRS&doas=root&delegation="+tok, nil)
		if code != 403 {
			t.Errorf("%s: MKDIRS doas=root by alice's token: HTTP %d %s, want 403", base, code, body)
		}
	}
	code, body, _ = alice.do(t, "GET", metad+"/webhdfs/v1/?op=GETDELEGATIONTOKEN&doas=bob", nil)
	wantRemote(t, "alice's certificate asking a token for bob", code, body, 403, "AccessControlException")
	// A token renews no token, its own included (HDFS: only with a
	// credential of one's own), at metad and through the gateway; its
	// owner's certificate may.
	for _, base := range []string{metad, gw} {
		code, body, _ := anon.do(t, "PUT", base+"/webhdfs/v1/?op=RENEWDELEGATIONTOKEN&token="+tok+"&delegation="+tok, nil)
		wantRemote(t, base+": RENEWDELEGATIONTOKEN by the token itself", code, body, 403, "IOException")
	}
	if code, body, _ := alice.do(t, "PUT", metad+"/webhdfs/v1/?op=RENEWDELEGATIONTOKEN&token="+tok, nil); code != 200 {
		t.Errorf("RENEWDELEGATIONTOKEN by its owner's certificate: HTTP %d %s", code, body)
	}
	// The gateway acts as its caller: alice may not write where only
	// root may, and what she creates is hers.
	code, body, _ = alice.do(t, "PUT", gw+"/webhdfs/v1/root-only/a?op=MKDIRS", nil)
	wantRemote(t, "alice's MKDIRS in /root-only through the gateway", code, body, 403, "AccessControlException")
	if code, body, _ := alice.do(t, "PUT", gw+"/webhdfs/v1/w/mine?op=MKDIRS", nil); code != 200 {
		t.Fatalf("MKDIRS /w/mine through the gateway: HTTP %d %s", code, body)
	}
	if code, st := alice.status(t, metad, "/w/mine"); code != 200 || st.Owner != "alice" {
		t.Errorf("/w/mine made through the gateway: HTTP %d, owner %q, want alice", code, st.Owner)
	}
	// A cancelled token works nowhere, the blockd included.
	other := alice.token(t, metad)
	if code, body, _ := alice.do(t, "PUT", metad+"/webhdfs/v1/?op=CANCELDELEGATIONTOKEN&token="+other, nil); code != 200 {
		t.Fatalf("CANCELDELEGATIONTOKEN: HTTP %d %s", code, body)
	}
	for _, base := range []string{metad, gw, blockd} {
		code, body, _ := anon.do(t, "GET", base+"/webhdfs/v1/w?op=GETFILESTATUS&delegation="+other, nil)
		wantRemote(t, base+": GETFILESTATUS by a cancelled token", code, body, 401, "SecurityException")
	}
}

// whHostilePaths: a path with "..", "." or "//" (plain or
// percent-encoded), a NUL, bad UTF-8 or too long is 400 and changes
// nothing: before, the ServeMux in front of the API answered 301 to the
// cleaned path, which `curl -L -X DELETE` then deleted.
func whHostilePaths(t *testing.T, alice whClient, metad, gw string) {
	for _, base := range []string{metad, gw} {
		if code, body, _ := alice.do(t, "PUT", base+"/webhdfs/v1/w/keep?op=MKDIRS", nil); code != 200 {
			t.Fatalf("MKDIRS /w/keep: HTTP %d %s", code, body)
		}
		for _, p := range []string{"/w/x/../keep", "/w/x/%2e%2e/keep", "/w/./keep", "/w//keep", "/w/%00", "/w/%ff", "/w/" + strings.Repeat("n", 300), "/w/x/.."} {
			code, body, loc := alice.do(t, "DELETE", base+"/webhdfs/v1"+p+"?op=DELETE&recursive=true", nil)
			if code != 400 || !strings.Contains(body, "RemoteException") || loc != "" {
				t.Errorf("%s: DELETE %s: HTTP %d %s (Location %q), want 400 RemoteException", base, p, code, body, loc)
			}
		}
		if code, _ := alice.status(t, base, "/w/keep"); code != 200 {
			t.Errorf("%s: /w/keep is gone (HTTP %d)", base, code)
		}
		if code, body, _ := alice.do(t, "DELETE", base+"/webhdfs/v1/w/keep?op=DELETE", nil); code != 200 {
			t.Fatalf("DELETE /w/keep: HTTP %d %s", code, body)
		}
	}
}

// whHostileHeader: a header over 64 KiB is refused (431), as Hadoop's
// HTTP server refuses one, before any credential is looked at.
func whHostileHeader(t *testing.T, alice whClient, metad, gw string) {
	for _, base := range []string{metad, gw} {
		req, err := http.NewRequest("GET", base+"/webhdfs/v1/?op=GETFILESTATUS", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Pad", strings.Repeat("a", 100<<10))
		resp, err := alice.hc.Do(req)
		if err != nil {
			// Plain HTTP: the server answers 431 and closes while the
			// client still sends; the client sees the reset.
			if alice.conf == nil && strings.Contains(err.Error(), "connection reset") {
				continue
			}
			t.Fatalf("%s: a 100 KiB header: %v", base, err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("%s: a 100 KiB header: HTTP %d, want 431", base, resp.StatusCode)
		}
	}
}

// whHostileStall: an upload whose client sends part of its body and then
// nothing is cut off, at a blockd (after its idle timeout) and at the
// gateway (after --body-timeout); the file is closed with the bytes that
// arrived, so that it can be read and appended to at once. Before, the
// writer waited forever, holding the file's lease.
func whHostileStall(t *testing.T, alice whClient, metad, gw string) {
	part := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB of a promised 1 MiB
	for _, tc := range []struct{ name, path, via string }{
		{"blockd", "/w/stall-blockd", metad},
		{"httpfs", "/w/stall-httpfs", gw},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The datanode URL, as a client that follows the redirect
			// would reach it.
			code, body, loc := alice.do(t, "PUT", tc.via+"/webhdfs/v1"+tc.path+"?op=CREATE", nil)
			if code != 307 || loc == "" {
				t.Fatalf("CREATE: HTTP %d %s, want 307", code, body)
			}
			u, err := url.Parse(loc)
			if err != nil {
				t.Fatal(err)
			}
			conn, err := alice.dial(u.Host)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			fmt.Fprintf(conn, "PUT %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n", u.RequestURI(), u.Host, 1<<20)
			if _, err := conn.Write(part); err != nil {
				t.Fatal(err)
			}
			// Nothing more is sent: the server must end the exchange. A
			// generous bound keeps a server that waits forever from
			// hanging the suite.
			_ = conn.SetReadDeadline(time.Now().Add(90 * time.Second))
			_, err = io.Copy(io.Discard, bufio.NewReader(conn))
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("the server still waits for the body: %v", err)
			}
			// The file is closed with what arrived: its bytes read back, and
			// it takes an append at once (no lease is held).
			code, st := alice.status(t, metad, tc.path)
			if code != 200 || st.Length != int64(len(part)) {
				t.Fatalf("after the stall: HTTP %d, length %d, want %d", code, st.Length, len(part))
			}
			code, got, loc := alice.do(t, "GET", metad+"/webhdfs/v1"+tc.path+"?op=OPEN", nil)
			if code == 307 {
				code, got, _ = alice.do(t, "GET", loc, nil)
			}
			if code != 200 || got != string(part) {
				t.Fatalf("OPEN after the stall: HTTP %d, %d bytes", code, len(got))
			}
			code, body, loc = alice.do(t, "POST", metad+"/webhdfs/v1"+tc.path+"?op=APPEND", nil)
			if code == 307 {
				code, body, _ = alice.do(t, "POST", loc, strings.NewReader("tail"))
			}
			if code != 200 {
				t.Fatalf("APPEND after the stall: HTTP %d %s", code, body)
			}
		})
	}
}

// whHostileStalledReader: a client that asks the gateway for a file and
// stops reading is cut off once a write has waited --body-timeout; it
// gets less than the file when it reads again. Before, the gateway
// waited forever with the file open.
func whHostileStalledReader(t *testing.T, alice whClient, gw string) {
	const size = 32 << 20 // far more than the sockets buffer
	data := bytes.Repeat([]byte("stalled reader. "), size/16)
	code, body, loc := alice.do(t, "PUT", gw+"/webhdfs/v1/w/big?op=CREATE&overwrite=true", nil)
	if code != 307 {
		t.Fatalf("CREATE: HTTP %d %s", code, body)
	}
	if code, body, _ = alice.do(t, "PUT", loc, bytes.NewReader(data)); code != 201 {
		t.Fatalf("CREATE data: HTTP %d %s", code, body)
	}
	u, err := url.Parse(gw + "/webhdfs/v1/w/big?op=OPEN")
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if alice.conf == nil {
		q.Set("user.name", "alice")
	}
	u.RawQuery = q.Encode()
	conn, err := alice.dial(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", u.RequestURI(), u.Host)
	// Read nothing for twice the gateway's timeout: its writes block.
	time.Sleep(5 * time.Second)
	_ = conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	n, err := io.Copy(io.Discard, conn)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("after %d bytes, the gateway neither sends nor closes: %v", n, err)
	}
	if n >= size {
		t.Fatalf("a reader that stopped for twice --body-timeout got all %d bytes (%d): the gateway waited for it", size, n)
	}
}

// whHostileParallel: clients creating and reading their own files
// through the gateway at once each get their own bytes back.
func whHostileParallel(t *testing.T, alice whClient, gw string) {
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- whParallelOne(alice, gw, i)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func whParallelOne(w whClient, gw string, i int) error {
	path := fmt.Sprintf("/w/par-%d", i)
	data := bytes.Repeat([]byte{byte('a' + i)}, 200<<10+i)
	req := func(method, u string, body []byte) (int, string, string, error) {
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		r, err := http.NewRequest(method, u, rd)
		if err != nil {
			return 0, "", "", err
		}
		resp, err := w.hc.Do(r)
		if err != nil {
			return 0, "", "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header.Get("Location"), err
	}
	code, body, loc, err := req("PUT", gw+"/webhdfs/v1"+path+"?op=CREATE&overwrite=true", nil)
	if err != nil || code != 307 {
		return fmt.Errorf("%s: CREATE: HTTP %d %s %v", path, code, body, err)
	}
	if code, body, _, err = req("PUT", loc, data); err != nil || code != 201 {
		return fmt.Errorf("%s: CREATE data: HTTP %d %s %v", path, code, body, err)
	}
	if code, body, _, err = req("GET", gw+"/webhdfs/v1"+path+"?op=OPEN", nil); err != nil || code != 200 || body != string(data) {
		return fmt.Errorf("%s: OPEN: HTTP %d, %d bytes (want %d) %v", path, code, len(body), len(data), err)
	}
	return nil
}
