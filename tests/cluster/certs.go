package cluster

import (
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cairn/trust"
)

// A cluster is secure unless Config.Insecure: metad --format makes its
// CA; the harness, which runs on metad's machine, reads the CA from
// metad's data directory and issues in-process (no extra process, so
// starting stays fast) an admin certificate for client commands and
// in-process clients, a mount certificate for mounts, and a fresh join
// token for each start of a blockd.

// certs are the credentials the harness hands out.
type certs struct {
	ca    *trust.CA
	admin string // credentials directory of the admin certificate
	mount string // of the mount certificate
	hold  *trust.Holder
}

// setupCerts loads metad's CA and issues the admin and mount certificates.
func (c *Cluster) setupCerts(t testing.TB) {
	t.Helper()
	ca, err := trust.LoadCA(filepath.Join(c.metadDir, trust.CADir))
	if err != nil {
		t.Fatalf("cluster CA: %v", err)
	}
	root := filepath.Join(filepath.Dir(c.metadDir), "certs")
	c.certs = &certs{ca: ca, admin: filepath.Join(root, "admin"), mount: filepath.Join(root, "mount")}
	admin := c.IssueCert(t, trust.Peer{Role: trust.RoleAdmin, Name: processUser()}, c.certs.admin)
	c.certs.hold = trust.NewHolder(admin)
	host, _ := os.Hostname()
	c.IssueCert(t, trust.Peer{Role: trust.RoleMount, Name: host}, c.certs.mount)
}

// IssueCert signs a certificate for p with the cluster's CA (an hour
// long) and saves key, certificate and CA in dir.
func (c *Cluster) IssueCert(t testing.TB, p trust.Peer, dir string) *trust.Creds {
	t.Helper()
	return c.IssueCertTTL(t, p, dir, time.Hour)
}

// IssueCertTTL is IssueCert with a lifetime.
func (c *Cluster) IssueCertTTL(t testing.TB, p trust.Peer, dir string, ttl time.Duration) *trust.Creds {
	t.Helper()
	key, err := trust.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	der, err := c.certs.ca.Issue(key.Public(), p, ttl, nil)
	if err != nil {
		t.Fatal(err)
	}
	cr, err := trust.SaveCreds(dir, key, der, c.certs.ca.Cert.Raw)
	if err != nil {
		t.Fatal(err)
	}
	return cr
}

// JoinToken makes a join token for role (and name) with the cluster's CA,
// as cairn admin -join-token does.
func (c *Cluster) JoinToken(t testing.TB, role trust.Role, name string, ttl time.Duration) string {
	t.Helper()
	tok, _, err := c.certs.ca.NewJoinToken(role, name, ttl)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// CA is the cluster's CA (nil when insecure).
func (c *Cluster) CA() *trust.CA {
	if c.certs == nil {
		return nil
	}
	return c.certs.ca
}

// ClientCreds are the admin credentials in-process clients present
// (client.Options.Creds); nil when the cluster is insecure.
func (c *Cluster) ClientCreds() *trust.Holder {
	if c.certs == nil {
		return nil
	}
	return c.certs.hold
}

// AdminCertsDir is the credentials directory of client commands.
func (c *Cluster) AdminCertsDir() string { return c.certs.admin }

// ClientEnv is the environment a client program of the test (a cairn
// command, the test binary run as a helper) needs to reach this cluster:
// its credentials.
func (c *Cluster) ClientEnv() []string { return c.env("client") }

// env is the environment a process named name is started with, beside
// the test's own.
func (c *Cluster) env(name string) []string {
	switch {
	case c.cfg.Insecure:
		return []string{"CAIRN_INSECURE=1"}
	case c.certs == nil: // metad, before its CA is read
		return nil
	case strings.HasPrefix(name, "mount"):
		return []string{"CAIRN_CERTS=" + c.certs.mount}
	default:
		return []string{"CAIRN_CERTS=" + c.certs.admin}
	}
}

func processUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "root"
}

// MetadGet makes a GET of path on metad's HTTP port, over TLS with the
// test's client certificate (plain HTTP for an Insecure cluster).
func (c *Cluster) MetadGet(path string) (*http.Response, error) {
	if c.cfg.Insecure {
		return http.Get("http://" + c.MetadHTTPAddr() + path)
	}
	hc := &http.Client{Timeout: runTimeout, Transport: &http.Transport{TLSClientConfig: trust.ClientConfig(c.ClientCreds(), trust.RoleMetad)}}
	return hc.Get("https://" + c.MetadHTTPAddr() + path)
}
