package tests

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"cairn"
	"cairn/client"
	"cairn/rpc"
	"cairn/tests/cluster"
	"cairn/trust"
)

// TestAttacksOnTheControlPlane tries, against a running secure cluster,
// what anyone who reaches metad's ports could do before the cluster had a
// CA: call without a certificate or in plain text, with a self-signed
// certificate, with a certificate of the wrong role (a mount registering
// as a blockd, a blockd speaking for another, a user asking for a
// checkpoint or naming itself root), with expired, reused or forged join
// tokens, a revoked certificate, and a checkpoint outside metad's
// checkpoint directory; and the
// HTTP port without a certificate. Each is refused with a clear error;
// afterwards the cluster still serves, every file's bytes are unchanged
// and fsck is HEALTHY.
func TestAttacksOnTheControlPlane(t *testing.T) {
	c := cluster.Start(t, cluster.Config{})
	ctx := context.Background()
	cl, err := client.Dial(c.MetadAddr(), client.Options{Creds: c.ClientCreds()})
	must(t, err)
	defer cl.Close()
	files := map[string][]byte{}
	for i, n := range []int{0, 1, 100 << 10, 1 << 20} {
		b := bytes.Repeat([]byte(fmt.Sprintf("file %d ", i)), n/7+1)[:n]
		p := fmt.Sprintf("/f%d", i)
		attackPut(t, cl, p, b)
		files[p] = b
	}
	must(t, cl.NS.Mkdir(ctx, "/private", 0o700))
	attackPut(t, cl, "/private/secret", []byte("secret"))
	files["/private/secret"] = []byte("secret")
	sums := checksums(t, cl, files)

	dial := func(h *trust.Holder, id *cairn.Identity) *grpc.ClientConn {
		t.Helper()
		opts := []grpc.DialOption{rpc.Transport(h)}
		if id != nil {
			opts = append(opts, grpc.WithUnaryInterceptor(rpc.IdentityInterceptor(*id)))
		}
		conn, err := grpc.NewClient(c.MetadAddr(), opts...)
		must(t, err)
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	refused := func(what string, err error, want string) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v; want refused with %q", what, err, want)
		} else {
			t.Logf("%s: refused: %v", what, err)
		}
	}
	certDir := func(name string) string { return filepath.Join(t.TempDir(), name) }
	someNode := cairn.Node{StorageID: c.BlockdStorageID(0), DataAddr: "127.0.0.1:1"}

	t.Run("plain text", func(t *testing.T) {
		_, err := rpc.NewNamespaceClient(dial(nil, nil)).Stat(ctx, "/private/secret")
		if err == nil {
			t.Fatal("a plain-text call was answered")
		}
		t.Logf("refused: %v", err)
	})
	t.Run("TLS without a certificate", func(t *testing.T) {
		conn, err := grpc.NewClient(c.MetadAddr(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
			MinVersion: tls.VersionTLS13, InsecureSkipVerify: true})))
		must(t, err)
		defer conn.Close()
		_, err = rpc.NewNamespaceClient(conn).Stat(ctx, "/private/secret")
		refused("no certificate, Stat", err, "no client certificate")
		_, err = rpc.NewRegistryClient(conn).Register(ctx, cairn.Registration{Node: someNode, NamespaceID: "x"})
		refused("no certificate, Register", err, "no client certificate")
	})
	t.Run("self-signed certificate", func(t *testing.T) {
		other, err := trust.CreateCA(certDir("ca"), "evil")
		must(t, err)
		key, _ := trust.NewKey()
		der, err := other.Issue(key.Public(), trust.Peer{Role: trust.RoleAdmin, Name: "root"}, time.Hour, nil)
		must(t, err)
		forged, err := trust.SaveCreds(certDir("forged"), key, der, other.Cert.Raw)
		must(t, err)
		// The client skips checking metad and always sends its
		// certificate, so only metad can refuse.
		conn, err := grpc.NewClient(c.MetadAddr(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
			MinVersion: tls.VersionTLS13, InsecureSkipVerify: true,
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return forged.TLS(), nil }})))
		must(t, err)
		defer conn.Close()
		// Refused at the handshake: the client sees TLS's alert, or the
		// connection closed under its write, never an answer of metad's.
		err = rpc.NewNamespaceClient(conn).Checkpoint(ctx, "evil")
		if !errors.Is(err, cairn.ErrUnavailable) || strings.Contains(err.Error(), "no client certificate") {
			t.Errorf("a certificate of another CA: %v; want the connection refused", err)
		} else {
			t.Logf("a certificate of another CA: refused: %v", err)
		}
	})
	t.Run("mount certificate calls Register", func(t *testing.T) {
		m := trust.NewHolder(c.IssueCert(t, trust.Peer{Role: trust.RoleMount, Name: "somehost"}, certDir("mount")))
		_, err := rpc.NewRegistryClient(dial(m, nil)).Register(ctx, cairn.Registration{Node: someNode, NamespaceID: "x"})
		refused("mount Register", err, "only a blockd certificate may call the registry")
		_, err = rpc.NewRegistryClient(dial(m, nil)).Heartbeat(ctx, cairn.Heartbeat{StorageID: someNode.StorageID, Capacity: 1 << 40, Remaining: 1 << 40})
		refused("mount Heartbeat", err, "only a blockd certificate may call the registry")
	})
	t.Run("blockd speaks for another", func(t *testing.T) {
		b := trust.NewHolder(c.IssueCert(t, trust.Peer{Role: trust.RoleBlockd, Name: "DS-fake"}, certDir("blockd")))
		reg := rpc.NewRegistryClient(dial(b, nil))
		_, err := reg.Register(ctx, cairn.Registration{Node: someNode, NamespaceID: "x"})
		refused("blockd DS-fake registers as another", err, "may speak only for itself")
		err = reg.BlockReport(ctx, someNode.StorageID, nil)
		refused("blockd DS-fake reports for another", err, "may speak only for itself")
		err = reg.BadReplicasFound(ctx, someNode.StorageID, nil)
		refused("blockd DS-fake reports bad replicas for another", err, "may speak only for itself")
		_, err = rpc.NewNamespaceClient(dial(b, nil)).Stat(ctx, "/")
		refused("blockd calls the namespace", err, "namespace calls need a mount, user or admin certificate")
	})
	alice := trust.NewHolder(c.IssueCert(t, trust.Peer{Role: trust.RoleUser, Name: "alice"}, certDir("alice")))
	t.Run("user certificate asks for a checkpoint", func(t *testing.T) {
		err := rpc.NewNamespaceClient(dial(alice, nil)).Checkpoint(ctx, "x")
		refused("user Checkpoint", err, "an admin operation needs an admin certificate")
		_, err = rpc.NewNamespaceClient(dial(alice, nil)).Report(ctx)
		refused("user Report", err, "an admin operation needs an admin certificate")
		_, _, err = rpc.NewTrustClient(dial(alice, nil)).IssueJoinToken(ctx, trust.RoleBlockd, "", time.Hour)
		refused("user IssueJoinToken", err, "an admin operation needs an admin certificate")
	})
	t.Run("user and blockd certificates change the metad group", func(t *testing.T) {
		err := rpc.NewNamespaceClient(dial(alice, nil)).AddMetad(ctx, "127.0.0.1:1")
		refused("user AddMetad", err, "adding a metad to the group needs an admin or a metad certificate")
		err = rpc.NewNamespaceClient(dial(alice, nil)).RemoveMetad(ctx, "127.0.0.1:1")
		refused("user RemoveMetad", err, "an admin operation needs an admin certificate")
		b := trust.NewHolder(c.IssueCert(t, trust.Peer{Role: trust.RoleBlockd, Name: "DS-group"}, certDir("blockd-group")))
		err = rpc.NewNamespaceClient(dial(b, nil)).AddMetad(ctx, "127.0.0.1:1")
		refused("blockd AddMetad", err, "adding a metad to the group needs an admin or a metad certificate")
	})
	t.Run("user asserts cairn-user root", func(t *testing.T) {
		ns := rpc.NewNamespaceClient(dial(alice, &cairn.Identity{User: "root", Groups: []string{"root", "supergroup"}}))
		_, err := ns.Stat(ctx, "/private/secret")
		refused("alice as root", err, `may not speak for "root"`)
		err = ns.Delete(ctx, "/private", true)
		refused("alice as root deletes", err, `may not speak for "root"`)
		// As herself, alice is held to the permission bits.
		_, err = rpc.NewNamespaceClient(dial(alice, nil)).Stat(ctx, "/private/secret")
		refused("alice stats a 0700 directory of root's", err, "user=alice")
	})
	t.Run("renew another's certificate", func(t *testing.T) {
		key, _ := trust.NewKey()
		csr, _ := trust.NewCSR(key, trust.Peer{Role: trust.RoleAdmin, Name: "alice"})
		_, _, err := rpc.NewTrustClient(dial(alice, nil)).RenewCert(ctx, csr)
		refused("alice renews as an admin", err, "may renew only itself")
	})
	t.Run("revoked certificate", func(t *testing.T) {
		carol := c.IssueCert(t, trust.Peer{Role: trust.RoleAdmin, Name: "carol"}, certDir("carol"))
		conn := dial(trust.NewHolder(carol), nil)
		if _, err := rpc.NewNamespaceClient(conn).Stat(ctx, "/"); err != nil {
			t.Fatalf("before revocation: %v", err)
		}
		must(t, trust.Revoke(c.CA().Dir, trust.SerialString(carol.Cert.SerialNumber), "stolen laptop"))
		_, err := rpc.NewNamespaceClient(conn).Stat(ctx, "/")
		refused("a call on a connection opened before the revocation", err, "is revoked")
		_, err = rpc.NewNamespaceClient(dial(trust.NewHolder(carol), nil)).Stat(ctx, "/")
		// Refused at the handshake (metad's reason is its own).
		if !errors.Is(err, cairn.ErrUnavailable) {
			t.Errorf("a new connection with a revoked certificate: %v; want the connection refused", err)
		}
	})
	t.Run("expired join token", func(t *testing.T) {
		tok := c.JoinToken(t, trust.RoleUser, "mallory", time.Second)
		jt, _, _, err := trust.ParseJoinToken(tok)
		must(t, err)
		time.Sleep(time.Until(jt.Expiry) + 100*time.Millisecond)
		out, code := runJoin(t, c, tok, certDir("expired"))
		if code == 0 || !strings.Contains(out, "join token expired") {
			t.Errorf("an expired join token: exit %d, %q", code, out)
		}
	})
	t.Run("reused join token", func(t *testing.T) {
		tok := c.JoinToken(t, trust.RoleUser, "bob", time.Hour)
		if out, code := runJoin(t, c, tok, certDir("bob1")); code != 0 {
			t.Fatalf("first use of a join token: exit %d, %q", code, out)
		}
		out, code := runJoin(t, c, tok, certDir("bob2"))
		if code == 0 || !strings.Contains(out, "was used already") {
			t.Errorf("a reused join token: exit %d, %q", code, out)
		}
	})
	t.Run("forged join token", func(t *testing.T) {
		other, err := trust.CreateCA(certDir("ca2"), "evil")
		must(t, err)
		tok, _, err := other.NewJoinToken(trust.RoleAdmin, "mallory", time.Hour)
		must(t, err)
		// The joiner itself refuses a metad whose CA is not the token's.
		out, code := runJoin(t, c, tok, certDir("forged-join"))
		if code == 0 || !strings.Contains(out, "not the cluster the token is for") {
			t.Errorf("a join token of another CA: exit %d, %q", code, out)
		}
		// Sent to metad anyway, it is refused there.
		key, _ := trust.NewKey()
		csr, _ := trust.NewCSR(key, trust.Peer{Role: trust.RoleAdmin, Name: "mallory"})
		_, _, err = rpc.NewTrustClient(dial(alice, nil)).Join(ctx, tok, csr)
		refused("a forged token sent to metad", err, "not signed by this cluster's CA")
		real := c.JoinToken(t, trust.RoleUser, "eve", time.Hour)
		csr, _ = trust.NewCSR(key, trust.Peer{Role: trust.RoleAdmin, Name: "eve"})
		_, _, err = rpc.NewTrustClient(dial(alice, nil)).Join(ctx, real, csr)
		refused("a user token asking for an admin certificate", err, "the join token is for user/eve")
	})
	t.Run("checkpoint outside the checkpoint directory", func(t *testing.T) {
		for _, dir := range []string{filepath.Join(t.TempDir(), "ckpt"), "/etc/cairn-ckpt", "../escape", "a/../../escape"} {
			out, code := c.Run(t, "admin", "-checkpoint", dir)
			if code == 0 {
				t.Errorf("checkpoint to %s: exit 0, %q", dir, out)
			}
		}
		err := cl.NS.Checkpoint(ctx, "/tmp/cairn-attack-ckpt")
		refused("admin checkpoint to /tmp", err, "a checkpoint goes only under metad's checkpoint directory")
	})
	t.Run("HTTP without a certificate", func(t *testing.T) {
		hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
		for _, path := range []string{"/", "/debug/pprof/", "/healthz"} {
			resp, err := hc.Get("https://" + c.MetadHTTPAddr() + path)
			must(t, err)
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized || strings.Contains(string(body), "namespace") {
				t.Errorf("GET %s without a certificate: %d %q, want 401", path, resp.StatusCode, body)
			}
		}
		user := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
			InsecureSkipVerify: true, Certificates: []tls.Certificate{*alice.Creds().TLS()}}}}
		resp, err := user.Get("https://" + c.MetadHTTPAddr() + "/debug/pprof/")
		must(t, err)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("pprof with a user certificate: %d, want 403", resp.StatusCode)
		}
	})
	t.Run("insecure on a public address", func(t *testing.T) {
		cmd := exec.Command(cluster.Binary(t), "metad", "--data", t.TempDir(), "--format", "--insecure", "--listen", ":0", "--http", "")
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "binds loopback addresses only") {
			t.Errorf("metad --insecure on every interface: %v, %q", err, out)
		}
	})

	// The cluster still serves, nothing changed, fsck is HEALTHY.
	attackPut(t, cl, "/after", []byte("after the attacks"))
	files["/after"] = []byte("after the attacks")
	sums["/after"] = sha256.Sum256(files["/after"])
	for p, want := range sums {
		if got := checksums(t, cl, map[string][]byte{p: nil})[p]; got != want {
			t.Errorf("%s changed", p)
		}
	}
	c.WaitHealthy(t, time.Minute)
}

// attackPut writes b to a new file at p through cl.
func attackPut(t *testing.T, cl *client.Client, p string, b []byte) {
	t.Helper()
	w, err := cl.Create(context.Background(), p, 0o644)
	must(t, err)
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	must(t, w.Close())
}

// checksums reads each file of files whole and returns its SHA-256.
func checksums(t *testing.T, cl *client.Client, files map[string][]byte) map[string][32]byte {
	t.Helper()
	out := map[string][32]byte{}
	for p := range files {
		r, err := cl.Open(context.Background(), p)
		must(t, err)
		b := make([]byte, r.Size())
		if n, err := r.ReadAt(b, 0); n != len(b) && err != nil {
			t.Fatalf("read %s: %d bytes, %v", p, n, err)
		}
		r.Close()
		out[p] = sha256.Sum256(b)
	}
	return out
}

// runJoin runs `cairn cert join` with tok, keeping the credentials in dir,
// and returns its combined output and exit code.
func runJoin(t *testing.T, c *cluster.Cluster, tok, dir string) (string, int) {
	t.Helper()
	cmd := exec.Command(cluster.Binary(t), "cert", "join", "--metad", c.MetadAddr(), "--token", tok, "--certs", dir)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}
