// Command master-data is the platform's master data service: customers, vendors,
// products and the chart of accounts, per tenant. Each entity has create, read,
// update, soft delete and a searchable, filterable list with cursor pagination;
// updates and deletes use optimistic concurrency (version / ETag); every change
// publishes a change event and an audit record in the same unit of work.
//
// See README.md for the API. Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared.
package main

import (
	"errors"

	keel "github.com/keelhq/keel/abi/sdk"
)

func init() {
	for _, e := range entities {
		e.register()
	}
	keel.OnHealth(health)
}

// health runs a trivial statement through the plugin's database capability.
//
// The host calls keel_health with no tenant, and the sql capability refuses
// tenantless calls with ErrInvalid before it touches the database; that refusal says
// nothing about the database, so it counts as healthy. Any other failure (the
// database unavailable, a timeout) makes the plugin not ready.
func health() error {
	_, err := keel.DB.Query(`SELECT 1 AS ok`)
	if errors.Is(err, keel.ErrInvalid) {
		return nil
	}
	return err
}

func main() {}
