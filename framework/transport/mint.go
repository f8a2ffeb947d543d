package transport

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"time"
)

// MintValidity is how long minted certificates are valid after minting,
// and how far before it they are valid too: a peer whose clock is up to a
// day behind the minting host still accepts them. The dates guard little
// here (a minted certificate is pinned, byte for byte, by one job's two
// sides only); they are not what keeps another job out.
const MintValidity = 24 * time.Hour

// MintCredentials makes fresh trust material for one job: an Ed25519 key
// and self-signed certificate per side. Each side gets its own key and
// the other side's certificate, pinned (PinPeer), so
// neither holds anything that would let it pose as the other, and
// nothing minted for another job is accepted.
func MintCredentials(plaintext bool) (source, destination Credentials, err error) {
	srcCert, srcKey, err := mint("ferry source")
	if err != nil {
		return source, destination, err
	}
	dstCert, dstKey, err := mint("ferry destination")
	if err != nil {
		return source, destination, err
	}
	source = Credentials{Certificate: srcCert, Key: srcKey, PeerRoots: dstCert, PinPeer: true, Plaintext: plaintext}
	destination = Credentials{Certificate: dstCert, Key: dstKey, PeerRoots: srcCert, PinPeer: true, Plaintext: plaintext}
	return source, destination, nil
}

// mint returns a self-signed certificate and its key, both PEM.
func mint(name string) (certPEM, keyPEM []byte, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("mint credentials: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, fmt.Errorf("mint credentials: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: fmt.Sprintf("%s %032x", name, serial)}, // unique: no other job's certificate looks like its issuer
		NotBefore:    now.Add(-MintValidity),
		NotAfter:     now.Add(MintValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		return nil, nil, fmt.Errorf("mint credentials: %w", err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, nil, fmt.Errorf("mint credentials: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}), nil
}
