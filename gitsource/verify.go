package gitsource

import (
	"errors"
	"fmt"

	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// verifySignature checks c's OpenPGP signature against the trusted keyring
// and returns the signing key's id. go-git verifies OpenPGP signatures only;
// SSH-signed commits (gpg.format=ssh) cannot be verified and are refused when
// a keyring is configured (docs/operations.md says so).
func verifySignature(c *object.Commit, keyring string) (string, error) {
	if c.PGPSignature == "" {
		return "", fmt.Errorf("%w: commit %s is not signed", ErrSignature, short(c.Hash.String()))
	}
	entity, err := c.Verify(keyring)
	if err != nil || entity == nil || entity.PrimaryKey == nil {
		reason := "signed by a key that is not trusted"
		if err != nil && !errors.Is(err, pgperrors.ErrUnknownIssuer) {
			reason = "signature does not verify: " + err.Error()
		}
		return "", fmt.Errorf("%w: commit %s %s", ErrSignature, short(c.Hash.String()), reason)
	}
	return entity.PrimaryKey.KeyIdString(), nil
}
