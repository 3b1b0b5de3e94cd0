package envs

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"berth.dev/berth/imagesig"
)

// parseImages decodes the top-level x-berth.images: the signatures this
// environment requires of its images (verify), in the agent config's
// images.verify form. They add to the host's rules, never lift one.
func parseImages(v any, report func(field, msg, hint string)) []imagesig.Rule {
	const f = extKey + ".images"
	m, ok := asMap(v, f, report)
	if !ok {
		return nil
	}
	fields(m, []string{"verify"}, report, f)
	list, ok := m["verify"].([]any)
	if !ok {
		if m["verify"] != nil {
			report(f+".verify", "must be a list of rules", "")
		}
		return nil
	}
	var out []imagesig.Rule
	for i, item := range list {
		at := fmt.Sprintf("%s.verify[%d]", f, i)
		rm, ok := asMap(item, at, report)
		if !ok {
			continue
		}
		fields(rm, []string{"prefix", "key", "keyless", "mode"}, report, at)
		var r imagesig.Rule
		str := func(m map[string]any, k, field string) string {
			if m[k] == nil {
				return ""
			}
			s, _ := asString(m[k], field+"."+k, report)
			return s
		}
		r.Prefix, r.Key, r.Mode = str(rm, "prefix", at), str(rm, "key", at), imagesig.Mode(str(rm, "mode", at))
		if km, ok := asMap(rm["keyless"], at+".keyless", report); ok {
			fields(km, []string{"issuer", "subject", "trusted_root"}, report, at+".keyless")
			r.Keyless = &imagesig.Keyless{Issuer: str(km, "issuer", at+".keyless"), Subject: str(km, "subject", at+".keyless"),
				TrustedRoot: str(km, "trusted_root", at+".keyless")}
		}
		out = append(out, r)
	}
	return out
}

// compileImages loads an environment's signature rules: their key and
// trusted-root files are files of the repository, relative to the
// environment's directory, read through the checkout.
func compileImages(c *collector, co *checkout, envDir string, rules []imagesig.Rule) *imagesig.Policy {
	if len(rules) == 0 {
		return nil
	}
	read := func(p string) ([]byte, error) {
		if filepath.IsAbs(p) {
			return nil, errors.New("must be a file of the repository, relative to the environment's directory")
		}
		return co.readFile(filepath.Join(envDir, filepath.FromSlash(p)))
	}
	pol, err := imagesig.Compile(rules, extKey+".images.verify", read)
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			field, msg, _ := strings.Cut(line, ": ")
			c.top(field, msg, "")
		}
		return nil
	}
	return pol
}
