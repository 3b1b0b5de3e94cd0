package imagesig

import (
	"errors"
	"fmt"
	"io"
	"net/http"
)

// maxAnswer bounds every answer of a registry berth reads while looking
// for signatures: a referrers list or a signature manifest is a few KB,
// and go-containerregistry alone would read 100 MiB of one.
const maxAnswer = 4 << 20

// errTooLarge ends an answer past maxAnswer. What it ends counts as no
// signature (a verdict when nothing else is found), not as an outage: the
// registry answered, with something no signature is.
var errTooLarge = fmt.Errorf("an answer of more than %d bytes", maxAnswer)

// bounded cuts each response body of t at maxAnswer bytes.
type bounded struct{ t http.RoundTripper }

func (b bounded) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := b.t.RoundTrip(r)
	if err != nil {
		return resp, err
	}
	resp.Body = &boundedBody{rc: resp.Body, left: maxAnswer + 1}
	return resp, nil
}

type boundedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *boundedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, errTooLarge
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	if b.left <= 0 {
		return n - 1, errTooLarge // the byte past the bound is not the answer's
	}
	return n, err
}

func (b *boundedBody) Close() error { return b.rc.Close() }

// tooLarge turns an answer cut at maxAnswer into the candidate it stands
// for; other errors are returned as they are.
func tooLarge(where string, err error) ([]candidate, error) {
	if errors.Is(err, errTooLarge) {
		return []candidate{{where: where, err: errTooLarge}}, nil
	}
	return nil, err
}
