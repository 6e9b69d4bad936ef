package main

import "testing"

// BenchmarkValidUUID is the check every read by id makes; run it in wasm too, where
// its cost matters.
func BenchmarkValidUUID(b *testing.B) {
	for i := 0; i < b.N; i++ {
		if !validUUID("3f2c1a9e-8b7d-4c6e-9f01-23456789abcd") {
			b.Fatal("valid UUID refused")
		}
	}
}
