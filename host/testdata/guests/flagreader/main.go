// Command flagreader is a test guest for plugin-to-plugin reads: it asks the
// configuration plugin to evaluate a feature flag for the current caller, with
// keel.CallPlugin, and reports the answer. The target plugin's name is the setting
// "target" (default "configuration"), so tests can run the configuration plugin
// under a unique name.
package main

import (
	"encoding/json"
	"errors"
	"net/url"

	keel "github.com/keelhq/keel/abi/sdk"
)

func init() {
	keel.Handle("GET", "/flags/:key", readFlag)
	keel.Handle("GET", "/public/flags/:key", readFlag)
}

func readFlag(r *keel.Request) *keel.Response {
	target, err := keel.Setting("target")
	if err != nil {
		return keel.Error(500, "no_target", err.Error())
	}
	resp, err := keel.CallPlugin(target, "POST", "/flags/"+url.PathEscape(r.Param("key"))+"/evaluate", nil)
	var he *keel.HostError
	switch {
	case errors.As(err, &he):
		status := 502
		if errors.Is(err, keel.ErrDenied) {
			status = 403
		}
		return keel.JSON(status, map[string]any{"error": map[string]any{"code": he.Code.String(), "message": he.Message}})
	case err != nil:
		return keel.Error(502, "call_failed", err.Error())
	}
	var ev struct {
		Enabled bool   `json:"enabled"`
		Reason  string `json:"reason"`
	}
	if resp.Status != 200 || json.Unmarshal(resp.Body, &ev) != nil {
		return keel.JSON(resp.Status, map[string]any{"status": resp.Status, "body": json.RawMessage(resp.Body)})
	}
	return keel.JSON(200, map[string]any{"flag": r.Param("key"), "enabled": ev.Enabled, "reason": ev.Reason, "via": target})
}

func main() {}
