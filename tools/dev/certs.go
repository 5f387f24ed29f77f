package dev

import (
	"errors"
	"os"
	"os/user"
	"path/filepath"
	"time"

	"cairn/trust"
)

// devCerts are the credentials `cairn dev` hands out from the CA metad
// made at format: an admin certificate for commands, a mount certificate,
// and a join token for each blockd. They live in DIR/certs and are kept
// across runs.
type devCerts struct {
	ca           *trust.CA
	admin, mount string
}

func devCertsSetup(dir, metadDir string) (*devCerts, error) {
	ca, err := trust.LoadCA(filepath.Join(metadDir, trust.CADir))
	if err != nil {
		return nil, err
	}
	dc := &devCerts{ca: ca, admin: filepath.Join(dir, "certs", "admin"), mount: filepath.Join(dir, "certs", "mount")}
	name := "root"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	for _, c := range []struct {
		dir string
		p   trust.Peer
	}{{dc.admin, trust.Peer{Role: trust.RoleAdmin, Name: name}}, {dc.mount, trust.Peer{Role: trust.RoleMount, Name: host}}} {
		// Credentials of another CA (a cluster made again) are replaced.
		if old, err := trust.LoadCreds(c.dir); err == nil && old.CA.Equal(ca.Cert) && trust.RenewAt(old.Cert).After(time.Now()) {
			continue
		} else if err != nil && !errors.Is(err, os.ErrNotExist) {
			_ = os.RemoveAll(c.dir)
		}
		key, err := trust.NewKey()
		if err != nil {
			return nil, err
		}
		der, err := ca.Issue(key.Public(), c.p, trust.DefaultCertTTL, nil)
		if err != nil {
			return nil, err
		}
		if _, err := trust.SaveCreds(c.dir, key, der, ca.Cert.Raw); err != nil {
			return nil, err
		}
	}
	return dc, nil
}

// joinToken is a token for one blockd (a blockd that has its certificate
// already ignores it).
func (dc *devCerts) joinToken() (string, error) {
	tok, _, err := dc.ca.NewJoinToken(trust.RoleBlockd, "", 10*time.Minute)
	return tok, err
}
