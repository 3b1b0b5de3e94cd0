// Command signer signs images the way cosign sign --key does (the
// sha256-<digest>.sig tag), for scripts/demo, which shows a host that
// requires signatures refusing an image nobody signed, without building
// the cosign CLI. Tests use testenv.CosignKey directly.
//
// It also builds and pushes the demo's images without a Docker engine
// (a loaded engine held a `docker rmi` of the demo's build for minutes
// behind the suite's container starts), printing the digest:
//
//	signer keygen PRIVATE.pem PUBLIC.pem
//	signer sign PRIVATE.pem REGISTRY/REPO@sha256:…
//	signer image REGISTRY/REPO:VERSION APP_BINARY [KEY=VALUE …]
package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	"berth.dev/berth/internal/testenv"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "signer:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	switch {
	case len(args) == 3 && args[0] == "keygen":
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		der, err := x509.MarshalPKCS8PrivateKey(priv)
		if err != nil {
			return err
		}
		pub, err := cryptoutils.MarshalPublicKeyToPEM(priv.Public())
		if err != nil {
			return err
		}
		if err := os.WriteFile(args[1], pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return err
		}
		return os.WriteFile(args[2], pub, 0o644)
	case len(args) == 3 && args[0] == "sign":
		b, err := os.ReadFile(args[1])
		if err != nil {
			return err
		}
		blk, _ := pem.Decode(b)
		if blk == nil {
			return errors.New(args[1] + ": not PEM")
		}
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return err
		}
		ek, ok := k.(*ecdsa.PrivateKey)
		if !ok {
			return errors.New(args[1] + ": not an ECDSA key")
		}
		sv, err := signature.LoadECDSASignerVerifier(ek, crypto.SHA256)
		if err != nil {
			return err
		}
		d, err := name.NewDigest(args[2])
		if err != nil {
			return err
		}
		return testenv.CosignSignTag(sv, d, d)
	case len(args) >= 3 && args[0] == "image":
		ref, err := name.NewTag(args[1], name.Insecure)
		if err != nil {
			return err
		}
		// The demo's users watch its health gate: checked every second.
		// A check answers in milliseconds, but beside the suite dockerd's
		// exec of it took over 2 s three times running, and Docker counts
		// an exec past its timeout as a failed check (exit -1): v1 was
		// rolled back as unhealthy. v3's check fails at once whatever the
		// timeout, so a generous one costs the demo nothing.
		img, err := testenv.BuildImage(args[2], testenv.ImageSpec{Version: ref.TagStr(), Env: args[3:],
			HealthInterval: time.Second, HealthTimeout: 10 * time.Second})
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		d, err := testenv.PushImage(ctx, ref, img)
		if err != nil {
			return err
		}
		fmt.Println(d)
		return nil
	}
	return errors.New("usage: signer keygen PRIVATE.pem PUBLIC.pem | signer sign PRIVATE.pem REPO@sha256:… | signer image REPO:VERSION APP_BINARY [KEY=VALUE …]")
}
