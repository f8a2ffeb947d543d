package transporttest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"testing"
	"time"

	"github.com/ferryvm/ferry/framework/transport"
)

// testPinnedChain: with PinPeer each side's certificate file is a chain
// (leaf, then the CA that issued it), as an operator's files are. A
// stranger holding another certificate from the same CA is refused as
// sender and as receiver: pinning trusts the peer's leaf, not its
// issuer. The pair then works with its chain files.
func testPinnedChain(t *testing.T, p *pair) {
	ca := newIssuer(t)
	send, recv, stranger := ca.issue(t, "source"), ca.issue(t, "destination"), ca.issue(t, "stranger")
	creds := func(own, peer issued) transport.Credentials {
		return transport.Credentials{Certificate: own.chain, Key: own.key, PeerRoots: peer.chain, PinPeer: true}
	}
	p.creds = [2]transport.Credentials{creds(send, recv), creds(recv, send)}
	refuseStrangers(t, p, map[string][2]transport.Credentials{
		"same-issuer sender":   {creds(stranger, recv), p.creds[1]},
		"same-issuer receiver": {p.creds[0], creds(stranger, send)},
	})
}

// issuer is a CA that signs test certificates.
type issuer struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// issued is a certificate chain file (leaf, then its issuer) and the
// leaf's key, PEM.
type issued struct{ chain, key []byte }

func newIssuer(t *testing.T) issuer {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := certTemplate("transporttest CA")
	tmpl.IsCA, tmpl.BasicConstraintsValid, tmpl.KeyUsage = true, true, x509.KeyUsageCertSign
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return issuer{cert, key}
}

// issue makes a leaf for client and server use, signed by ca.
func (ca issuer) issue(t *testing.T, name string) issued {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, certTemplate(name), ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	chain := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})...)
	return issued{chain, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb})}
}

func certTemplate(name string) *x509.Certificate {
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	return &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}}
}
