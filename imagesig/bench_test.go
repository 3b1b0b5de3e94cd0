package imagesig

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"

	"berth.dev/berth/internal/testenv"
)

// BenchmarkCheck measures what signature checks add to a deploy, per
// image: a digest verified before (the cache: no request) and a fresh one
// (its signatures looked up in a real registry and verified), on the
// distribution registry (no referrers API: the referrers call, its tag
// schema, then cosign's .sig tag) and on one with the referrers API.
func BenchmarkCheck(b *testing.B) {
	for _, tc := range []struct {
		name string
		reg  func(testing.TB) testRegistry
	}{{"tag-schema registry", tagRegistry}, {"referrers registry", referrersRegistry}} {
		b.Run(tc.name, func(b *testing.B) {
			reg := tc.reg(b)
			k := testenv.NewCosignKey(b)
			img := pushImage(b, reg.host, "bench")
			k.SignTag(b, img, img)
			b.Run("fresh digest", func(b *testing.B) {
				dir := b.TempDir()
				n := 0
				for b.Loop() {
					// A cache file of its own each time: looked up, verified
					// and written (fsync included), as on a host.
					n++
					v, _ := newVerifier(b, []Rule{{Prefix: "*", Key: k.PubFile}}, filepath.Join(dir, strconv.Itoa(n)))
					if err := v.Check(context.Background(), img.String(), nil); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("verified digest", func(b *testing.B) {
				v, _ := newVerifier(b, []Rule{{Prefix: "*", Key: k.PubFile}}, "")
				if err := v.Check(context.Background(), img.String(), nil); err != nil {
					b.Fatal(err)
				}
				for b.Loop() {
					if err := v.Check(context.Background(), img.String(), nil); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
