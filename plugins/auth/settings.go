package main

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	keel "github.com/keelhq/keel/abi/sdk"
)

// settings are read once per instance (keel_init) from the plugin's configuration.
type settings struct {
	signer     *signer
	bcryptCost int
	sessionTTL time.Duration
	// adminPerms is what the bootstrap administrator's role holds: every auth.* permission
	// plus the platform permissions (admin_permissions, or defaultAdminPermissions).
	adminPerms []string
	// bootstrapToken, when set, must be sent as X-Bootstrap-Token to POST /bootstrap.
	bootstrapToken string
}

// cfg is per instance; instances run one call at a time, so it needs no lock.
var cfg *settings

// authPermissions are the permissions of this plugin's own routes and checks.
var authPermissions = []string{
	"auth.users.read",     // GET /users
	"auth.users.write",    // POST /users
	"auth.roles.read",     // GET /roles
	"auth.roles.write",    // POST /roles
	"auth.roles.assign",   // PUT /users/:id/roles
	"auth.roles.escalate", // grant permissions one does not hold oneself
}

// defaultAdminPermissions are the first-party plugins' permissions the bootstrap
// administrator also gets: every permission their manifests' routes require. The
// gateway matches permissions exactly (no wildcards), so this list must follow those
// manifests. Override with the admin_permissions setting.
var defaultAdminPermissions = []string{
	"master-data.customer.read", "master-data.customer.write",
	"master-data.vendor.read", "master-data.vendor.write",
	"master-data.product.read", "master-data.product.write",
	"master-data.account.read", "master-data.account.write",
	"configuration.read", "configuration.write",
	"audit.read", "audit.admin",
}

// permissionRE is the manifest's rule for permission names; it excludes wildcards.
var permissionRE = regexp.MustCompile(`^[a-z][a-z0-9._:-]{0,99}$`)

// Bounds of the tunable settings.
const (
	minBcryptCost = 10 // OWASP's minimum for bcrypt
	maxBcryptCost = 16
	minSessionTTL = time.Hour
	maxSessionTTL = 30 * 24 * time.Hour // also the cache's longest TTL (revocation markers)
)

// loadSettings reads and checks every setting; an error fails the instance, so a
// misconfigured plugin never takes traffic.
func loadSettings() (*settings, error) {
	seed, err := keel.Setting("signing_seed")
	if err != nil {
		return nil, fmt.Errorf("setting signing_seed: %w", err)
	}
	s := &settings{}
	if s.signer, err = newSigner(seed); err != nil {
		return nil, err
	}
	cost, err := keel.Setting("bcrypt_cost")
	if err != nil {
		return nil, fmt.Errorf("setting bcrypt_cost: %w", err)
	}
	if s.bcryptCost, err = strconv.Atoi(strings.TrimSpace(cost)); err != nil || s.bcryptCost < minBcryptCost || s.bcryptCost > maxBcryptCost {
		return nil, fmt.Errorf("setting bcrypt_cost %q: want an integer between %d and %d", cost, minBcryptCost, maxBcryptCost)
	}
	ttl, err := keel.Setting("session_ttl")
	if err != nil {
		return nil, fmt.Errorf("setting session_ttl: %w", err)
	}
	if s.sessionTTL, err = time.ParseDuration(strings.TrimSpace(ttl)); err != nil || s.sessionTTL < minSessionTTL || s.sessionTTL > maxSessionTTL {
		return nil, fmt.Errorf("setting session_ttl %q: want a duration between %s and %s", ttl, minSessionTTL, maxSessionTTL)
	}
	extra := defaultAdminPermissions
	switch v, err := keel.Setting("admin_permissions"); {
	case errors.Is(err, keel.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("setting admin_permissions: %w", err)
	default:
		extra = strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\t' })
	}
	s.adminPerms, err = normPermissions(append(append([]string(nil), authPermissions...), extra...))
	if err != nil {
		return nil, fmt.Errorf("setting admin_permissions: %w", err)
	}
	switch v, err := keel.Setting("bootstrap_token"); {
	case errors.Is(err, keel.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("setting bootstrap_token: %w", err)
	default:
		s.bootstrapToken = strings.TrimSpace(v)
	}
	return s, nil
}

// normPermissions validates, de-duplicates and sorts a permission list.
func normPermissions(ps []string) ([]string, error) {
	seen := map[string]bool{}
	out := make([]string, 0, len(ps))
	var bad []string
	for _, p := range ps {
		p = strings.TrimSpace(p)
		if !permissionRE.MatchString(p) {
			bad = append(bad, strconv.Quote(p))
			continue
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("invalid permissions %s: want lower-case letters, digits and . _ : - (no wildcards)", strings.Join(bad, ", "))
	}
	sort.Strings(out)
	return out, nil
}

// dummyHash is compared against when a login names no existing user, so that an
// unknown email costs as much time as a wrong password. Generated once at cost 10.
const dummyHash10 = "$2a$10$u4T55hAu/qayls5Fo2g/4O0lhbDkx4bGs/IPO2TXgjuSdnWOpukdO"

var dummyHashes = map[int][]byte{10: []byte(dummyHash10)}

func dummyHash(cost int) []byte {
	if h, ok := dummyHashes[cost]; ok {
		return h
	}
	h, err := bcrypt.GenerateFromPassword([]byte(randomID(16)), cost)
	if err != nil {
		return []byte(dummyHash10)
	}
	dummyHashes[cost] = h
	return h
}
