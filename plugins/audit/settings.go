package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	keel "github.com/keelhq/keel/abi/sdk"
)

// Settings (manifest config keys).
const (
	keyRetentionDays  = "retention_days"
	keyRetentionEvery = "retention_every"
	keyAlertPatterns  = "alert_patterns"
)

// Bounds of retention_every (besides 0, which turns automatic runs off).
const (
	minRetentionEvery = time.Minute
	maxRetentionEvery = 30 * 24 * time.Hour
)

// maxRetentionDays bounds retention_days (about 100 years).
const maxRetentionDays = 36500

// settings are the plugin's parsed configuration.
type settings struct {
	retentionDays  int           // 0: never archive
	retentionEvery time.Duration // 0: archive only on POST /retention/run
	patterns       []string
}

// settingsTTL is how long an instance reuses the settings it read: they may change
// at run time (the host reads its settings file on every lookup), and reading them
// for every event would cost two host calls.
const settingsTTL = 10 * time.Second

var (
	cachedSettings   *settings
	cachedSettingsAt time.Time
)

// loadSettings returns the current settings, reading them at most every settingsTTL.
// Instances are single-threaded, so the cache needs no lock.
func loadSettings() (*settings, error) {
	if cachedSettings != nil && time.Since(cachedSettingsAt) < settingsTTL {
		return cachedSettings, nil
	}
	s, err := readSettings()
	if err != nil {
		return nil, err
	}
	cachedSettings, cachedSettingsAt = s, time.Now()
	return s, nil
}

func readSettings() (*settings, error) {
	var s settings
	days, err := setting(keyRetentionDays, "365")
	if err != nil {
		return nil, err
	}
	if s.retentionDays, err = parseRetentionDays(days); err != nil {
		return nil, err
	}
	every, err := setting(keyRetentionEvery, "24h")
	if err != nil {
		return nil, err
	}
	if s.retentionEvery, err = parseRetentionEvery(every); err != nil {
		return nil, err
	}
	pats, err := setting(keyAlertPatterns, "")
	if err != nil {
		return nil, err
	}
	if s.patterns, err = parsePatterns(pats); err != nil {
		return nil, err
	}
	return &s, nil
}

// setting reads a setting, with def when it is unset.
func setting(key, def string) (string, error) {
	v, err := keel.Setting(key)
	if errors.Is(err, keel.ErrNotFound) {
		return def, nil
	}
	if err != nil {
		return "", fmt.Errorf("setting %s: %w", key, err)
	}
	return v, nil
}

func parseRetentionDays(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 0 || n > maxRetentionDays {
		return 0, fmt.Errorf("setting %s = %q: want a whole number of days from 0 (never archive) to %d", keyRetentionDays, s, maxRetentionDays)
	}
	return n, nil
}

func parseRetentionEvery(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "0" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < minRetentionEvery || d > maxRetentionEvery {
		return 0, fmt.Errorf("setting %s = %q: want 0 (only on request) or a duration from %s to %s, such as 24h", keyRetentionEvery, s, minRetentionEvery, maxRetentionEvery)
	}
	return d, nil
}

// parsePatterns splits a comma-separated list of action patterns. A pattern is an
// action where '*' stands for any run of characters (dots included): "auth.login.failed",
// "*.deleted", "master-data.*".
func parsePatterns(s string) ([]string, error) {
	var out []string
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if len(p) > 200 || strings.ContainsAny(p, " \t\r\n") {
			return nil, fmt.Errorf("setting %s: pattern %q: want an action pattern without spaces, at most 200 characters", keyAlertPatterns, p)
		}
		out = append(out, p)
	}
	return out, nil
}

// matchPattern reports whether action matches pattern ('*' matches any run of
// characters, everything else itself).
func matchPattern(pattern, action string) bool {
	// Iterative glob with single-star backtracking: linear in practice, never
	// exponential.
	p, a := 0, 0
	star, mark := -1, 0
	for a < len(action) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, a
			p++
		case p < len(pattern) && pattern[p] == action[a]:
			p++
			a++
		case star >= 0:
			p = star + 1
			mark++
			a = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// firstMatch returns the first pattern action matches, or "".
func firstMatch(patterns []string, action string) string {
	for _, p := range patterns {
		if matchPattern(p, action) {
			return p
		}
	}
	return ""
}
