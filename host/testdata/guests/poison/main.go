// Command poison is a test guest for dead letters. It subscribes to poison.orders and
// refuses an event whose payload note is "poison" always, and one whose note is "flaky"
// until POST /heal was called for the tenant, so that a test can park both, replay the
// flaky one successfully and discard the other. It needs no database: its state (healed,
// and a count per note handled) lives in the tenant's cache.
package main

import (
	"errors"
	"strconv"

	keel "github.com/keelhq/keel/abi/sdk"
)

func init() {
	keel.Handle("POST", "/heal", func(r *keel.Request) *keel.Response {
		if err := keel.Cache.Set("healed", []byte("1"), keel.Class("session")); err != nil {
			return keel.Error(500, "cache", err.Error())
		}
		return keel.JSON(200, map[string]bool{"healed": true})
	})
	keel.Handle("GET", "/handled/:note", func(r *keel.Request) *keel.Response {
		v, _, err := keel.Cache.Get("handled:" + r.Param("note"))
		if err != nil {
			return keel.Error(500, "cache", err.Error())
		}
		n, _ := strconv.Atoi(string(v))
		return keel.JSON(200, map[string]int{"handled": n})
	})
	keel.OnEvent("poison.orders", func(ev *keel.Event) error {
		var p struct{ Note string }
		if err := ev.DecodeJSON(&p); err != nil {
			return err
		}
		switch p.Note {
		case "poison":
			return errors.New("poison order refused")
		case "flaky":
			if _, healed, err := keel.Cache.Get("healed"); err != nil || !healed {
				return errors.New("flaky order refused until healed")
			}
		}
		_, err := keel.Cache.Incr("handled:"+p.Note, 1, keel.Class("session"))
		return err
	})
}

func main() {}
