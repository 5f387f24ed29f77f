package trust

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// Files of the cluster CA in metad's DIR/trust.
const (
	CADir       = "trust"    // under metad's data directory
	caCertFile  = "ca.pem"   // the CA certificate
	caKeyFile   = "ca.key"   // its key, 0600
	joinKeyFile = "join.key" // the HMAC key of join tokens, 0600
	// RevokedFile lists revoked certificate serials (revoke.go).
	RevokedFile = "revoked"
)

// CA lifetime, and the default lifetime of the certificates it signs.
const (
	CALifetime      = 10 * 365 * 24 * time.Hour
	DefaultCertTTL  = 30 * 24 * time.Hour
	maxCertTTL      = 5 * 365 * 24 * time.Hour
	clockSkewBefore = 5 * time.Minute // NotBefore is this far back
)

// CA is the cluster's certificate authority: it signs every certificate
// of the cluster, and its HMAC key signs join tokens.
type CA struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	JoinKey []byte
	Dir     string
}

// CreateCA makes a new CA in dir (created 0700), replacing one there.
func CreateCA(dir, namespaceID string) (*CA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create CA: %w", err)
	}
	key, err := NewKey()
	if err != nil {
		return nil, fmt.Errorf("create CA: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          newSerial(),
		Subject:               pkix.Name{Organization: []string{"cairn"}, CommonName: "cairn cluster CA " + namespaceID},
		NotBefore:             now.Add(-clockSkewBefore),
		NotAfter:              now.Add(CALifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create CA: %w", err)
	}
	cert, _ := x509.ParseCertificate(der)
	kp, err := keyPEM(key)
	if err != nil {
		return nil, err
	}
	jk := make([]byte, 32)
	if _, err := rand.Read(jk); err != nil {
		return nil, err
	}
	// The certificate goes last: a directory without ca.pem has no CA, so
	// a creation cut short is simply done again.
	_ = os.Remove(filepath.Join(dir, caCertFile))
	for _, f := range []struct {
		name string
		b    []byte
		perm os.FileMode
	}{{caKeyFile, kp, 0o600}, {joinKeyFile, []byte(hex.EncodeToString(jk) + "\n"), 0o600}, {caCertFile, certPEM(der), 0o644}} {
		if err := writeFile(filepath.Join(dir, f.name), f.b, f.perm); err != nil {
			return nil, fmt.Errorf("create CA: %w", err)
		}
	}
	return &CA{Cert: cert, Key: key, JoinKey: jk, Dir: dir}, nil
}

// LoadCA reads the CA in dir; errors.Is(err, os.ErrNotExist) when there
// is none.
func LoadCA(dir string) (*CA, error) {
	cert, err := readCert(filepath.Join(dir, caCertFile))
	if err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	key, err := readKey(filepath.Join(dir, caKeyFile))
	if err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return nil, fmt.Errorf("cluster CA: %s does not match %s", caKeyFile, caCertFile)
	}
	b, err := os.ReadFile(filepath.Join(dir, joinKeyFile))
	if err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	jk, err := hex.DecodeString(string(trimSpace(b)))
	if err != nil || len(jk) < 32 {
		return nil, fmt.Errorf("cluster CA: %s is not a 32-byte hex key", filepath.Join(dir, joinKeyFile))
	}
	return &CA{Cert: cert, Key: key, JoinKey: jk, Dir: dir}, nil
}

// EnsureCA loads the CA in dir, creating one when there is none.
func EnsureCA(dir, namespaceID string) (ca *CA, created bool, err error) {
	ca, err = LoadCA(dir)
	if errors.Is(err, os.ErrNotExist) {
		if _, serr := os.Stat(filepath.Join(dir, caCertFile)); errors.Is(serr, os.ErrNotExist) {
			ca, err = CreateCA(dir, namespaceID)
			return ca, err == nil, err
		}
	}
	return ca, false, err
}

// Fingerprint is the SHA-256 of the CA certificate, in hex: what a join
// token carries so a joiner can tell the real metad.
func (ca *CA) Fingerprint() string { return Fingerprint(ca.Cert) }

// Fingerprint is the SHA-256 of a certificate's DER, in hex.
func Fingerprint(c *x509.Certificate) string {
	s := sha256.Sum256(c.Raw)
	return hex.EncodeToString(s[:])
}

// Pool is a pool holding only the CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Issue signs a certificate for pub naming p, valid for ttl from now.
// It returns the certificate's DER.
func (ca *CA) Issue(pub crypto.PublicKey, p Peer, ttl time.Duration, hosts []string) ([]byte, error) {
	if err := p.Check(); err != nil {
		return nil, err
	}
	if ttl <= 0 || ttl > maxCertTTL {
		return nil, fmt.Errorf("certificate lifetime %v out of range (0, %v]", ttl, maxCertTTL)
	}
	now := time.Now()
	notAfter := now.Add(ttl)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: newSerial(),
		Subject:      pkix.Name{Organization: []string{"cairn"}, OrganizationalUnit: []string{string(p.Role)}, CommonName: p.Name},
		NotBefore:    now.Add(-clockSkewBefore),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{p.URI()},
		DNSNames:     hosts,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("issue %s: %w", p, err)
	}
	return der, nil
}

// newSerial is a random 128-bit serial number.
func newSerial() *big.Int {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[0] &= 0x7f
	return new(big.Int).SetBytes(b)
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	type eq interface{ Equal(crypto.PublicKey) bool }
	e, ok := a.(eq)
	return ok && e.Equal(b)
}
