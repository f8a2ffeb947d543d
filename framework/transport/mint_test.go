package transport

import (
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"
)

// A peer checks a pinned certificate's dates against its own clock, so
// a minted pair must hold on hosts whose clocks are hours apart (it
// was back-dated one minute only: a destination ten minutes behind its
// source refused the source's certificate as not yet valid).
func TestMintedAcceptsClocksApart(t *testing.T) {
	src, dst, err := MintCredentials(false)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, c := range []Credentials{src, dst} {
		b, _ := pem.Decode(c.Certificate)
		if b == nil {
			t.Fatal("no PEM certificate minted")
		}
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		for _, skew := range []time.Duration{-23 * time.Hour, -10 * time.Minute, 0, 10 * time.Minute, 23 * time.Hour} {
			if at := now.Add(skew); at.Before(cert.NotBefore) || at.After(cert.NotAfter) {
				t.Errorf("%s: not valid on a clock %v off (valid %v to %v)", cert.Subject.CommonName, skew, cert.NotBefore, cert.NotAfter)
			}
		}
		if err := verifyPinned(cert)([][]byte{cert.Raw}, nil); err != nil {
			t.Errorf("%s: %v", cert.Subject.CommonName, err)
		}
	}
}
