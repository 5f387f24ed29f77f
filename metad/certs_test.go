package metad

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc/peer"

	"cairn"
	"cairn/trust"
)

// openTrusted opens a metad on dir with its CA loaded, as serve does.
func openTrusted(t *testing.T, dir string) *Metad {
	t.Helper()
	m, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.openTrust(); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestJoinTokenWorksOnceAcrossRestarts: a join token's use is in Pebble
// before the certificate is signed, so a metad restarted after the join
// (or killed: the record is synced before Join answers) still refuses it.
func TestJoinTokenWorksOnceAcrossRestarts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "meta")
	if _, err := Format(dir, false); err != nil {
		t.Fatal(err)
	}
	m := openTrusted(t, dir)
	ctx := context.Background()
	tok, _, err := m.IssueJoinToken(ctx, trust.RoleBlockd, "", time.Hour)
	must(t, err)
	key, _ := trust.NewKey()
	csr, _ := trust.NewCSR(key, trust.Peer{Role: trust.RoleBlockd, Name: "DS-1"})
	cert, ca, err := m.Join(ctx, tok, csr)
	must(t, err)
	if _, err := trust.SaveCreds(filepath.Join(t.TempDir(), "c"), key, cert, ca); err != nil {
		t.Fatalf("the signed certificate does not fit the key and CA: %v", err)
	}
	if _, _, err := m.Join(ctx, tok, csr); err == nil || !strings.Contains(err.Error(), "used already") {
		t.Fatalf("second use: %v", err)
	}
	must(t, m.Close())
	m = openTrusted(t, dir)
	if _, _, err := m.Join(ctx, tok, csr); err == nil || !strings.Contains(err.Error(), "used already") {
		t.Fatalf("use after a restart: %v", err)
	}
	must(t, m.Close())
	r, err := Check(dir)
	must(t, err)
	if !r.Clean() {
		t.Errorf("the store with a used token does not check clean")
	}
}

// TestRemoteCheckpointOnlyUnderTheRoot: a checkpoint asked for over RPC
// goes only under Config.CheckpointRoot.
func TestRemoteCheckpointOnlyUnderTheRoot(t *testing.T) {
	root := filepath.Join(t.TempDir(), "ckpts")
	m := openCfg(t, Config{CheckpointRoot: root})
	remote := context.WithValue(context.Background(), remoteKey{}, true)
	remote = cairn.WithIdentity(remote, cairn.Identity{User: m.superuser})
	outside := t.TempDir()
	must(t, os.Symlink(outside, filepath.Join(t.TempDir(), "link")))
	must(t, os.MkdirAll(root, 0o700))
	must(t, os.Symlink(outside, filepath.Join(root, "out")))
	for _, dir := range []string{filepath.Join(outside, "x"), "../x", "a/../../x", "/etc/x", filepath.Join(root, "out", "x"), "out/x", root} {
		if err := m.Checkpoint(remote, dir); err == nil || !strings.Contains(err.Error(), "only under") {
			t.Errorf("checkpoint to %s: %v, want refused", dir, err)
		}
	}
	must(t, m.Checkpoint(remote, "ok"))
	must(t, m.Checkpoint(remote, filepath.Join(root, "ok2")))
	mustCheck(t, filepath.Join(root, "ok"))
	// In-process callers (metad's own) are not bound to the root.
	must(t, m.Checkpoint(context.Background(), filepath.Join(outside, "inproc")))
}

// TestJoinCannotTakeALiveBlockdIdentity: a blockd join token that names
// no storage ID cannot get a certificate for a storage ID that holds a
// valid certificate already (the joiner would speak for that blockd in
// the registry), also after a restart; a token naming the ID can (an
// operator re-joining the node), and so can an unnamed one once the old
// certificate is revoked.
func TestJoinCannotTakeALiveBlockdIdentity(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "meta")
	if _, err := Format(dir, false); err != nil {
		t.Fatal(err)
	}
	m := openTrusted(t, dir)
	defer func() { _ = m.Close() }()
	ctx := context.Background()
	join := func(name, as string) ([]byte, error) {
		t.Helper()
		tok, _, err := m.IssueJoinToken(ctx, trust.RoleBlockd, name, time.Hour)
		must(t, err)
		key, _ := trust.NewKey()
		csr, _ := trust.NewCSR(key, trust.Peer{Role: trust.RoleBlockd, Name: as})
		cert, _, err := m.Join(ctx, tok, csr)
		return cert, err
	}
	_, err := join("", "DS-1")
	must(t, err)
	if _, err := join("", "DS-1"); !errors.Is(err, cairn.ErrPermission) || !strings.Contains(err.Error(), "--name DS-1") {
		t.Fatalf("an unnamed token took DS-1's identity: %v", err)
	}
	_, err = join("", "DS-2")
	must(t, err)
	must(t, m.Close())
	m = openTrusted(t, dir)
	if _, err := join("", "DS-1"); !errors.Is(err, cairn.ErrPermission) {
		t.Fatalf("after a restart, an unnamed token took DS-1's identity: %v", err)
	}
	der, err := join("DS-1", "DS-1")
	if err != nil {
		t.Fatalf("a token naming DS-1: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	must(t, err)
	must(t, trust.Revoke(filepath.Join(dir, trust.CADir), trust.SerialString(cert.SerialNumber), "test"))
	if _, err := join("", "DS-1"); err != nil {
		t.Fatalf("an unnamed token for DS-1 once its certificate is revoked: %v", err)
	}
	must(t, m.Close())
	r, err := Check(dir)
	must(t, err)
	if !r.Clean() {
		t.Errorf("the store with blockd certificate records does not check clean: %v", r)
	}
}

// TestRegisterWarnsOfAnotherHost: a registration whose data address is
// not on the host its connection came from is logged at WARN (a blockd
// certificate names a storage ID, not a host); one from its own host is
// not.
func TestRegisterWarnsOfAnotherHost(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	m := openCfg(t, Config{Logger: zap.New(core)})
	from := func(ip string) context.Context {
		return peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000}})
	}
	warned := func() int { return logs.FilterMessageSnippet("another host").Len() }
	_, err := m.Register(from("10.1.2.3"), cairn.Registration{Node: cairn.Node{StorageID: "DS-1", DataAddr: "10.1.2.3:9866"}})
	must(t, err)
	if n := warned(); n != 0 {
		t.Fatalf("a registration from its own host warned %d times", n)
	}
	_, err = m.Register(from("10.1.2.3"), cairn.Registration{Node: cairn.Node{StorageID: "DS-2", DataAddr: "10.9.9.9:9866"}})
	must(t, err)
	if n := warned(); n != 1 {
		t.Fatalf("a registration naming another host's data address warned %d times, want 1", n)
	}
	if e := logs.FilterMessageSnippet("another host").All()[0]; e.ContextMap()["data"] != "10.9.9.9:9866" || e.ContextMap()["storage_id"] != "DS-2" {
		t.Fatalf("the warning's fields: %v", e.ContextMap())
	}
}
