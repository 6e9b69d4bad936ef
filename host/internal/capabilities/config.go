package capabilities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/keelhq/keel/abi/manifest"
	"github.com/keelhq/keel/abi/wire"
	"github.com/keelhq/keel/host/internal/runtime"
)

// Field tags of keel:config/v1 messages.
const (
	configKey   = 1
	configValue = 2
)

// Config provides keel:config/v1: per-plugin settings from the host's environment
// (KEEL_PLUGIN_<PLUGIN>_<KEY>, upper-cased, '-' as '_') or from the file
// <dir>/<plugin>.json ({"key": "value"}); the environment wins. Values are never
// logged; secret keys are also hidden from the admin API.
type Config struct {
	dir     string
	environ func() []string
}

// NewConfig reads settings files from dir (may be empty) and the process environment.
func NewConfig(dir string) *Config { return &Config{dir: dir, environ: os.Environ} }

// Funcs returns the host functions.
func (c *Config) Funcs() []runtime.HostFunc {
	return []runtime.HostFunc{{Module: "keel:config/v1", Name: "get", Fn: c.get}}
}

func envName(plugin, key string) string {
	return "KEEL_PLUGIN_" + strings.ToUpper(strings.ReplaceAll(plugin, "-", "_")) + "_" + strings.ToUpper(key)
}

// Lookup returns a plugin's setting and whether it is set (including its default).
func (c *Config) Lookup(m *manifest.Manifest, key string) (string, bool, error) {
	decl, ok := m.Capabilities.ConfigKey(key)
	if !ok {
		return "", false, fmt.Errorf("plugin %s does not declare config key %q", m.Name, key)
	}
	name := envName(m.Name, key) + "="
	for _, kv := range c.environ() {
		if strings.HasPrefix(kv, name) {
			return kv[len(name):], true, nil
		}
	}
	if c.dir != "" {
		b, err := os.ReadFile(filepath.Join(c.dir, m.Name+".json"))
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return "", false, fmt.Errorf("plugin %s settings: %w", m.Name, err)
		default:
			var vals map[string]string
			if err := json.Unmarshal(b, &vals); err != nil {
				return "", false, fmt.Errorf("plugin %s settings file: %w", m.Name, err)
			}
			if v, ok := vals[key]; ok {
				return v, true, nil
			}
		}
	}
	if decl.Default != "" {
		return decl.Default, true, nil
	}
	return "", false, nil
}

// Check verifies that every required setting of m is present; activation calls it
// so that a plugin missing a setting never takes traffic.
func (c *Config) Check(m *manifest.Manifest) error {
	var missing []string
	for _, k := range m.Capabilities.Config {
		if !k.Required {
			continue
		}
		if _, ok, err := c.Lookup(m, k.Key); err != nil {
			return err
		} else if !ok {
			missing = append(missing, envName(m.Name, k.Key))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("plugin %s: required settings missing: %s", m.Name, strings.Join(missing, ", "))
	}
	return nil
}

func (c *Config) get(_ context.Context, call *runtime.Call, in []byte) ([]byte, error) {
	f, err := decode(in)
	if err != nil {
		return nil, err
	}
	key := f.String(configKey)
	if _, ok := call.Manifest().Capabilities.ConfigKey(key); !ok {
		return nil, runtime.Errorf(wire.CodeDenied, "plugin %s does not declare config key %q", call.Manifest().Name, key)
	}
	v, ok, err := c.Lookup(call.Manifest(), key)
	if err != nil {
		return nil, runtime.Errorf(wire.CodeUnavailable, "%v", err)
	}
	if !ok {
		return nil, runtime.Errorf(wire.CodeNotFound, "config key %q is not set", key)
	}
	return wire.AppendString(nil, configValue, v), nil
}
