package tests

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"cairn/client"
	"cairn/tests/cluster"
	"cairn/trust"
)

// TestWebHDFS drives WebHDFS with real clients, curl -L, Python fsspec's
// WebHDFS filesystem and the npm webhdfs package, at metad's HTTP port (307 to a blockd) and
// through `cairn httpfs`, on a secure cluster (curl with a client
// certificate, fsspec and npm with a delegation token) and on an insecure one
// (user.name): each makes a directory, creates, lists, stats, reads,
// reads a range, appends, renames and deletes, and the bytes match what
// the mount shows.
func TestWebHDFS(t *testing.T) {
	RequireFUSE(t)
	for _, secure := range []bool{true, false} {
		name := "secure"
		if !secure {
			name = "insecure"
		}
		t.Run(name, func(t *testing.T) {
			c := cluster.Start(t, cluster.Config{Blockds: 2, Replication: 2, Insecure: !secure})
			mnt := c.Mount(t)
			// A directory everyone may write, made as the superuser.
			if err := os.Mkdir(filepath.Join(mnt, "w"), 0o777); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(filepath.Join(mnt, "w"), 0o777); err != nil {
				t.Fatal(err)
			}
			w := whClients(t, c, secure)
			endpoints := map[string]string{"metad": c.MetadHTTPAddr(), "httpfs": c.StartHTTPFS(t)}
			for ep, addr := range endpoints {
				t.Run("curl-"+ep, func(t *testing.T) { whCurl(t, w, addr, mnt, "/w/curl-"+ep) })
				t.Run("fsspec-"+ep, func(t *testing.T) { whFsspec(t, w, addr, mnt, "/w/fsspec-"+ep) })
				t.Run("npm-"+ep, func(t *testing.T) { whNpm(t, w, addr, mnt, "/w/npm-"+ep) })
				t.Run("concat-"+ep, func(t *testing.T) { whConcat(t, c, w, addr, mnt, "/w/concat-"+ep, ep == "metad") })
			}
			t.Run("errors", func(t *testing.T) { whErrors(t, w, c.MetadHTTPAddr()) })
			t.Run("httpfs-metrics", func(t *testing.T) { whMetrics(t, w, endpoints["httpfs"]) })
			if secure {
				t.Run("delegation", func(t *testing.T) { whDelegation(t, c, w, endpoints["httpfs"]) })
			}
		})
	}
}

// whAuth is how the test's clients authenticate: a user certificate
// (curl) and a delegation token (fsspec) on a secure cluster, user.name
// on an insecure one.
type whAuth struct {
	secure   bool
	user     string
	curlArgs []string // -k --cert --key
	token    string
}

func whClients(t *testing.T, c *cluster.Cluster, secure bool) whAuth {
	w := whAuth{secure: secure, user: "alice"}
	if !secure {
		return w
	}
	dir := t.TempDir()
	c.IssueCert(t, trust.Peer{Role: trust.RoleUser, Name: w.user}, dir)
	w.curlArgs = []string{"-k", "--cert", filepath.Join(dir, trust.CertFile), "--key", filepath.Join(dir, trust.KeyFile)}
	cl, err := client.Dial(c.MetadAddr(), client.Options{Creds: trust.NewHolder(mustLoadCreds(t, dir))})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if w.token, _, _, err = cl.Delegations().GetDelegationToken(ctx, ""); err != nil {
		t.Fatal(err)
	}
	return w
}

func mustLoadCreds(t *testing.T, dir string) *trust.Creds {
	cr, err := trust.LoadCreds(dir)
	if err != nil {
		t.Fatal(err)
	}
	return cr
}

// url is the WebHDFS URL of path with op and more parameters, with the
// caller's user.name on an insecure cluster.
func (w whAuth) url(addr, path, op string, more ...string) string {
	scheme := "http"
	if w.secure {
		scheme = "https"
	}
	q := "op=" + op
	if !w.secure {
		q += "&user.name=" + w.user
	}
	for _, m := range more {
		q += "&" + m
	}
	return scheme + "://" + addr + "/webhdfs/v1" + path + "?" + q
}

// curl runs curl -sS -L with the caller's certificate and returns its
// output and the HTTP status (-w).
func (w whAuth) curl(t *testing.T, args ...string) (string, string) {
	t.Helper()
	body, code, err := w.curlRun(args...)
	if err != nil {
		t.Fatal(err)
	}
	return body, code
}

