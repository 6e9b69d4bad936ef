// Command unhealthy is a test guest whose health export always fails.
package main

import (
	"errors"

	keel "github.com/keelhq/keel/abi/sdk"
)

func init() {
	keel.Handle("GET", "/ok", func(r *keel.Request) *keel.Response { return keel.Text(200, "ok") })
	keel.OnHealth(func() error { return errors.New("database connection lost") })
}

func main() {}
