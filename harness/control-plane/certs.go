package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// PKI is the files kube-apiserver and its clients need, made at start in DIR/pki.
type PKI struct {
	CACert, CAKey, ServingCert, ServingKey, AdminCert, AdminKey, ServiceAccountKey string
}

// makePKI writes a CA, a serving certificate for loopback, the in-cluster names and
// servingIPs, an admin client certificate (group system:masters, as kubeadm's admin.conf)
// and the key that signs service-account tokens. Files already there are kept, so a
// restarted control plane keeps its CA and the tokens it issued stay valid.
func makePKI(dir string, servingIPs ...net.IP) (PKI, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return PKI{}, err
	}
	p := PKI{
		CACert:            filepath.Join(dir, "ca.crt"),
		CAKey:             filepath.Join(dir, "ca.key"),
		ServingCert:       filepath.Join(dir, "apiserver.crt"),
		ServingKey:        filepath.Join(dir, "apiserver.key"),
		AdminCert:         filepath.Join(dir, "admin.crt"),
		AdminKey:          filepath.Join(dir, "admin.key"),
		ServiceAccountKey: filepath.Join(dir, "service-account.key"),
	}
	if !allExist(p.CACert, p.CAKey) {
		// A new CA: whatever an older one signed goes with it.
		for _, leaf := range []string{p.ServingCert, p.ServingKey, p.AdminCert, p.AdminKey} {
			_ = os.Remove(leaf)
		}
		caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return p, err
		}
		caTemplate := &x509.Certificate{
			Subject:               pkix.Name{CommonName: "sidecar-watch-harness-ca"},
			IsCA:                  true,
			BasicConstraintsValid: true,
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		}
		caDER, err := sign(caTemplate, caTemplate, &caKey.PublicKey, caKey)
		if err != nil {
			return p, err
		}
		if err := writePEM(p.CACert, "CERTIFICATE", caDER); err != nil {
			return p, err
		}
		if err := writeKey(p.CAKey, caKey); err != nil {
			return p, err
		}
	}
	serving := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc.cluster.local"},
		IPAddresses: append([]net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1"), net.ParseIP("10.0.0.1")}, servingIPs...),
	}
	if err := p.issue(p.ServingCert, p.ServingKey, serving); err != nil {
		return p, err
	}
	admin := clientCert("sidecar-watch-harness-admin", "system:masters")
	if err := p.issue(p.AdminCert, p.AdminKey, admin); err != nil {
		return p, err
	}
	if allExist(p.ServiceAccountKey) {
		return p, nil
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return p, err
	}
	return p, writeKey(p.ServiceAccountKey, saKey)
}

// clientCert is the template of a client certificate for user cn in groups.
func clientCert(cn string, groups ...string) *x509.Certificate {
	return &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn, Organization: groups},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
}

// issue writes a key and a certificate from template signed by the CA, unless both exist.
func (p PKI) issue(certPath, keyPath string, template *x509.Certificate) error {
	if allExist(certPath, keyPath) {
		return nil
	}
	pair, err := tls.LoadX509KeyPair(p.CACert, p.CAKey)
	if err != nil {
		return fmt.Errorf("reading the CA: %w", err)
	}
	ca, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := sign(template, ca, &key.PublicKey, pair.PrivateKey.(crypto.Signer))
	if err != nil {
		return err
	}
	if err := writePEM(certPath, "CERTIFICATE", der); err != nil {
		return err
	}
	return writeKey(keyPath, key)
}

func sign(template, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, err
	}
	template.SerialNumber = serial
	template.NotBefore = time.Now().Add(-time.Hour)
	template.NotAfter = time.Now().Add(365 * 24 * time.Hour)
	return x509.CreateCertificate(rand.Reader, template, parent, pub, signer)
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	return writePEM(path, "EC PRIVATE KEY", der)
}

func writePEM(path, kind string, der []byte) error {
	data := pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der})
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

func allExist(paths ...string) bool {
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			return false
		}
	}
	return true
}
