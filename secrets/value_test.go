package secrets

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestValue_RedactsItselfEverywhere(t *testing.T) {
	v := Value{v: "hunter2-very-secret"}
	type holder struct {
		Name string
		V    Value
	}
	j, _ := json.Marshal(holder{"db", v})
	outs := []string{
		fmt.Sprint(v), fmt.Sprintf("%v %+v %#v %s %q %x", v, v, v, v, v, v),
		fmt.Sprintf("%+v", holder{"db", v}), fmt.Sprintf("%#v", holder{"db", v}), string(j),
		fmt.Errorf("resolve: %v", v).Error(), errors.Join(fmt.Errorf("%s", v)).Error(),
	}
	for _, o := range outs {
		if strings.Contains(o, "hunter2") {
			t.Errorf("value leaked: %s", o)
		}
	}
	if v.Reveal() != "hunter2-very-secret" {
		t.Fatal("Reveal lost the value")
	}
	if v.Digest() == (Value{v: "other"}).Digest() || strings.Contains(v.Digest(), "hunter2") {
		t.Fatal("digest does not distinguish values")
	}
}
