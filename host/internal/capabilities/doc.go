// Package capabilities implements the ABI v1 capability imports (keel:cache/v1,
// keel:config/v1, keel:metrics/v1, keel:http/v1, keel:plugin/v1, keel:sql/v1,
// keel:events/v1) on top of the bridges.
//
// Every function checks the calling plugin's manifest first and answers "denied"
// for anything not declared there, then validates the plugin's bytes, and only then
// touches a real system. Tenancy comes from the call context the gateway filled in,
// never from the plugin's input.
package capabilities