// curlRun is curl without a test: for goroutines.
func (w whAuth) curlRun(args ...string) (body, code string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	all := append(append([]string{"-sS", "-L", "-w", "\n%{http_code}"}, w.curlArgs...), args...)
	out, err := exec.CommandContext(ctx, "curl", all...).Output()
	if err != nil {
		return "", "", fmt.Errorf("curl %s: %w", strings.Join(args, " "), err)
	}
	s := string(out)
	i := strings.LastIndexByte(s, '\n')
	return strings.TrimSuffix(s[:i], "\n"), s[i+1:], nil
}

func whCurl(t *testing.T, w whAuth, addr, mnt, dir string) {
	want := func(what string, r [3]string) string {
		t.Helper()
		if r[1] != r[2] {
			t.Fatalf("%s: HTTP %s, want %s: %s", what, r[1], r[2], r[0])
		}
		return r[0]
	}
	body := want("MKDIRS", w.curlOut(t, "-X", "PUT", w.url(addr, dir, "MKDIRS", "permission=755")))
	if body != `{"boolean":true}` {
		t.Fatalf("MKDIRS answered %s", body)
	}
	src := filepath.Join(t.TempDir(), "src")
	content := bytes.Repeat([]byte("0123456789abcdef"), 40000) // 640 000 bytes
	if err := os.WriteFile(src, content, 0o644); err != nil {
		t.Fatal(err)
	}
	want("CREATE", w.curlOut(t, "-X", "PUT", "-T", src, w.url(addr, dir+"/a.bin", "CREATE", "overwrite=false")))
	var ls struct {
		FileStatuses struct{ FileStatus []map[string]any }
	}
	body = want("LISTSTATUS", w.curlOut(t, w.url(addr, dir, "LISTSTATUS")))
	if err := json.Unmarshal([]byte(body), &ls); err != nil || len(ls.FileStatuses.FileStatus) != 1 || ls.FileStatuses.FileStatus[0]["pathSuffix"] != "a.bin" {
		t.Fatalf("LISTSTATUS: %s (%v)", body, err)
	}
	var st struct{ FileStatus map[string]any }
	body = want("GETFILESTATUS", w.curlOut(t, w.url(addr, dir+"/a.bin", "GETFILESTATUS")))
	if err := json.Unmarshal([]byte(body), &st); err != nil || st.FileStatus["length"] != float64(len(content)) || st.FileStatus["type"] != "FILE" ||
		st.FileStatus["owner"] != w.user || st.FileStatus["permission"] != "644" {
		t.Fatalf("GETFILESTATUS: %s (%v)", body, err)
	}
	if got := want("OPEN", w.curlOut(t, w.url(addr, dir+"/a.bin", "OPEN"))); got != string(content) {
		t.Fatalf("OPEN read %d bytes, want %d", len(got), len(content))
	}
	if got := want("OPEN range", w.curlOut(t, w.url(addr, dir+"/a.bin", "open", "offset=100003", "length=20"))); got != string(content[100003:100023]) {
		t.Fatalf("OPEN offset=100003 length=20 read %q", got)
	}
	// GETFILECHECKSUM (307 to a blockd): the same bytes written through
	// the mount have the same checksum, named by its algorithm.
	if err := os.WriteFile(filepath.Join(mnt, dir, "copy.bin"), content, 0o644); err != nil {
		t.Fatal(err)
	}
	sumOf := func(p string) map[string]any {
		t.Helper()
		body := want("GETFILECHECKSUM", w.curlOut(t, w.url(addr, p, "GETFILECHECKSUM")))
		var fc struct{ FileChecksum map[string]any }
		if err := json.Unmarshal([]byte(body), &fc); err != nil || fc.FileChecksum == nil {
			t.Fatalf("GETFILECHECKSUM %s: %s (%v)", p, body, err)
		}
		return fc.FileChecksum
	}
	sa, sc := sumOf(dir+"/a.bin"), sumOf(dir+"/copy.bin")
	if alg, _ := sa["algorithm"].(string); !strings.HasPrefix(alg, "HH64-COMPOSITE-") || sa["length"] != float64(8) ||
		sa["bytes"] != sc["bytes"] || sa["algorithm"] != sc["algorithm"] {
		t.Fatalf("GETFILECHECKSUM of equal files: %v and %v", sa, sc)
	}
	more := []byte("appended through WebHDFS\n")
	if err := os.WriteFile(src, more, 0o644); err != nil {
		t.Fatal(err)
	}
	want("APPEND", w.curlOut(t, "-X", "POST", "-T", src, w.url(addr, dir+"/a.bin", "APPEND")))
	body = want("RENAME", w.curlOut(t, "-X", "PUT", w.url(addr, dir+"/a.bin", "RENAME", "destination="+dir+"/b.bin")))
	if body != `{"boolean":true}` {
		t.Fatalf("RENAME answered %s", body)
	}
	got, err := os.ReadFile(filepath.Join(mnt, dir, "b.bin"))
	if err != nil || !bytes.Equal(got, append(content, more...)) {
		t.Fatalf("the mount shows %d bytes (%v), want %d", len(got), err, len(content)+len(more))
	}
	body = want("DELETE", w.curlOut(t, "-X", "DELETE", w.url(addr, dir, "DELETE", "recursive=true")))
	if body != `{"boolean":true}` {
		t.Fatalf("DELETE answered %s", body)
	}
	whGone(t, mnt, dir)
}

