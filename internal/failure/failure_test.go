package failure

import (
	"errors"
	"fmt"
	"testing"
)

func TestOf(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name string
		err  error
		want Class
	}{
		{name: "nil", err: nil, want: Unclassed},
		{name: "plain", err: boom, want: Unclassed},
		{name: "verdict", err: AsVerdict(boom), want: Verdict},
		{name: "outage", err: AsOutage(boom), want: Outage},
		{name: "wrapped verdict", err: fmt.Errorf("servers: %w", AsVerdict(boom)), want: Verdict},
		{name: "outage inside a verdict", err: AsVerdict(fmt.Errorf("x: %w", AsOutage(boom))), want: Outage},
		{name: "joined: outage beats verdict", err: errors.Join(AsVerdict(boom), AsOutage(boom)), want: Outage},
		{name: "joined: verdict beats unclassed", err: errors.Join(boom, fmt.Errorf("y: %w", AsVerdict(boom))), want: Verdict},
		{name: "joined inside wrap", err: fmt.Errorf("prepare: %w", errors.Join(boom, AsOutage(boom))), want: Outage},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Of(tc.err); got != tc.want {
				t.Fatalf("Of(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
	if AsVerdict(nil) != nil || AsOutage(nil) != nil {
		t.Fatal("nil must stay nil")
	}
	if !errors.Is(AsOutage(boom), boom) || AsOutage(boom).Error() != "boom" {
		t.Fatal("a mark must not change the error")
	}
}
