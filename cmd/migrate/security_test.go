package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/job"
	"github.com/ferryvm/ferry/framework/transport"
)

// writeCert writes a P-256 certificate and key signed by parent (nil:
// self-signed, a CA) and returns them for signing more.
func writeCert(t *testing.T, dir, name string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}}
	if parent == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	os.WriteFile(filepath.Join(dir, name+".pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(filepath.Join(dir, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	c, _ := x509.ParseCertificate(der)
	return c, key
}

func TestCredentials(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := writeCert(t, dir, "ca", nil, nil)
	writeCert(t, dir, "src", ca, caKey)
	writeCert(t, dir, "dst", ca, caKey)
	files := job.Security{SourceCert: "src.pem", SourceKey: "src.key", DestinationCert: "dst.pem", DestinationKey: "dst.key"}
	withCA := files
	withCA.CAFile = "ca.pem"
	for name, s := range map[string]job.Security{"minted": {Encryption: true}, "minted, clear": {},
		"operator CA": withCA, "operator, pinned": files} {
		j := &job.Job{File: filepath.Join(dir, "job.hcl"), Security: s}
		src, dst, err := credentials(j)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if src.Plaintext != !s.Encryption || strings.Contains(string(src.Key), string(dst.Key)) {
			t.Errorf("%s: plaintext %v, or the source holds the destination's key", name, src.Plaintext)
		}
		handshake(t, name, src, dst)
	}
	missing := files
	missing.SourceKey = "nope.key"
	if _, _, err := credentials(&job.Job{File: filepath.Join(dir, "job.hcl"), Security: missing}); err == nil {
		t.Error("a missing key file was accepted")
	}
}

// handshake authenticates the two sides to each other over TCP.
func handshake(t *testing.T, name string, src, dst transport.Credentials) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			defer c.Close()
			cfg, _ := dst.TLSConfig(transport.RoleReceive)
			_, err = transport.Secure(ctx, c, transport.RoleReceive, cfg, dst.Plaintext)
		}
		done <- err
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cfg, _ := src.TLSConfig(transport.RoleSend)
	if _, err := transport.Secure(ctx, c, transport.RoleSend, cfg, src.Plaintext); err != nil {
		t.Errorf("%s: source: %v", name, err)
	}
	if err := <-done; err != nil {
		t.Errorf("%s: destination: %v", name, err)
	}
}