// curlOut is curl's body and status, then the status wanted of a success
// ("201" for CREATE, "200" else).
func (w whAuth) curlOut(t *testing.T, args ...string) [3]string {
	t.Helper()
	body, code := w.curl(t, args...)
	wantCode := "200"
	if strings.Contains(args[len(args)-1], "op=CREATE") {
		wantCode = "201"
	}
	return [3]string{body, code, wantCode}
}

// whFsspec runs testdata/webhdfs_fsspec.py against addr in dir, and
// compares what it wrote with what mnt shows (mnt "": no mount).
func whFsspec(t *testing.T, w whAuth, addr, mnt, dir string) {
	host, port, _ := net.SplitHostPort(addr)
	https, user := "0", w.user
	if w.secure {
		https, user = "1", ""
	}
	run := func(mode string) []byte {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "/usr/bin/python3", "testdata/webhdfs_fsspec.py", host, port, https, w.token, user, dir, mode)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("fsspec %s: %v\n%s", mode, err, stderr.String())
		}
		return out
	}
	var r struct {
		Names, Renamed          []string
		Size                    int64
		Type, Data, Part, After string
	}
	if err := json.Unmarshal(run("write"), &r); err != nil {
		t.Fatal(err)
	}
	const first, second = "hello from fsspec\n", "appended\n"
	if strings.Join(r.Names, ",") != "a.txt" || r.Size != int64(len(first)) || r.Type != "file" || r.Data != first ||
		r.Part != first[6:10] || r.After != first+second || strings.Join(r.Renamed, ",") != "b.txt" {
		t.Fatalf("fsspec saw %+v", r)
	}
	if mnt == "" { // no mount: the script's own reads and its check after the delete
		run("delete")
		return
	}
	got, err := os.ReadFile(filepath.Join(mnt, dir, "b.txt"))
	if err != nil || string(got) != first+second {
		t.Fatalf("the mount shows %q (%v), want %q", got, err, first+second)
	}
	run("delete")
	whGone(t, mnt, dir)
}

// whNpm runs testdata/npm-webhdfs/run.js with the npm webhdfs package.
func whNpm(t *testing.T, w whAuth, addr, mnt, dir string) {
	modules := npmWebhdfs(t)
	host, port, _ := net.SplitHostPort(addr)
	proto, user := "http", w.user
	if w.secure {
		proto, user = "https", ""
	}
	run := func(mode string) []byte {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "node", "testdata/npm-webhdfs/run.js", proto, host, port, w.token, user, dir, mode)
		cmd.Env = append(os.Environ(), "NODE_PATH="+modules)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("npm webhdfs %s: %v\n%s", mode, err, stderr.String())
		}
		return out
	}
	var r struct {
		Names, Renamed          []string
		Size                    int64
		Type, Data, Part, After string
	}
	if err := json.Unmarshal(run("write"), &r); err != nil {
		t.Fatal(err)
	}
	const first, second = "hello from npm webhdfs\n", "appended by npm\n"
	if strings.Join(r.Names, ",") != "a.txt" || r.Size != int64(len(first)) || r.Type != "FILE" || r.Data != first ||
		r.Part != first[6:10] || r.After != first+second || strings.Join(r.Renamed, ",") != "b.txt" {
		t.Fatalf("npm webhdfs saw %+v", r)
	}
	if mnt == "" { // no mount: the script's own reads and its check after the delete
		run("delete")
		return
	}
	got, err := os.ReadFile(filepath.Join(mnt, dir, "b.txt"))
	if err != nil || string(got) != first+second {
		t.Fatalf("the mount shows %q (%v), want %q", got, err, first+second)
	}
	run("delete")
	whGone(t, mnt, dir)
}

var npmOnce struct {
	sync.Once
	dir string
	err error
}

