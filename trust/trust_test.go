package trust

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// newCA makes a CA in a temporary directory.
func newCA(t *testing.T) *CA {
	t.Helper()
	ca, err := CreateCA(filepath.Join(t.TempDir(), CADir), "ns-test")
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// issue makes credentials for p signed by ca, saved in a new directory.
func issue(t *testing.T, ca *CA, p Peer, ttl time.Duration) (*Creds, string) {
	t.Helper()
	key, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	der, err := ca.Issue(key.Public(), p, ttl, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "certs")
	c, err := SaveCreds(dir, key, der, ca.Cert.Raw)
	if err != nil {
		t.Fatal(err)
	}
	return c, dir
}

// handshake runs a TLS handshake between a server and a client config
// over a real TCP connection and returns the server's view of the client
// and each side's error.
func handshake(t *testing.T, srv, cli *tls.Config) (Peer, bool, error, error) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	type result struct {
		p   Peer
		ok  bool
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		tc := tls.Server(c, srv)
		err = tc.Handshake()
		if err == nil {
			// TLS 1.3 verifies the client's certificate after the
			// client's handshake returns: read to see the outcome.
			_, err = tc.Read(make([]byte, 1))
			if errors.Is(err, io.EOF) {
				err = nil
			}
		}
		p, _, ok := PeerOfState(tc.ConnectionState())
		done <- result{p, ok, err}
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(c, cli)
	cerr := tc.Handshake()
	if cerr == nil {
		_, _ = tc.Write([]byte{1})
		// A refusal of our certificate arrives as an alert on read.
		_ = tc.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := tc.Read(make([]byte, 1)); err != nil && !errors.Is(err, io.EOF) && !isTimeout(err) {
			cerr = err
		}
	}
	tc.Close()
	r := <-done
	return r.p, r.ok, r.err, cerr
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestMutualTLSNamesThePeer(t *testing.T) {
	ca := newCA(t)
	srv, _ := issue(t, ca, Peer{RoleMetad, "ns-test"}, time.Hour)
	cli, _ := issue(t, ca, Peer{RoleBlockd, "DS-1"}, time.Hour)
	p, ok, serr, cerr := handshake(t, ServerConfig(NewHolder(srv), nil), ClientConfig(NewHolder(cli), RoleMetad))
	if serr != nil || cerr != nil || !ok || p != (Peer{RoleBlockd, "DS-1"}) {
		t.Fatalf("peer %v %v, server err %v, client err %v; want blockd/DS-1", p, ok, serr, cerr)
	}
}

func TestTLSRefusesOtherCAsAndRoles(t *testing.T) {
	ca, other := newCA(t), newCA(t)
	srv, _ := issue(t, ca, Peer{RoleMetad, "ns-test"}, time.Hour)
	forged, _ := issue(t, other, Peer{RoleAdmin, "root"}, time.Hour)
	// A client with a certificate of another CA: the server refuses it.
	if _, _, serr, _ := handshake(t, ServerConfig(NewHolder(srv), nil), ClientConfig(NewHolder(forged), RoleMetad)); serr == nil {
		t.Errorf("a certificate of another CA was accepted")
	}
	// A client that wants metad meets a blockd: the client refuses it.
	bd, _ := issue(t, ca, Peer{RoleBlockd, "DS-1"}, time.Hour)
	cli, _ := issue(t, ca, Peer{RoleMount, "host"}, time.Hour)
	if _, _, _, cerr := handshake(t, ServerConfig(NewHolder(bd), nil), ClientConfig(NewHolder(cli), RoleMetad)); cerr == nil || !strings.Contains(cerr.Error(), "not a [metad]") {
		t.Errorf("a client wanting metad accepted a blockd's certificate: %v", cerr)
	}
	// TLS 1.2 is refused.
	old := ClientConfig(NewHolder(cli), RoleMetad)
	old.MaxVersion = tls.VersionTLS12
	if _, _, _, cerr := handshake(t, ServerConfig(NewHolder(srv), nil), old); cerr == nil {
		t.Errorf("a TLS 1.2 client got in")
	}
}

func TestRevokedCertificateRefused(t *testing.T) {
	ca := newCA(t)
	srv, _ := issue(t, ca, Peer{RoleMetad, "ns-test"}, time.Hour)
	cli, _ := issue(t, ca, Peer{RoleBlockd, "DS-1"}, time.Hour)
	rev := NewRevoked(filepath.Join(ca.Dir, RevokedFile))
	if _, ok, serr, _ := handshake(t, ServerConfig(NewHolder(srv), rev), ClientConfig(NewHolder(cli), RoleMetad)); !ok || serr != nil {
		t.Fatalf("before revocation: ok %v, err %v", ok, serr)
	}
	if err := Revoke(ca.Dir, SerialString(cli.Cert.SerialNumber), "lost disk"); err != nil {
		t.Fatal(err)
	}
	_, _, serr, _ := handshake(t, ServerConfig(NewHolder(srv), rev), ClientConfig(NewHolder(cli), RoleMetad))
	if serr == nil || !strings.Contains(serr.Error(), "revoked") {
		t.Fatalf("after revocation: err %v; want refused as revoked", serr)
	}
}

func TestCAFilesAndReload(t *testing.T) {
	ca := newCA(t)
	for _, f := range []string{caKeyFile, joinKeyFile} {
		fi, err := os.Stat(filepath.Join(ca.Dir, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v; want 0600", f, err, fi.Mode().Perm())
		}
	}
	again, err := LoadCA(ca.Dir)
	if err != nil || again.Fingerprint() != ca.Fingerprint() || string(again.JoinKey) != string(ca.JoinKey) {
		t.Fatalf("LoadCA: %v", err)
	}
	if _, err := LoadCA(t.TempDir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadCA of an empty directory: %v, want ErrNotExist", err)
	}
	_ = os.Chmod(filepath.Join(ca.Dir, caKeyFile), 0o644)
	if _, err := LoadCA(ca.Dir); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("a CA key readable by others was loaded: %v", err)
	}
}

func TestJoinTokens(t *testing.T) {
	ca, other := newCA(t), newCA(t)
	tok, jt, err := ca.NewJoinToken(RoleBlockd, "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ca.VerifyJoinToken(tok, time.Now())
	if err != nil || got.ID != jt.ID || got.Role != RoleBlockd || got.CAFingerprint() != ca.Fingerprint() {
		t.Fatalf("VerifyJoinToken: %+v, %v", got, err)
	}
	if _, err := ca.VerifyJoinToken(tok, jt.Expiry); !errors.Is(err, ErrTokenExpired) {
		t.Errorf("at its expiry: %v, want ErrTokenExpired", err)
	}
	if _, err := other.VerifyJoinToken(tok, time.Now()); !errors.Is(err, ErrTokenForged) {
		t.Errorf("another cluster's CA: %v, want ErrTokenForged", err)
	}
	// Any byte changed breaks the signature or the structure.
	_, body, mac, _ := ParseJoinToken(tok)
	for i := range body {
		b := append(append([]byte(nil), body...), mac...)
		b[i] ^= 0x20
		forged := tokenPrefix + b64(b)
		if _, err := ca.VerifyJoinToken(forged, time.Now()); err == nil {
			t.Fatalf("a token with byte %d changed was accepted", i)
		}
	}
	for _, bad := range []string{"", "cairnjoin1.", "cairnjoin1.!!", "other." + tok, strings.Repeat("a", MaxTokenLen+1)} {
		if _, _, _, err := ParseJoinToken(bad); !errors.Is(err, ErrTokenMalformed) {
			t.Errorf("ParseJoinToken(%.20q): %v, want ErrTokenMalformed", bad, err)
		}
	}
	if _, _, err := ca.NewJoinToken(RoleUser, "", time.Hour); err == nil {
		t.Errorf("a user token without a name was made")
	}
	for _, name := range []string{"", "x", "host:0", "host:99999", ":9000", "a,b:9000", "a b:9000"} {
		if _, _, err := ca.NewJoinToken(RoleMetad, name, time.Hour); err == nil {
			t.Errorf("a metad token naming %q (not a member address) was made", name)
		}
	}
	tok, made, err := ca.NewJoinToken(RoleMetad, "meta2.example:9000", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ca.VerifyJoinToken(tok, time.Now()); err != nil || got != made || got.Name != "meta2.example:9000" {
		t.Fatalf("a metad token: %+v, %v; want %+v", got, err, made)
	}
}

// A new member of a metad group installs the CA material the group hands
// it when it is the CA its token names, and writes nothing otherwise.
func TestInstallCA(t *testing.T) {
	ca, other := newCA(t), newCA(t)
	mat, err := ca.Material()
	if err != nil {
		t.Fatal(err)
	}
	otherMat, _ := other.Material()
	for name, bad := range map[string]CAMaterial{
		"another CA":         otherMat,
		"another CA's key":   {Cert: mat.Cert, Key: otherMat.Key, JoinKey: mat.JoinKey},
		"a short join key":   {Cert: mat.Cert, Key: mat.Key, JoinKey: mat.JoinKey[:8]},
		"garbage":            {Cert: []byte("x"), Key: []byte("y")},
		"a certificate only": {Cert: mat.Cert},
	} {
		dir := filepath.Join(t.TempDir(), "trust")
		if _, err := InstallCA(dir, ca.Fingerprint(), bad); err == nil {
			t.Errorf("%s: installed", name)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: refused, but %s was made (%v)", name, dir, err)
		}
	}
	dir := filepath.Join(t.TempDir(), "trust")
	got, err := InstallCA(dir, ca.Fingerprint(), mat)
	if err != nil {
		t.Fatal(err)
	}
	if got.Fingerprint() != ca.Fingerprint() || string(got.JoinKey) != string(ca.JoinKey) {
		t.Fatalf("installed CA %s, want %s (join keys equal: %v)", got.Fingerprint(), ca.Fingerprint(), string(got.JoinKey) == string(ca.JoinKey))
	}
	// What one member signs, another checks.
	tok, _, _ := ca.NewJoinToken(RoleBlockd, "", time.Hour)
	if _, err := got.VerifyJoinToken(tok, time.Now()); err != nil {
		t.Fatalf("the installed CA refuses the original's join token: %v", err)
	}
}

func TestJoinConfigChecksTheFingerprint(t *testing.T) {
	ca, other := newCA(t), newCA(t)
	srv, _ := issue(t, ca, Peer{RoleMetad, "ns-test"}, time.Hour)
	var got *x509.Certificate
	_, _, _, cerr := handshake(t, ServerConfig(NewHolder(srv), nil), JoinConfig(ca.Fingerprint(), func(c *x509.Certificate) { got = c }))
	if cerr != nil || got == nil || Fingerprint(got) != ca.Fingerprint() {
		t.Fatalf("join handshake with the right fingerprint: %v (CA %v)", cerr, got != nil)
	}
	_, _, _, cerr = handshake(t, ServerConfig(NewHolder(srv), nil), JoinConfig(other.Fingerprint(), func(*x509.Certificate) {}))
	if cerr == nil || !strings.Contains(cerr.Error(), "not the cluster the token is for") {
		t.Fatalf("join handshake with another CA's fingerprint: %v", cerr)
	}
}

func TestCSR(t *testing.T) {
	key, _ := NewKey()
	der, err := NewCSR(key, Peer{RoleBlockd, "DS-9"})
	if err != nil {
		t.Fatal(err)
	}
	_, p, err := ParseCSR(der)
	if err != nil || p != (Peer{RoleBlockd, "DS-9"}) {
		t.Fatalf("ParseCSR: %v, %v", p, err)
	}
	bad := append([]byte(nil), der...)
	bad[len(bad)-5] ^= 1
	if _, _, err := ParseCSR(bad); err == nil {
		t.Errorf("a CSR with a broken signature was accepted")
	}
	if _, _, err := ParseCSR(make([]byte, MaxCSRLen+1)); err == nil {
		t.Errorf("an oversized CSR was accepted")
	}
}

func TestRenewOnce(t *testing.T) {
	ca := newCA(t)
	c, dir := issue(t, ca, Peer{RoleMount, "host1"}, time.Hour)
	h := NewHolder(c)
	if at := RenewAt(c.Cert); at.Before(c.Cert.NotBefore.Add(40*time.Minute)) || at.After(c.Cert.NotAfter) {
		t.Errorf("RenewAt %v is not two thirds into %v..%v", at, c.Cert.NotBefore, c.Cert.NotAfter)
	}
	fetch := func(_ context.Context, csr []byte) ([]byte, error) {
		r, p, err := ParseCSR(csr)
		if err != nil {
			return nil, err
		}
		return ca.Issue(r.PublicKey, p, time.Hour, nil)
	}
	n, err := RenewOnce(context.Background(), h, dir, fetch)
	if err != nil {
		t.Fatal(err)
	}
	if h.Creds() != n || n.Cert.SerialNumber.Cmp(c.Cert.SerialNumber) == 0 || n.Peer != c.Peer {
		t.Fatalf("renewal did not install a new certificate for the same peer")
	}
	onDisk, err := LoadCreds(dir)
	if err != nil || onDisk.Cert.SerialNumber.Cmp(n.Cert.SerialNumber) != 0 {
		t.Fatalf("the renewed credentials were not saved: %v", err)
	}
}

// TestUITokens: a link verifies as a link of its CA until it expires; a
// session does not pass for a link nor a link for a session; another
// CA's token, or one with a byte changed, is forged.
func TestUITokens(t *testing.T) {
	ca, err := CreateCA(t.TempDir(), "ns-1")
	if err != nil {
		t.Fatal(err)
	}
	other, err := CreateCA(t.TempDir(), "ns-2")
	if err != nil {
		t.Fatal(err)
	}
	link, lt, err := ca.NewUIToken(UILink, "root", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ca.VerifyUIToken(link, UILink, time.Now())
	if err != nil || got.Name != "root" || got.ID != lt.ID {
		t.Fatalf("verify link: %+v, %v", got, err)
	}
	if _, err := ca.VerifyUIToken(link, UILink, lt.Expiry); !errors.Is(err, ErrUITokenExpired) {
		t.Fatalf("at its expiry: %v, want expired", err)
	}
	if _, err := ca.VerifyUIToken(link, UISession, time.Now()); !errors.Is(err, ErrUITokenForged) {
		t.Fatalf("a link as a session: %v, want forged", err)
	}
	sess, _, err := ca.NewUIToken(UISession, "root", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.VerifyUIToken(sess, UILink, time.Now()); !errors.Is(err, ErrUITokenForged) {
		t.Fatalf("a session as a link: %v, want forged", err)
	}
	// Relabel the session as a link, keeping its MAC.
	_, body, mac, err := ParseUIToken(sess)
	if err != nil {
		t.Fatal(err)
	}
	body[1] = byte(UILink)
	relabelled := uiPrefix + b64(append(body, mac...))
	if _, err := ca.VerifyUIToken(relabelled, UILink, time.Now()); !errors.Is(err, ErrUITokenForged) {
		t.Fatalf("a session relabelled as a link: %v, want forged", err)
	}
	olink, _, _ := other.NewUIToken(UILink, "root", time.Minute)
	if _, err := ca.VerifyUIToken(olink, UILink, time.Now()); !errors.Is(err, ErrUITokenForged) {
		t.Fatalf("another CA's link: %v, want forged", err)
	}
	if _, _, err := ca.NewUIToken(UILink, "a/b", time.Minute); err == nil {
		t.Fatal("a link for an invalid name was made")
	}
}

// TestRenewAtShortLifetimes: a certificate is renewed two thirds into the
// life it was issued for, not counting the minutes its NotBefore is set
// back for clock skew: one of 6 s is renewed about 4 s after it was
// issued, not at once (which made a daemon renew again and again), and
// one of 30 days after 20.
func TestRenewAtShortLifetimes(t *testing.T) {
	ca, err := CreateCA(t.TempDir(), "ns-1")
	if err != nil {
		t.Fatal(err)
	}
	key, _ := NewKey()
	for _, ttl := range []time.Duration{6 * time.Second, time.Minute, 30 * 24 * time.Hour} {
		issued := time.Now()
		der, err := ca.Issue(key.Public(), Peer{Role: RoleBlockd, Name: "DS-1"}, ttl, nil)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		at := RenewAt(c)
		lo, hi := issued.Add(ttl/2), issued.Add(ttl*3/4)
		if at.Before(lo) || at.After(hi) {
			t.Errorf("ttl %v: renewed %v after issue, want two thirds of it", ttl, at.Sub(issued))
		}
	}
}
