package tests

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"cairn/tests/cluster"
	"cairn/trust"
)

// TestRenewalOnRunningDaemons runs a cluster whose metad signs
// certificates for 6 seconds, with two blockds (joined with tokens, so
// their certificates are metad's) and a mount started on a 6-second
// certificate, block data encrypted. Across several lifetimes, files
// written and read through the mount keep matching; the certificates on
// the blockds' and the mount's disks are renewed again and again (new
// serials) and are never found expired while the daemons serve.
func TestRenewalOnRunningDaemons(t *testing.T) {
	RequireFUSE(t)
	const ttl = 6 * time.Second
	c := cluster.Start(t, cluster.Config{Blockds: 2, Replication: 2, MetadArgs: []string{"--cert-ttl", ttl.String(), "--encrypt-data"}})
	host, _ := os.Hostname()
	mountCerts := filepath.Join(t.TempDir(), "mount-certs")
	c.IssueCertTTL(t, trust.Peer{Role: trust.RoleMount, Name: host}, mountCerts, ttl)
	mnt := c.Mount(t, "-o", "certs="+mountCerts)
	dirs := map[string]string{"mount": mountCerts}
	for i := range 2 {
		dirs[fmt.Sprintf("blockd%d", i)] = filepath.Join(c.BlockdDirs(i)[0], trust.CADir)
	}
	serials := map[string]map[string]bool{}
	check := func(when string) {
		t.Helper()
		for name, dir := range dirs {
			cr, err := trust.LoadCreds(dir)
			if err != nil {
				// A renewal writes the key before the certificate: the
				// pair may be caught between the two.
				t.Logf("%s: %s: %v", when, name, err)
				continue
			}
			if cr.Expired(time.Now()) {
				t.Fatalf("%s: %s's certificate expired at %v: not renewed", when, name, cr.Cert.NotAfter)
			}
			if serials[name] == nil {
				serials[name] = map[string]bool{}
			}
			serials[name][trust.SerialString(cr.Cert.SerialNumber)] = true
		}
	}
	check("at start")
	begin := time.Now()
	data := bytes.Repeat([]byte("renewed certificates keep the data flowing\n"), 30000)
	for i := 0; time.Since(begin) < 4*ttl || i < 8; i++ {
		p := filepath.Join(mnt, fmt.Sprintf("f%d", i))
		if err := os.WriteFile(p, data[:len(data)-i], 0o644); err != nil {
			t.Fatalf("write %s after %v: %v", p, time.Since(begin).Round(time.Millisecond), err)
		}
		for j := 0; j <= i; j++ {
			got, err := os.ReadFile(filepath.Join(mnt, fmt.Sprintf("f%d", j)))
			if err != nil || !bytes.Equal(got, data[:len(data)-j]) {
				t.Fatalf("read f%d after %v: %d bytes, %v", j, time.Since(begin).Round(time.Millisecond), len(got), err)
			}
		}
		check(fmt.Sprintf("round %d", i))
		time.Sleep(500 * time.Millisecond)
	}
	for name, s := range serials {
		if len(s) < 3 {
			t.Errorf("%s had %d certificates over %v of %v ones, want renewals", name, len(s), time.Since(begin).Round(time.Second), ttl)
		}
	}
	if out, code := c.Run(t, "fsck", "/"); code != 0 {
		t.Fatalf("fsck: exit %d\n%s", code, out)
	}
}