// npmWebhdfs installs the npm webhdfs package pinned by
// testdata/npm-webhdfs/package-lock.json (npm ci) once into the user's
// cache directory, keyed by the lock file's hash, and returns its
// node_modules.
func npmWebhdfs(t *testing.T) string {
	t.Helper()
	npmOnce.Do(func() {
		lock, err := os.ReadFile("testdata/npm-webhdfs/package-lock.json")
		if err != nil {
			npmOnce.err = err
			return
		}
		cache, err := os.UserCacheDir()
		if err != nil {
			cache = os.TempDir()
		}
		sum := sha256.Sum256(lock)
		dir := filepath.Join(cache, "cairn-tests", "npm-webhdfs-"+hex.EncodeToString(sum[:6]))
		npmOnce.dir = filepath.Join(dir, "node_modules")
		if _, err := os.Stat(filepath.Join(npmOnce.dir, "webhdfs", "package.json")); err == nil {
			return
		}
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			npmOnce.err = err
			return
		}
		tmp, err := os.MkdirTemp(filepath.Dir(dir), "npm-install-")
		if err != nil {
			npmOnce.err = err
			return
		}
		defer os.RemoveAll(tmp)
		for _, f := range []string{"package.json", "package-lock.json"} {
			b, err := os.ReadFile(filepath.Join("testdata/npm-webhdfs", f))
			if err == nil {
				err = os.WriteFile(filepath.Join(tmp, f), b, 0o644)
			}
			if err != nil {
				npmOnce.err = err
				return
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts")
		cmd.Dir = tmp
		if out, err := cmd.CombinedOutput(); err != nil {
			npmOnce.err = fmt.Errorf("npm ci: %v\n%s", err, out)
			return
		}
		_ = os.RemoveAll(dir)
		npmOnce.err = os.Rename(tmp, dir)
	})
	if npmOnce.err != nil {
		t.Fatal(npmOnce.err)
	}
	return npmOnce.dir
}

// whGone checks the mount's listing of dir's parent no longer shows it
// (a listing asks metad; a lookup may be answered from the kernel's
// cache for a while).
func whGone(t *testing.T, mnt, dir string) {
	t.Helper()
	es, err := os.ReadDir(filepath.Join(mnt, filepath.Dir(dir)))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if e.Name() == filepath.Base(dir) {
			t.Fatalf("after the delete the mount lists %s", dir)
		}
	}
}

// whMetrics: httpfs's /metrics parses as Prometheus text and counted
// the runs above.
func whMetrics(t *testing.T, w whAuth, addr string) {
	scheme := "http"
	if w.secure {
		scheme = "https"
	}
	body, code := w.curl(t, scheme+"://"+addr+"/metrics")
	if code != "200" {
		t.Fatalf("/metrics: HTTP %s: %s", code, body)
	}
	fams, err := textParser().TextToMetricFamilies(strings.NewReader(body + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	sum := func(name, op string) float64 {
		var n float64
		for _, m := range fams[name].GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "op" && (op == "" || l.GetValue() == op) {
					n += m.GetCounter().GetValue() + float64(m.GetHistogram().GetSampleCount())
				}
			}
			if op == "" && len(m.GetLabel()) == 0 {
				n += m.GetCounter().GetValue()
			}
		}
		return n
	}
	if sum("cairn_httpfs_requests_total", "CREATE") < 2 || sum("cairn_httpfs_request_duration_seconds", "OPEN") < 1 ||
		sum("cairn_httpfs_received_bytes_total", "") < 640000 || sum("cairn_httpfs_sent_bytes_total", "") < 640000 {
		t.Fatalf("httpfs /metrics did not count the runs:\n%s", body)
	}
}

