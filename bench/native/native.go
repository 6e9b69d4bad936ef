// Package native holds the native Go baselines the benchmarks compare plugins with:
// the same work as a plugin route, written as an ordinary handler in the host process.
package native

import (
	"bytes"
	"encoding/json"

	"github.com/gofiber/fiber/v2"
)

// JSONEcho does what the example plugin's POST /echo does: check that the body is JSON
// (decoding it with unknown fields disallowed, into an interface) and send it back.
func JSONEcho(c *fiber.Ctx) error {
	var v any
	dec := json.NewDecoder(bytes.NewReader(c.Body()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		return c.Status(400).JSON(fiber.Map{"error": fiber.Map{"code": "invalid_json", "message": err.Error()}})
	}
	c.Set("Content-Type", "application/json")
	return c.Send(c.Body())
}
