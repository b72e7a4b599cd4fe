package testbed

import (
	"context"
	"testing"
)

func TestMoveScratch(t *testing.T) {
	tb := newTestbed(t)
	ctx := context.Background()
	if _, err := tb.Up(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := tb.Run(ctx, RunRequest{Host: tb.HostName(1), Name: "m", Zoo: "mem", Memory: 16 << 20}); err != nil {
		t.Fatal(err)
	}
	r, err := tb.Verify(ctx, "m")
	if err != nil || !r.OK {
		t.Fatalf("%+v %v", r, err)
	}
	res, err := tb.MoveRaw(ctx, "m", tb.HostName(2))
	t.Logf("%+v", res)
	if err != nil {
		t.Fatal(err)
	}
	r, err = tb.Verify(ctx, "m")
	if err != nil || !r.OK {
		t.Fatalf("%+v %v", r, err)
	}
	t.Logf("%+v", r)
}