// whDelegation: GETDELEGATIONTOKEN with a certificate, the token then
// authenticates a client without one; RENEWDELEGATIONTOKEN answers the
// new expiry; a token cannot get another; after CANCELDELEGATIONTOKEN it
// is refused. A blockd's WebHDFS needs a token; `cairn fetchdt` writes
// one to a file.
func whDelegation(t *testing.T, c *cluster.Cluster, w whAuth, httpfs string) {
	addr := c.MetadHTTPAddr()
	body, code := w.curl(t, w.url(addr, "/", "GETDELEGATIONTOKEN", "renewer=alice"))
	var tk struct{ Token struct{ URLString string } }
	if code != "200" || json.Unmarshal([]byte(body), &tk) != nil || tk.Token.URLString == "" {
		t.Fatalf("GETDELEGATIONTOKEN: HTTP %s %s", code, body)
	}
	tok := tk.Token.URLString
	anon := whAuth{secure: true, curlArgs: []string{"-k"}}
	if body, code := anon.curl(t, w.url(addr, "/w", "GETFILESTATUS", "delegation="+tok)); code != "200" || !strings.Contains(body, `"type":"DIRECTORY"`) {
		t.Fatalf("GETFILESTATUS by the token: HTTP %s %s", code, body)
	}
	if body, code := anon.curl(t, w.url(addr, "/", "GETHOMEDIRECTORY", "delegation="+tok)); code != "200" || body != `{"Path":"/user/alice"}` {
		t.Fatalf("GETHOMEDIRECTORY by the token: HTTP %s %s", code, body)
	}
	if body, code := anon.curl(t, w.url(addr, "/", "GETDELEGATIONTOKEN", "delegation="+tok)); code != "403" || !strings.Contains(body, "RemoteException") {
		t.Fatalf("GETDELEGATIONTOKEN by a token: HTTP %s %s, want 403", code, body)
	}
	if body, code := w.curl(t, "-X", "PUT", w.url(addr, "/", "RENEWDELEGATIONTOKEN", "token="+tok)); code != "200" || !strings.HasPrefix(body, `{"long":`) {
		t.Fatalf("RENEWDELEGATIONTOKEN: HTTP %s %s", code, body)
	}
	// A blockd's WebHDFS without a token: 401 SecurityException.
	body, code = w.curl(t, "-X", "PUT", w.url(addr, "/w/nr", "CREATE", "noredirect=true"))
	var loc struct{ Location string }
	if code != "200" || json.Unmarshal([]byte(body), &loc) != nil || !strings.Contains(loc.Location, "delegation=") {
		t.Fatalf("CREATE noredirect=true: HTTP %s %s", code, body)
	}
	u, err := url.Parse(loc.Location)
	if err != nil {
		t.Fatal(err)
	}
	bare := "https://" + u.Host + u.Path + "?op=OPEN"
	if body, code := w.curl(t, bare); code != "401" || !strings.Contains(body, "SecurityException") {
		t.Fatalf("a blockd's OPEN without a token: HTTP %s %s, want 401", code, body)
	}
	if body, code := w.curl(t, "-X", "PUT", w.url(addr, "/", "CANCELDELEGATIONTOKEN", "token="+tok)); code != "200" {
		t.Fatalf("CANCELDELEGATIONTOKEN: HTTP %s %s", code, body)
	}
	for _, a := range []string{addr, httpfs} {
		if body, code := anon.curl(t, w.url(a, "/", "GETHOMEDIRECTORY", "delegation="+tok)); code != "401" {
			t.Fatalf("%s: GETHOMEDIRECTORY by a cancelled token: HTTP %s %s, want 401", a, code, body)
		}
	}
	file := filepath.Join(t.TempDir(), "dt")
	if out, code := c.Run(t, "fetchdt", file); code != 0 || !strings.Contains(out, "Fetched token") {
		t.Fatalf("cairn fetchdt: exit %d: %s", code, out)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if body, code := anon.curl(t, w.url(addr, "/w", "LISTSTATUS", "delegation="+strings.TrimSpace(string(b)))); code != "200" {
		t.Fatalf("LISTSTATUS by fetchdt's token: HTTP %s %s", code, body)
	}
}

// whErrors: bad requests get Hadoop's RemoteException JSON and status.
func whErrors(t *testing.T, w whAuth, addr string) {
	for _, tc := range []struct {
		args      []string
		code, exc string
	}{
		{[]string{w.url(addr, "/nope", "GETFILESTATUS")}, "404", "FileNotFoundException"},
		{[]string{w.url(addr, "/", "NOSUCHOP")}, "400", "IllegalArgumentException"},
		{[]string{"-X", "POST", w.url(addr, "/w", "TRUNCATE", "newlength=0")}, "400", "UnsupportedOperationException"},
		{[]string{"-X", "PUT", w.url(addr, "/x", "MKDIRS")}, "403", "AccessControlException"},
		{[]string{w.url(addr, "/w", "OPEN", "offset=-1")}, "400", "IllegalArgumentException"},
	} {
		body, code := w.curl(t, tc.args...)
		var re struct {
			RemoteException struct{ Exception, JavaClassName, Message string }
		}
		if code != tc.code || json.Unmarshal([]byte(body), &re) != nil || re.RemoteException.Exception != tc.exc || re.RemoteException.JavaClassName == "" {
			t.Errorf("%v: HTTP %s %s, want %s with %s", tc.args, code, body, tc.code, tc.exc)
		}
	}
}
