package imagesig

import (
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	"berth.dev/berth/internal/printable"
)

// Mode says what a rule's failure does.
type Mode string

const (
	// Enforce refuses an image without a valid signature: a verdict on
	// the revision that names it.
	Enforce Mode = "enforce"
	// Warn logs the failure and pulls the image anyway.
	Warn Mode = "warn"
)

// Rule is one images.verify entry, as the agent config (or an
// environment's x-berth) writes it.
type Rule struct {
	// Prefix is a registry ("registry.example.org"), a repository prefix
	// ("registry.example.org/shop/", "ghcr.io/acme/web") or "*" for every
	// image. It matches whole path components: "ghcr.io/acme" matches
	// ghcr.io/acme/web but not ghcr.io/acme-evil/web.
	Prefix string `yaml:"prefix"`
	// Key is a cosign public key file (PEM): the image must carry a
	// signature this key verifies.
	Key string `yaml:"key"`
	// Keyless names the identity that must have signed instead: a
	// Sigstore bundle whose certificate chains to the trusted root.
	Keyless *Keyless `yaml:"keyless"`
	// Mode is enforce (the default) or warn.
	Mode Mode `yaml:"mode"`
}

// Keyless is a certificate identity checked offline against a trusted
// root file (Fulcio CAs, Rekor logs, timestamp authorities).
type Keyless struct {
	// Issuer is the OIDC issuer in the certificate, exactly
	// ("https://token.actions.githubusercontent.com").
	Issuer string `yaml:"issuer"`
	// Subject is a regular expression the certificate's subject (its SAN:
	// an email, a workflow URI) must match as a whole.
	Subject string `yaml:"subject"`
	// TrustedRoot is a Sigstore trusted_root.json.
	TrustedRoot string `yaml:"trusted_root"`
}

// ReadFile reads a rule's key or trusted-root file. The agent config's
// rules read host paths; an environment's read through its checkout.
type ReadFile func(path string) ([]byte, error)

// Policy is a list of compiled rules: files loaded, regexps compiled.
type Policy struct {
	rules []*rule
}

// rule is a Rule with its signer ready to verify.
type rule struct {
	Rule
	name   string // "images.verify[0]": what messages call it
	prefix string // normalised; "" matches every image
	// key rules
	key signature.Verifier
	// every rule can verify bundles with this
	trusted  root.TrustedMaterial
	identity *verify.CertificateIdentity
	// fingerprint changes when the signer changes: a cached verification
	// counts only for the signer it was made with.
	fingerprint string
}

func (r *rule) String() string {
	return fmt.Sprintf("%s (%s, %s)", r.name, printable.Cut(r.Prefix, 200), r.signer())
}

// signer names the rule's signer; a repository's rule wrote it, so it is
// cut like a registry's text.
func (r *rule) signer() string {
	if r.Keyless != nil {
		return fmt.Sprintf("keyless %s %s", printable.Cut(r.Keyless.Issuer, 100), printable.Cut(r.Keyless.Subject, 200))
	}
	return "key " + printable.Cut(r.Key, 200)
}

// Compile checks rules and loads their files. where names the list in
// messages ("images.verify", "x-berth.images.verify"). Every problem is
// reported at once.
func Compile(rules []Rule, where string, read ReadFile) (*Policy, error) {
	p := &Policy{}
	var errs []error
	for i, r := range rules {
		c, err := compile(r, fmt.Sprintf("%s[%d]", where, i), read)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		p.rules = append(p.rules, c)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return p, nil
}

func compile(r Rule, at string, read ReadFile) (*rule, error) {
	c := &rule{Rule: r, name: at}
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", at, field, fmt.Sprintf(format, args...)))
	}
	prefix, err := normalisePrefix(r.Prefix)
	if err != nil {
		bad("prefix", "%v", err)
	}
	c.prefix = prefix
	switch r.Mode {
	case "":
		c.Mode = Enforce
	case Enforce, Warn:
	default:
		bad("mode", "%q is neither enforce nor warn", r.Mode)
	}
	h := sha256.New()
	switch {
	case r.Key != "" && r.Keyless != nil:
		bad("key", "a rule names either a key or keyless, not both")
	case r.Key != "":
		pem, err := read(r.Key)
		if err != nil {
			bad("key", "read %s: %v", r.Key, err)
			break
		}
		if err := c.loadKey(pem); err != nil {
			bad("key", "%s: %v", r.Key, err)
		}
		fmt.Fprintf(h, "key\x00%s", pem)
	case r.Keyless != nil:
		k := r.Keyless
		if k.Issuer == "" {
			bad("keyless.issuer", "the certificate's OIDC issuer is required")
		}
		if k.Subject == "" {
			bad("keyless.subject", "a regular expression for the certificate's subject is required")
		}
		if k.TrustedRoot == "" {
			bad("keyless.trusted_root", "a Sigstore trusted_root.json is required (berth verifies offline)")
		}
		if k.Issuer == "" || k.Subject == "" || k.TrustedRoot == "" {
			break
		}
		// The subject must match whole: an unanchored "https://github.com/acme/"
		// would accept https://github.com/evil/x?https://github.com/acme/.
		id, err := verify.NewShortCertificateIdentity(k.Issuer, "", "", "^(?:"+k.Subject+")$")
		if err != nil {
			bad("keyless.subject", "%v", err)
			break
		}
		c.identity = &id
		js, err := read(k.TrustedRoot)
		if err != nil {
			bad("keyless.trusted_root", "read %s: %v", k.TrustedRoot, err)
			break
		}
		tr, err := root.NewTrustedRootFromJSON(js)
		if err != nil {
			bad("keyless.trusted_root", "%s: %v", k.TrustedRoot, err)
			break
		}
		c.trusted = tr
		fmt.Fprintf(h, "keyless\x00%s\x00%s\x00%s", k.Issuer, k.Subject, js)
	default:
		bad("key", "a rule names a cosign public key file (key) or a keyless identity (keyless)")
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	c.fingerprint = hex.EncodeToString(h.Sum(nil))
	return c, nil
}

// loadKey parses a cosign public key (PEM, PKIX: ECDSA, RSA or Ed25519)
// the way cosign verify --key does.
func (c *rule) loadKey(pem []byte) error {
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(pem)
	if err != nil {
		return fmt.Errorf("not a PEM public key: %w", err)
	}
	v, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		return err
	}
	c.key = v
	// A bundle signed with the key names no certificate: the key is its
	// whole trust root, at any time.
	c.trusted = root.NewTrustedPublicKeyMaterial(func(string) (root.TimeConstrainedVerifier, error) {
		return root.NewExpiringKey(v, time.Time{}, time.Time{}), nil
	})
	return nil
}

// matches reports whether the rule applies to repo (a parsed repository
// name), on whole path components.
func (r *rule) matches(repo string) bool {
	return r.prefix == "" || repo == r.prefix || strings.HasPrefix(repo, r.prefix+"/")
}

// Matching returns the rules that apply to repo (a parsed repository
// name), in order.
func (p *Policy) matching(repo string) []*rule {
	if p == nil {
		return nil
	}
	var out []*rule
	for _, r := range p.rules {
		if r.matches(repo) {
			out = append(out, r)
		}
	}
	return out
}

// Empty reports whether the policy has no rules.
func (p *Policy) Empty() bool { return p == nil || len(p.rules) == 0 }
