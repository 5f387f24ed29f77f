package trust

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"
)

// Files of a node's credentials directory: a blockd's DATA/trust, a
// mount's or a user's certs directory (CertsDir).
const (
	KeyFile  = "key.pem"  // the private key, 0600
	CertFile = "cert.pem" // its certificate, signed by the cluster CA
	CAFile   = "ca.pem"   // the cluster CA's certificate
)

// Creds are a key, its certificate and the CA that signed it.
type Creds struct {
	Key  crypto.Signer
	Cert *x509.Certificate
	CA   *x509.Certificate
	Peer Peer
}

// CertsDir is where a command finds its credentials when no flag names a
// directory: $CAIRN_CERTS, else ~/.cairn/certs.
func CertsDir() string {
	if d := os.Getenv("CAIRN_CERTS"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ".cairn/certs"
	}
	return filepath.Join(home, ".cairn", "certs")
}

// LoadCreds reads the credentials in dir and checks that they belong
// together; errors.Is(err, os.ErrNotExist) when dir holds none.
func LoadCreds(dir string) (*Creds, error) {
	cert, err := readCert(filepath.Join(dir, CertFile))
	if err != nil {
		return nil, fmt.Errorf("credentials in %s: %w", dir, err)
	}
	ca, err := readCert(filepath.Join(dir, CAFile))
	if err != nil {
		return nil, fmt.Errorf("credentials in %s: %w", dir, err)
	}
	key, err := readKey(filepath.Join(dir, KeyFile))
	if err != nil {
		return nil, fmt.Errorf("credentials in %s: %w", dir, err)
	}
	return newCreds(key, cert, ca)
}

func newCreds(key crypto.Signer, cert, ca *x509.Certificate) (*Creds, error) {
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return nil, fmt.Errorf("the key does not match the certificate")
	}
	if err := cert.CheckSignatureFrom(ca); err != nil {
		return nil, fmt.Errorf("the certificate is not signed by the CA: %w", err)
	}
	p, err := PeerOf(cert)
	if err != nil {
		return nil, err
	}
	return &Creds{Key: key, Cert: cert, CA: ca, Peer: p}, nil
}

// SaveCreds checks key, certDER and caDER belong together and writes them
// to dir (created 0700): the key 0600, written first, the certificate last.
func SaveCreds(dir string, key crypto.Signer, certDER, caDER []byte) (*Creds, error) {
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		return nil, fmt.Errorf("certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	c, err := newCreds(key, cert, ca)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	kp, err := keyPEM(key)
	if err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(dir, KeyFile), kp, 0o600); err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(dir, CAFile), certPEM(caDER), 0o644); err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(dir, CertFile), certPEM(certDER), 0o644); err != nil {
		return nil, err
	}
	return c, nil
}

// TLS is c as a certificate to present, chain included.
func (c *Creds) TLS() *tls.Certificate {
	return &tls.Certificate{Certificate: [][]byte{c.Cert.Raw, c.CA.Raw}, PrivateKey: c.Key, Leaf: c.Cert}
}

// Holder holds the current credentials of a daemon; renewal swaps them
// while connections use them.
type Holder struct{ v atomic.Pointer[Creds] }

// NewHolder returns a Holder of c.
func NewHolder(c *Creds) *Holder {
	h := &Holder{}
	h.v.Store(c)
	return h
}

// Creds returns the current credentials.
func (h *Holder) Creds() *Creds { return h.v.Load() }

// Set replaces the credentials; new handshakes present them.
func (h *Holder) Set(c *Creds) { h.v.Store(c) }

// Pool is a pool of the holder's CA.
func (h *Holder) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(h.Creds().CA)
	return p
}

// Expired reports whether c's certificate is no longer valid at now.
func (c *Creds) Expired(now time.Time) bool { return now.After(c.Cert.NotAfter) }

// CredsOf makes credentials of a key and its certificate's DER, signed by
// ca; nothing is written.
func CredsOf(key crypto.Signer, certDER []byte, ca *x509.Certificate) (*Creds, error) {
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		return nil, err
	}
	return newCreds(key, cert, ca)
}
