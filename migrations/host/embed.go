// Package hostmigrations ships the host's own schema, keel_host, as SQL files embedded in the binary,
// so a host applies exactly the schema it was built with (postgres.Migrate with scope "host").
package hostmigrations

import (
	"embed"
	"io/fs"
)

//go:embed *.sql
var files embed.FS

// FS returns the host migrations: NNNN_description.sql files at its root.
func FS() fs.FS { return files }
