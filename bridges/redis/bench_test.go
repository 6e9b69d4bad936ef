package redis

import (
	"context"
	"strconv"
	"testing"
	"time"
)

func BenchmarkGet(b *testing.B) {
	ctx := context.Background()
	c := openTest(b, Options{})
	p := testPrefix(b, c)
	val := make([]byte, 256)
	for i := range 100 {
		if err := c.Set(ctx, p+strconv.Itoa(i), val, time.Minute); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, ok, err := c.Get(ctx, p+strconv.Itoa(i%100)); !ok || err != nil {
			b.Fatal(ok, err)
		}
		i++
	}
}

func BenchmarkGetParallel(b *testing.B) {
	ctx := context.Background()
	c := openTest(b, Options{})
	p := testPrefix(b, c)
	if err := c.Set(ctx, p+"k", make([]byte, 256), time.Minute); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, ok, err := c.Get(ctx, p+"k"); !ok || err != nil {
				b.Error(ok, err)
				return
			}
		}
	})
}

func BenchmarkIncr(b *testing.B) {
	ctx := context.Background()
	c := openTest(b, Options{})
	p := testPrefix(b, c)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Incr(ctx, p+"n", 1, time.Minute); err != nil {
			b.Fatal(err)
		}
	}
}
