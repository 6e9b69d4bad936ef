// Command unhealthy is a test guest that starts healthy (so it can be activated) and
// reports a lost dependency from its health export after POST /sick.
package main

import (
	"errors"

	keel "github.com/keelhq/keel/abi/sdk"
)

var sick bool

func init() {
	keel.Handle("GET", "/ok", func(r *keel.Request) *keel.Response { return keel.Text(200, "ok") })
	keel.Handle("POST", "/sick", func(r *keel.Request) *keel.Response { sick = true; return keel.Text(200, "sick") })
	keel.OnHealth(func() error {
		if sick {
			return errors.New("database connection lost")
		}
		return nil
	})
}

func main() {}
