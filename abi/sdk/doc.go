// Package keel is the guest SDK for Keel plugins built with the standard Go toolchain
// (GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared).
//
// A plugin registers its handlers from an init function and never sees the wire
// encoding or a raw pointer:
//
//	func init() {
//		keel.Handle("GET", "/hello/:name", func(r *keel.Request) *keel.Response {
//			return keel.JSON(200, map[string]string{"hello": r.Param("name")})
//		})
//	}
//
//	func main() {} // required by the toolchain; never called in a reactor module
//
// The package owns the ABI v1 exports (keel_http, keel_event, keel_health, keel_init,
// keel_buffer, keel_abi_version) and wraps the host imports in ordinary Go functions.
// A panic in a handler becomes a 500 response (or a failed event), flagged so that the
// host retires the instance whose state the panic may have corrupted.
//
// Handlers that return database rows can render them with Rows.AppendJSON and
// Rows.AppendJSONArray instead of keel.JSON: same output for the value types DB.Query
// returns (keys in column order), no reflection, and in a wasm guest 14-23 % more
// requests per second on master-data's read path (see bench/RESULTS.md).
//
// keel.JSONFields, keel.ValidJSON and keel.ParseQuery do without encoding/json, fmt and
// net/url, which a plugin that avoids them altogether does not link: the example
// plugin went from 3.8 to 2.6 MB and from 63 to 44 ms warm load (RATIONALE.md, "Small
// guests"). keel.Log takes slog-style key/value pairs but is not a *slog.Logger.
//
// Built for any other platform the package compiles too, so plugin logic can be unit
// tested natively; host capabilities then fail with CodeUnsupported.
package keel
