// Package native holds the native Go baselines the benchmarks compare plugins with:
// the same work as a plugin route, written as an ordinary handler in the host process.
package native

import (
	"encoding/json"

	"github.com/gofiber/fiber/v2"
)

// JSONEcho does what the example plugin's POST /echo does: check that the body is a
// JSON document and send it back.
func JSONEcho(c *fiber.Ctx) error {
	if !json.Valid(c.Body()) {
		return c.Status(400).JSON(fiber.Map{"error": fiber.Map{"code": "invalid_json", "message": "the body must be a JSON document"}})
	}
	c.Set("Content-Type", "application/json")
	return c.Send(c.Body())
}
