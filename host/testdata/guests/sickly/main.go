// Command sickly is a test guest that serves but never reports healthy, to prove that
// such a version is never switched to.
package main

import (
	"errors"

	keel "github.com/keelhq/keel/abi/sdk"
)

func init() {
	keel.Handle("GET", "/hello/:name", func(r *keel.Request) *keel.Response {
		return keel.JSON(200, map[string]string{"hello": "from the sickly version"})
	})
	keel.OnHealth(func() error { return errors.New("cannot reach its dependencies") })
}

func main() {}
